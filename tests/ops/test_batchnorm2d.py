"""batchnorm2d (train and eval), the running update and folding: gradient checks, invariants, torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.batchnorm2d import (batchnorm2d_eval_backward, batchnorm2d_eval_forward,
                                      batchnorm2d_train_backward, batchnorm2d_train_forward,
                                      batchnorm2d_update_running, fold_batchnorm)
from minimner.ops.conv2d import conv2d_forward


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


def _params(rng, C):
    return (rng.uniform(0.5, 1.5, C), rng.normal(0, 0.5, C),           # gamma, beta
            rng.normal(0, 0.5, C), rng.uniform(0.5, 2.0, C))           # running mean, running var


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3), (4, 3, 1, 1)])
def test_eval_gradcheck(xp_name, rng, shape):
    x = _on(xp_name, rng.standard_normal(shape) * 2 + 1)
    g, b, mu, var = (_on(xp_name, a) for a in _params(rng, shape[1]))
    y, cache = batchnorm2d_eval_forward(x, g, b, mu, var)
    dy = _on(xp_name, rng.standard_normal(y.shape))
    dx, dg, db = batchnorm2d_eval_backward(dy, cache)
    errs = check_grads(lambda: float((batchnorm2d_eval_forward(x, g, b, mu, var)[0] * dy).sum()),
                       {"x": x, "gamma": g, "beta": b}, {"x": dx, "gamma": dg, "beta": db})
    assert max(errs.values()) <= 1e-6


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 3, 1, 1), (1, 2, 2, 3)])
def test_train_gradcheck(xp_name, rng, shape):
    x = _on(xp_name, rng.standard_normal(shape) * 2 + 1)
    g, b, _, _ = (_on(xp_name, a) for a in _params(rng, shape[1]))
    y, cache = batchnorm2d_train_forward(x, g, b)
    dy = _on(xp_name, rng.standard_normal(y.shape))
    dx, dg, db = batchnorm2d_train_backward(dy, cache)
    errs = check_grads(lambda: float((batchnorm2d_train_forward(x, g, b)[0] * dy).sum()),
                       {"x": x, "gamma": g, "beta": b}, {"x": dx, "gamma": dg, "beta": db})
    assert max(errs.values()) <= 1e-6


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 5), H=st.integers(1, 4), W=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_train_output_is_normalised_per_channel(B, C, H, W, seed):
    r = np.random.default_rng(seed)
    x = (r.standard_normal((B, C, H, W)) * 3 + 2).astype(np.float32)
    g, b = r.uniform(0.5, 1.5, C).astype(np.float32), r.normal(0, 1, C).astype(np.float32)
    y, cache = batchnorm2d_train_forward(x, g, b)
    assert y.dtype == np.float32
    # per channel: mean(y) = beta and mean((y - beta)^2) = gamma^2 · var/(var + eps)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), b, atol=1e-4)
    ratio = cache.var / (cache.var + 1e-5)
    np.testing.assert_allclose(((y - b[:, None, None]) ** 2).mean(axis=(0, 2, 3)), g ** 2 * ratio, rtol=1e-3, atol=1e-5)
    dx, dg, db = batchnorm2d_train_backward(r.standard_normal(y.shape).astype(np.float32), cache)
    assert dx.dtype == dg.dtype == db.dtype == np.float32
    # the batch mean is removed, so a gradient along x + c (per channel) is zero: Σ dx = 0 per channel
    np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0, atol=1e-3)


def test_eval_dtype_and_validation(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    p = [a.astype(np.float32) for a in _params(rng, 3)]
    y, _ = batchnorm2d_eval_forward(x, *p)
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(4,\)"):
        batchnorm2d_eval_forward(x, np.ones(4, np.float32), *p[1:])
    with pytest.raises(ValueError, match="float32 but the parameters are float64"):
        batchnorm2d_eval_forward(x, *[a.astype(np.float64) for a in p])
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batchnorm2d_train_forward(x[:1, :, :1, :1], p[0], p[1])


def test_running_update_matches_formula(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    g, b, mu, var = (a.astype(np.float32) for a in _params(rng, 3))
    _, cache = batchnorm2d_train_forward(x, g, b)
    new_mu, new_var = batchnorm2d_update_running(mu, var, cache, momentum=0.1)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(new_mu, 0.9 * mu + 0.1 * xd.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(new_var, 0.9 * var + 0.1 * xd.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    assert new_mu.dtype == new_var.dtype == np.float32


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_batchnorm_equals_conv_then_bn(rng, with_bias):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    bias = rng.standard_normal(4) if with_bias else None
    g, b, mu, var = _params(rng, 4)
    ref = batchnorm2d_eval_forward(conv2d_forward(x, w, bias, 1, 1)[0], g, b, mu, var)[0]
    wf, bf = fold_batchnorm(w, bias, g, b, mu, var)
    np.testing.assert_allclose(conv2d_forward(x, wf, bf, 1, 1)[0], ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs \\(O,\\) BN parameters"):
        fold_batchnorm(w, bias, g[:3], b, mu, var)


@pytest.mark.parity
@pytest.mark.parametrize("train", [True, False])
def test_torch_parity(rng, train):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 1).astype(np.float32)
    g, b, mu, var = (a.astype(np.float32) for a in _params(rng, 4))
    bn = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1).train(train)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(g))
        bn.bias.copy_(torch.from_numpy(b))
        bn.running_mean.copy_(torch.from_numpy(mu))
        bn.running_var.copy_(torch.from_numpy(var))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = bn(xt)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    if train:
        y, cache = batchnorm2d_train_forward(x, g, b)
        dx, dg, db = batchnorm2d_train_backward(dy, cache)
        new_mu, new_var = batchnorm2d_update_running(mu, var, cache, 0.1)
        np.testing.assert_allclose(new_mu, bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new_var, bn.running_var.numpy(), rtol=1e-5, atol=1e-6)
    else:
        y, cache = batchnorm2d_eval_forward(x, g, b, mu, var)
        dx, dg, db = batchnorm2d_eval_backward(dy, cache)
    for name, ours, ref in (("y", y, yt.detach()), ("dx", dx, xt.grad), ("dgamma", dg, bn.weight.grad),
                            ("dbeta", db, bn.bias.grad)):
        ref = ref.numpy()
        diff = np.abs(ours - ref)
        idx = np.unravel_index(np.argmax(diff), diff.shape)
        assert diff.max() <= 1e-5 * max(1.0, np.abs(ref).max()), f"{name}: max diff {diff.max():.2e} at {idx}"
