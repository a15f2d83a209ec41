"""layernorm_forward / layernorm_backward: gradient checks, invariants, torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.layernorm import layernorm_backward, layernorm_forward


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 6)])
def test_layernorm_gradcheck(xp_name, rng, shape):
    C = shape[-1]
    x = _on(xp_name, rng.standard_normal(shape) * 2 + 0.5)
    w = _on(xp_name, rng.standard_normal(C))
    b = _on(xp_name, rng.standard_normal(C))
    dy = _on(xp_name, rng.standard_normal(shape))
    y, cache = layernorm_forward(x, w, b, 1e-5)
    dx, dw, db = layernorm_backward(dy, cache)
    errs = check_grads(lambda: float((layernorm_forward(x, w, b, 1e-5)[0] * dy).sum()),
                       {"x": x, "weight": w, "bias": b}, {"x": dx, "weight": dw, "bias": db})
    assert max(errs.values()) <= 1e-6


def test_layernorm_gradcheck_bert_eps(rng):
    """eps = 1e-12 (BERT) is negligible next to the variance; the gradient must still check."""
    x = rng.standard_normal((4, 8))
    w, b, dy = rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal((4, 8))
    dx, dw, db = layernorm_backward(dy, layernorm_forward(x, w, b, 1e-12)[1])
    check_grads(lambda: float((layernorm_forward(x, w, b, 1e-12)[0] * dy).sum()),
                {"x": x, "weight": w, "bias": b}, {"x": dx, "weight": dw, "bias": db})


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), C=st.integers(2, 16), seed=st.integers(0, 2**16),
       scale=st.floats(1e-2, 1e3), shift=st.floats(-100, 100))
def test_layernorm_output_centred_unit_variance(B, T, C, seed, scale, shift):
    r = np.random.default_rng(seed)
    x = r.standard_normal((B, T, C)) * scale + shift
    # float64: the invariant is exact up to round-off even for |shift| / std up to 1e4
    y, _ = layernorm_forward(x, np.ones(C), np.zeros(C), 1e-12)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-9)
    v = x.var(-1)                                                   # biased variance (ddof=0)
    np.testing.assert_allclose(y.var(-1), v / (v + 1e-12), atol=1e-9)   # = 1 up to eps / var
    # float32: the centring error is ~eps32 * |mean| / std, so feed rows that are already
    # centred (in float64) to test the invariant at float32 precision without cancellation
    xc = x - x.mean(-1, keepdims=True)
    y32, _ = layernorm_forward(xc.astype(np.float32), np.ones(C, np.float32), np.zeros(C, np.float32), 1e-12)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.mean(-1, dtype=np.float64), 0.0, atol=1e-6)
    np.testing.assert_allclose(y32.var(-1, dtype=np.float64), v / (v + 1e-12), atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 5), C=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_layernorm_float32_dtypes(N, C, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, C)).astype(np.float32)
    w, b = r.standard_normal(C).astype(np.float32), r.standard_normal(C).astype(np.float32)
    y, cache = layernorm_forward(x, w, b, 1e-12)
    dx, dw, db = layernorm_backward(r.standard_normal((N, C)).astype(np.float32), cache)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32


def test_layernorm_constant_row_is_finite():
    """var = 0: eps inside the sqrt keeps rstd finite (1/sqrt(1e-12) = 1e6) and xhat = 0."""
    x = np.full((2, 4), 3.0, np.float32)
    y, cache = layernorm_forward(x, np.ones(4, np.float32), np.full(4, 0.5, np.float32), 1e-12)
    np.testing.assert_array_equal(y, 0.5)
    dx, _, _ = layernorm_backward(np.ones((2, 4), np.float32), cache)
    assert np.isfinite(dx).all()


def test_layernorm_rejects_bad_params():
    with pytest.raises(ValueError, match=r"weight has shape \(3,\), expected \(4,\)"):
        layernorm_forward(np.zeros((2, 4), np.float32), np.ones(3, np.float32), np.zeros(4, np.float32), 1e-12)


def _assert_close(ours, theirs, tol, name):
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    idx = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() <= tol, f"{name}: max abs diff {diff.max():.3e} > {tol} at {idx}"


@pytest.mark.parity
@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layernorm_parity_with_torch(rng, eps):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((2, 5, 16)) * 3 + 1).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((2, 5, 16)).astype(np.float32)
    ln = torch.nn.LayerNorm(16, eps=eps)
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(w))
        ln.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ln(tx)
    ty.backward(torch.from_numpy(dy))
    y, cache = layernorm_forward(x, w, b, eps)
    dx, dw, db = layernorm_backward(dy, cache)
    _assert_close(y, ty.detach().numpy(), 1e-5, "y")
    _assert_close(dx, tx.grad.numpy(), 1e-4, "dx")
    _assert_close(dw, ln.weight.grad.numpy(), 1e-4, "dweight")
    _assert_close(db, ln.bias.grad.numpy(), 1e-4, "dbias")
