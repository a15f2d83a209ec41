"""Layer modules: torch state-dict names, init, cache discipline, gradient accumulation, checks, parity."""
import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_module
from minimner.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, Sigmoid, Tanh


def test_state_dict_names_and_shapes_follow_torch():
    assert {k: v.shape for k, v in Linear(4, 3, rng=np.random.default_rng(0)).state_dict().items()} == \
        {"weight": (3, 4), "bias": (3,)}
    assert list(Linear(4, 3, bias=False).state_dict()) == ["weight"]
    assert {k: v.shape for k, v in Embedding(7, 5).state_dict().items()} == {"weight": (7, 5)}
    assert {k: v.shape for k, v in LayerNorm(6).state_dict().items()} == {"weight": (6,), "bias": (6,)}
    for m in (GELU(), ReLU(), Tanh(), Sigmoid(), Dropout(0.1)):
        assert list(m.state_dict()) == []


@pytest.mark.parity
def test_state_dicts_load_from_torch_modules():
    torch = pytest.importorskip("torch")
    for ours, theirs in ((Linear(4, 3), torch.nn.Linear(4, 3)), (Linear(4, 3, bias=False), torch.nn.Linear(4, 3, bias=False)),
                         (Embedding(7, 5, padding_idx=0), torch.nn.Embedding(7, 5, padding_idx=0)),
                         (LayerNorm(6), torch.nn.LayerNorm(6))):
        sd = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
        ours.load_state_dict(sd)                           # strict: names and shapes must match exactly
        for k, v in ours.state_dict().items():
            np.testing.assert_array_equal(v, sd[k])
            assert v.dtype == np.float32


def test_init_follows_torch_defaults():
    lin = Linear(64, 300, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(64)
    for p in (lin.weight.data, lin.bias.data):
        assert p.dtype == np.float32 and np.abs(p).max() <= bound
    assert np.abs(lin.weight.data).max() > 0.95 * bound                         # fills the whole interval
    np.testing.assert_allclose(lin.weight.data.std(), bound / np.sqrt(3), rtol=0.05)   # U(-a, a) has sd a/sqrt(3)
    emb = Embedding(400, 50, padding_idx=2, rng=np.random.default_rng(0))
    assert emb.weight.dtype == np.float32
    np.testing.assert_array_equal(emb.weight.data[2], 0.0)
    np.testing.assert_allclose(emb.weight.data.std(), 1.0, rtol=0.05)          # N(0, 1)
    ln = LayerNorm(5)
    np.testing.assert_array_equal(ln.weight.data, 1.0)
    np.testing.assert_array_equal(ln.bias.data, 0.0)
    assert ln.eps == 1e-12 and ln.weight.dtype == np.float32


def test_init_is_reproducible_from_the_generator():
    a, b = Linear(5, 4, rng=np.random.default_rng(3)), Linear(5, 4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)


def _modules(rng):
    return {
        "linear": (Linear(5, 3, rng=rng), rng.standard_normal((2, 4, 5))),
        "linear_nobias": (Linear(5, 3, bias=False, rng=rng), rng.standard_normal((4, 5))),
        "layernorm": (LayerNorm(6, eps=1e-5), rng.standard_normal((2, 3, 6)) * 2 + 1),
        "gelu": (GELU(), rng.standard_normal((3, 4)) * 2),
        "relu": (ReLU(), np.where(np.abs(x := rng.standard_normal((3, 4))) < 1e-3, 0.5, x)),
        "tanh": (Tanh(), rng.standard_normal((3, 4))),
        "sigmoid": (Sigmoid(), rng.standard_normal((3, 4))),
    }


@pytest.mark.parametrize("name", ["linear", "linear_nobias", "layernorm", "gelu", "relu", "tanh", "sigmoid"])
def test_module_gradcheck(xp_name, rng, name):
    module, x = _modules(rng)[name]
    if name == "layernorm":                                # non-trivial gamma / beta
        module.weight.data = rng.standard_normal(6).astype(np.float32)
        module.bias.data = rng.standard_normal(6).astype(np.float32)
    module.to(xp_name).double()
    x = backend.asarray(x, dtype=np.float64, backend=xp_name)
    errs = check_module(module, module.forward, module.backward, [x], rng, h=1e-5)
    assert max(errs.values()) <= 1e-6


def test_embedding_module_gradcheck(rng):
    emb = Embedding(6, 4, rng=rng).double()
    ids = np.array([[1, 3, 3], [5, 0, 1]])
    errs = check_module(emb, emb.forward, lambda d: (emb.backward(d),), [ids], rng)
    assert errs["weight"] <= 1e-6


def test_dropout_module_gradcheck_with_replayed_mask(rng):
    """Re-seeding before each forward replays the same mask, so the numerical gradient sees it too."""
    drop = Dropout(0.3)
    x = rng.standard_normal((4, 6))

    def fwd(x):
        drop.rng = np.random.default_rng(9)
        return drop.forward(x)

    errs = check_module(drop, fwd, drop.backward, [x], rng)
    assert errs["input0"] <= 1e-6


def test_backward_without_forward_raises_and_one_backward_per_forward(rng):
    lin = Linear(3, 2, rng=rng)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        lin.backward(np.ones((1, 2), np.float32))
    lin.forward(np.ones((1, 3), np.float32))
    lin.backward(np.ones((1, 2), np.float32))
    with pytest.raises(RuntimeError, match="without a pending forward"):
        lin.backward(np.ones((1, 2), np.float32))
    for m in (GELU(), Dropout(0.5), Embedding(3, 2), LayerNorm(2)):
        with pytest.raises(RuntimeError):
            m.backward(np.ones((1, 2), np.float32))


def test_dropout_module_eval_has_a_cache_and_is_identity(rng):
    drop = Dropout(0.5, rng=np.random.default_rng(0))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    drop.eval()
    assert drop.forward(x) is x
    assert drop.backward(x) is x                           # eval forward still leaves one cache
    drop.train()
    y = drop.forward(x)
    assert (y == 0).any() and not np.array_equal(y, x)
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)) == 0, y == 0)


