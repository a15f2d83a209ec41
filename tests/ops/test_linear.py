"""linear_forward / linear_backward: gradient checks, dtype, validation, torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.linear import linear_backward, linear_forward


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gradcheck(xp_name, rng, lead, with_bias):
    x = _on(xp_name, rng.standard_normal(lead + (4,)))                  # (..., In) float64
    w = _on(xp_name, rng.standard_normal((3, 4)))                       # (Out, In)
    b = _on(xp_name, rng.standard_normal(3)) if with_bias else None     # (Out,)
    dy = _on(xp_name, rng.standard_normal(lead + (3,)))                 # random upstream gradient
    y, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dy, cache)
    assert (db is None) == (not with_bias)
    arrays, analytic = {"x": x, "weight": w}, {"x": dx, "weight": dw}
    if with_bias:
        arrays["bias"], analytic["bias"] = b, db
    errs = check_grads(lambda: float((linear_forward(x, w, b)[0] * dy).sum()), arrays, analytic)
    assert max(errs.values()) <= 1e-6


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), In=st.integers(1, 16), Out=st.integers(1, 16),
       seed=st.integers(0, 2**16))
def test_linear_float32_in_float32_out_and_matches_matmul(B, T, In, Out, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((B, T, In)).astype(np.float32)
    w = r.standard_normal((Out, In)).astype(np.float32)
    b = r.standard_normal(Out).astype(np.float32)
    y, cache = linear_forward(x, w, b)
    assert y.dtype == np.float32 and y.shape == (B, T, Out)
    np.testing.assert_allclose(y, x.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-5, atol=1e-5)
    dx, dw, db = linear_backward(r.standard_normal((B, T, Out)).astype(np.float32), cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


def test_linear_rejects_bad_shapes():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 4\)"):
        linear_forward(x, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="bias has shape"):
        linear_forward(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32), np.zeros(4, np.float32))


def _assert_close(ours, theirs, tol, name):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    diff = np.abs(ours - theirs)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs {theirs.shape}"
    if diff.size:
        idx = np.unravel_index(np.argmax(diff), diff.shape)
        assert diff.max() <= tol, f"{name}: max abs diff {diff.max():.3e} > {tol} at {idx}"


@pytest.mark.parity
def test_linear_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w = (rng.standard_normal((6, 8)) * 0.3).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    dy = rng.standard_normal((2, 5, 6)).astype(np.float32)
    lin = torch.nn.Linear(8, 6)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = lin(tx)
    ty.backward(torch.from_numpy(dy))
    y, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dy, cache)
    _assert_close(y, ty.detach().numpy(), 1e-5, "y")
    _assert_close(dx, tx.grad.numpy(), 1e-4, "dx")
    _assert_close(dw, lin.weight.grad.numpy(), 1e-4, "dweight")
    _assert_close(db, lin.bias.grad.numpy(), 1e-4, "dbias")
