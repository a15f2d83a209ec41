"""Tests for minimner.ops.gate: gradients, convexity, dtype, torch parity."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.gate import gate_backward, gate_forward


def _params(rng, C, dtype=np.float64, scale=0.5):
    w1, w2 = (rng.standard_normal((C, C)) * scale).astype(dtype), (rng.standard_normal((C, C)) * scale).astype(dtype)
    return w1, w2, (rng.standard_normal(C) * scale).astype(dtype)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_gradcheck_every_input_and_parameter(rng, shape):
    C = shape[-1]
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    w1, w2, bias = _params(rng, C)
    dout = rng.standard_normal(shape)
    out, cache = gate_forward(a, b, w1, w2, bias)
    da, db, dw1, dw2, dbias = gate_backward(dout, cache)
    arrays = {"a": a, "b": b, "w1": w1, "w2": w2, "bias": bias}
    errs = check_grads(lambda: float((gate_forward(a, b, w1, w2, bias)[0] * dout).sum()), arrays,
                       {"a": da, "b": db, "w1": dw1, "w2": dw2, "bias": dbias})
    assert max(errs.values()) < 1e-6


def test_dtype_and_backend(xp_name, rng):
    xp = backend.xp()
    a, b = (xp.asarray(rng.standard_normal((2, 3, 4)), dtype=xp.float32) for _ in range(2))
    w1, w2, bias = (backend.asarray(p) for p in _params(rng, 4, np.float32))
    out, cache = gate_forward(a, b, w1, w2, bias)
    assert out.dtype == np.float32 and backend.get_xp(out) is xp
    grads = gate_backward(xp.ones_like(out), cache)
    assert [g.dtype for g in grads] == [np.float32] * 5
    assert [g.shape for g in grads] == [(2, 3, 4), (2, 3, 4), (4, 4), (4, 4), (4,)]


def test_extreme_gates_select_one_input(rng):
    """A saturated gate returns a (g = 1) or b (g = 0) exactly."""
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    z = np.zeros((4, 4), np.float32)
    np.testing.assert_array_equal(gate_forward(a, b, z, z, np.full(4, 100, np.float32))[0], a)
    np.testing.assert_array_equal(gate_forward(a, b, z, z, np.full(4, -200, np.float32))[0], b)
    half = gate_forward(a, b, z, z, np.zeros(4, np.float32))[0]
    np.testing.assert_allclose(half, 0.5 * (a + b), rtol=1e-6)


@pytest.mark.parametrize("bad", ["ab", "w", "bias", "dtype"])
def test_errors(rng, bad):
    a, b = rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    w1, w2, bias = _params(rng, 4, np.float32)
    match = {"ab": "one shape", "w": "gate parameters", "bias": "gate parameters", "dtype": "one dtype"}[bad]
    if bad == "ab":
        b = b[:, :3]
    elif bad == "w":
        w1 = w1[:3]
    elif bad == "bias":
        bias = bias[:2]
    else:
        w2 = w2.astype(np.float64)
    with pytest.raises(ValueError, match=match):
        gate_forward(a, b, w1, w2, bias)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16), st.floats(0.01, 5.0), st.integers(0, 2**31 - 1))
def test_output_lies_between_inputs(B, T, C, scale, seed):
    r = np.random.default_rng(seed)
    a = (r.standard_normal((B, T, C)) * scale).astype(np.float32)
    b = (r.standard_normal((B, T, C)) * scale).astype(np.float32)
    w1, w2, bias = _params(r, C, np.float32, scale)
    out, _ = gate_forward(a, b, w1, w2, bias)
    assert out.dtype == np.float32
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # g·a + (1 − g)·b is a convex combination; float32 rounding of the two products and the sum may
    # step outside [lo, hi] by at most a couple of ulps of the larger magnitude.
    slack = 2 * np.spacing(np.maximum(np.abs(a), np.abs(b)))
    assert ((out >= lo - slack) & (out <= hi + slack)).all()


@pytest.mark.parity
def test_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    B, T, C = 3, 5, 16
    a, b = rng.standard_normal((B, T, C)).astype(np.float32), rng.standard_normal((B, T, C)).astype(np.float32)
    w1, w2, bias = _params(rng, C, np.float32, 0.3)
    dout = rng.standard_normal((B, T, C)).astype(np.float32)
    out, cache = gate_forward(a, b, w1, w2, bias)
    ours = (out, *gate_backward(dout, cache))

    t = [torch.tensor(x, requires_grad=True) for x in (a, b, w1, w2, bias)]
    g = torch.sigmoid(t[0] @ t[2].T + t[1] @ t[3].T + t[4])           # the original's fus1 gate (docs/model.md §2)
    tout = g * t[0] + (1 - g) * t[1]
    (tout * torch.tensor(dout)).sum().backward()
    for name, x, ref, tol in zip(["out", "da", "db", "dw1", "dw2", "dbias"], ours,
                                 [tout] + [x.grad for x in t], [1e-5] + [1e-4] * 5):
        err = np.abs(x - ref.detach().numpy())
        assert err.max() <= tol, f"{name}: max abs diff {err.max():.3e} at {np.unravel_index(err.argmax(), err.shape)}"