def test_dropout_module_masks_reproducible_by_seed(rng):
    x = np.ones((10, 10), np.float32)
    a, b = Dropout(0.5, rng=np.random.default_rng(4)), Dropout(0.5, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))   # and the second draws too


def test_backward_adds_into_grad(rng):
    lin = Linear(4, 3, rng=rng)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    lin.forward(x)
    lin.backward(dy)
    g1 = lin.weight.grad.copy(), lin.bias.grad.copy()
    lin.forward(x)
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, 2 * g1[0], rtol=1e-6)
    np.testing.assert_allclose(lin.bias.grad, 2 * g1[1], rtol=1e-6)
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()
    emb = Embedding(5, 2, padding_idx=0, rng=rng)
    for _ in range(2):
        emb.forward(np.array([0, 1, 1]))
        assert emb.backward(np.ones((3, 2), np.float32)) is None
    np.testing.assert_array_equal(emb.weight.grad[:2], [[0, 0], [4, 4]])


def test_float32_in_float32_out(rng):
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    for m in (Linear(5, 4, rng=rng), LayerNorm(5), GELU(), ReLU(), Tanh(), Sigmoid(), Dropout(0.2, rng=rng)):
        y = m.forward(x)
        assert y.dtype == np.float32
        assert m.backward(np.ones_like(y)).dtype == np.float32
        assert all(p.grad.dtype == np.float32 for p in m.parameters())
    emb = Embedding(5, 3, rng=rng)
    assert emb.forward(np.array([[1, 2]])).dtype == np.float32


def _close(ours, theirs, tol, name):
    diff = np.abs(np.asarray(ours, np.float64) - theirs.detach().numpy().astype(np.float64))
    assert diff.max() <= tol, f"{name}: max abs diff {diff.max():.3e} at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parity
def test_modules_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    pairs = [
        (Linear(8, 6, rng=rng), torch.nn.Linear(8, 6), rng.standard_normal((2, 5, 8))),
        (LayerNorm(8), torch.nn.LayerNorm(8, eps=1e-12), rng.standard_normal((2, 5, 8)) * 3 + 1),
        (GELU(), torch.nn.GELU(approximate="none"), rng.standard_normal((2, 5, 8)) * 3),
        (ReLU(), torch.nn.ReLU(), rng.standard_normal((2, 5, 8))),
        (Tanh(), torch.nn.Tanh(), rng.standard_normal((2, 5, 8))),
        (Sigmoid(), torch.nn.Sigmoid(), rng.standard_normal((2, 5, 8)) * 5),
    ]
    for ours, theirs, x in pairs:
        if isinstance(ours, LayerNorm):                    # non-trivial affine parameters
            ours.weight.data = rng.standard_normal(8).astype(np.float32)
            ours.bias.data = rng.standard_normal(8).astype(np.float32)
        if ours.parameters():
            theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
        x = x.astype(np.float32)
        dy = rng.standard_normal(x.shape[:-1] + (6 if isinstance(ours, Linear) else 8,)).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = theirs(tx)
        ty.backward(torch.from_numpy(dy))
        name = type(ours).__name__
        _close(ours.forward(x), ty, 1e-5, f"{name} y")
        _close(ours.backward(dy), tx.grad, 1e-4, f"{name} dx")
        for pname, p in ours.named_parameters():
            _close(p.grad, dict(theirs.named_parameters())[pname].grad, 1e-4, f"{name} d{pname}")
    # Embedding with a padding row
    emb, temb = Embedding(11, 4, padding_idx=0, rng=rng), torch.nn.Embedding(11, 4, padding_idx=0)
    temb.load_state_dict({"weight": torch.from_numpy(emb.weight.data.copy())})
    ids = rng.integers(0, 11, (3, 6))
    ids[:, -2:] = 0
    dout = rng.standard_normal((3, 6, 4)).astype(np.float32)
    ty = temb(torch.from_numpy(ids))
    ty.backward(torch.from_numpy(dout))
    _close(emb.forward(ids), ty, 1e-5, "Embedding out")
    emb.backward(dout)
    _close(emb.weight.grad, temb.weight.grad, 1e-4, "Embedding dweight")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="Dropout probability"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(3, 2, padding_idx=3)
    with pytest.raises(ValueError, match="last axis"):
        LayerNorm((2, 3))
