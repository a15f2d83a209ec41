"""Conv2d / BatchNorm2d / MaxPool2d modules: names, caches, gradient checks, torch parity."""
import numpy as np
import pytest

from minimner.gradcheck import check_module
from minimner.nn.conv import BatchNorm2d, Conv2d, MaxPool2d


def test_state_dict_names_and_dtypes():
    conv = Conv2d(3, 4, 3, 2, 1, bias=True, rng=np.random.default_rng(0))
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert conv.weight.shape == (4, 3, 3, 3) and conv.weight.dtype == np.float32
    assert list(Conv2d(3, 4, 1, bias=False).state_dict()) == ["weight"]
    bn = BatchNorm2d(5)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].shape == () and sd["num_batches_tracked"].dtype == np.int64
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert MaxPool2d(3, 2, 1).state_dict() == {}


def test_conv_init_bound_like_torch():
    conv = Conv2d(8, 16, 3, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(8 * 9)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.9 * bound
    assert np.abs(conv.bias.data).max() <= bound


@pytest.mark.parametrize("bias", [True, False])
def test_conv_module_gradcheck(rng, bias):
    conv = Conv2d(2, 3, 3, 2, 1, bias=bias, rng=rng).double()
    x = rng.standard_normal((2, 2, 5, 6))
    errs = check_module(conv, conv.forward, conv.backward, [x], rng)
    assert max(errs.values()) <= 1e-6 and ("bias" in errs) == bias


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_module_gradcheck(rng, train):
    bn = BatchNorm2d(3).double().train(train)
    bn.weight.data = rng.uniform(0.5, 1.5, 3)
    bn.bias.data = rng.normal(0, 1, 3)
    object.__setattr__(bn, "running_mean", rng.normal(0, 1, 3))
    object.__setattr__(bn, "running_var", rng.uniform(0.5, 2, 3))
    x = rng.standard_normal((2, 3, 3, 4))
    errs = check_module(bn, bn.forward, bn.backward, [x], rng)
    assert max(errs.values()) <= 1e-6


def test_maxpool_module_gradcheck(rng):
    pool = MaxPool2d(3, 2, 1)
    x = rng.permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) * 0.1
    errs = check_module(pool, pool.forward, pool.backward, [x], rng)
    assert errs["input0"] <= 1e-6


def test_backward_needs_a_cached_forward(rng):
    conv = Conv2d(2, 3, 3, 1, 1, rng=rng)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        conv.backward(np.zeros((1, 3, 4, 4), np.float32))
    conv.forward(x, keep_cache=False)  # the inference path keeps nothing
    with pytest.raises(RuntimeError, match="without a pending forward"):
        conv.backward(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(RuntimeError, match="fold_bn"):
        conv.forward_folded(x)


def test_batchnorm_train_updates_buffers_and_keeps_them_registered(rng):
    bn = BatchNorm2d(3).train()
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32) + 3
    bn.forward(x)
    bn.forward(x)
    sd = bn.state_dict()
    assert int(sd["num_batches_tracked"]) == 2
    assert sd["running_mean"].dtype == np.float32
    # two momentum-0.1 updates from 0 towards the same batch mean: 1 - 0.9² = 0.19 of the way
    np.testing.assert_allclose(sd["running_mean"], 0.19 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    bn.eval()
    y = bn.forward(x, keep_cache=False)
    assert int(bn.state_dict()["num_batches_tracked"]) == 2 and y.dtype == np.float32


@pytest.mark.parity
def test_modules_load_torch_state_and_match(rng):
    torch = pytest.importorskip("torch")
    tconv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
    tbn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        tbn.running_mean.normal_()
        tbn.running_var.uniform_(0.5, 2)
        tbn.weight.uniform_(0.5, 1.5)
    tbn.train()
    conv, bn, pool = Conv2d(3, 4, 3, 2, 1), BatchNorm2d(4).train(), MaxPool2d(3, 2, 1)
    conv.load_state_dict({k: v.numpy() for k, v in tconv.state_dict().items()})
    bn.load_state_dict({k: v.numpy() for k, v in tbn.state_dict().items()})
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(tbn(tconv(xt)), 3, 2, 1)
    y = pool.forward(bn.forward(conv.forward(x)))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    dx = conv.backward(bn.backward(pool.backward(dy)))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.weight.grad, tbn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    for k, v in tbn.state_dict().items():
        np.testing.assert_allclose(bn.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
