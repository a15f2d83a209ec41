"""Tests for minimner.ops.mix: broadcast mix, scale and weighted sum (gradients, dtype, invariants, errors)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.mix import (mix_backward, mix_forward, scale_backward, scale_forward, weighted_sum_backward,
                              weighted_sum_forward)


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("gate_width", [1, 4])
def test_mix_and_scale_gradcheck(rng, gate_width):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    g = _sig(rng.standard_normal((2, 3, gate_width)))
    dout = rng.standard_normal((2, 3, 4))
    out, cache = mix_forward(a, b, g)
    da, db, dg = mix_backward(dout, cache)
    errs = check_grads(lambda: float((mix_forward(a, b, g)[0] * dout).sum()), {"a": a, "b": b, "g": g},
                       {"a": da, "b": db, "g": dg})
    assert dg.shape == g.shape and max(errs.values()) < 1e-6
    out, cache = scale_forward(a, g)
    dx, dg = scale_backward(dout, cache)
    errs = check_grads(lambda: float((scale_forward(a, g)[0] * dout).sum()), {"x": a, "g": g}, {"x": dx, "g": dg})
    assert dg.shape == g.shape and max(errs.values()) < 1e-6


def test_weighted_sum_gradcheck(rng):
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4))
    dout = rng.standard_normal((2, 3, 5))
    out, cache = weighted_sum_forward(x, w)
    dx, dw = weighted_sum_backward(dout, cache)
    errs = check_grads(lambda: float((weighted_sum_forward(x, w)[0] * dout).sum()), {"x": x, "w": w},
                       {"x": dx, "w": dw})
    assert max(errs.values()) < 1e-6
    np.testing.assert_allclose(out, np.einsum("btk,btkc->btc", w, x), rtol=1e-12)


def test_dtype_and_backend(xp_name, rng):
    xp = backend.xp()
    a, b = (xp.asarray(rng.standard_normal((2, 3, 4)), dtype=xp.float32) for _ in range(2))
    g = xp.asarray(_sig(rng.standard_normal((2, 3, 1))), dtype=xp.float32)
    out, cache = mix_forward(a, b, g)
    assert out.dtype == np.float32 and backend.get_xp(out) is xp
    assert [d.dtype for d in mix_backward(out, cache)] == [np.float32] * 3
    out, cache = scale_forward(a, g)
    assert out.dtype == np.float32 and [d.dtype for d in scale_backward(out, cache)] == [np.float32] * 2
    x = xp.stack([a, b], axis=-2)                          # (2, 3, 2, 4)
    out, cache = weighted_sum_forward(x, xp.ones((2, 3, 2), dtype=xp.float32))
    assert out.dtype == np.float32 and [d.dtype for d in weighted_sum_backward(out, cache)] == [np.float32] * 2


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_invariants(B, T, C, K, seed):
    r = np.random.default_rng(seed)
    a, b = r.standard_normal((B, T, C)).astype(np.float32), r.standard_normal((B, T, C)).astype(np.float32)
    out, _ = mix_forward(a, b, _sig(r.standard_normal((B, T, 1))).astype(np.float32))
    slack = 2 * np.spacing(np.maximum(np.abs(a), np.abs(b)))   # a convex mix lies between its inputs
    assert ((out >= np.minimum(a, b) - slack) & (out <= np.maximum(a, b) + slack)).all()
    x = r.standard_normal((B, T, K, C)).astype(np.float32)
    k = r.integers(0, K, (B, T))
    onehot = np.eye(K, dtype=np.float32)[k]                # (B, T, K): picks path k exactly
    picked = np.take_along_axis(x, k[..., None, None], axis=2)[:, :, 0]   # (B, T, C)
    np.testing.assert_array_equal(weighted_sum_forward(x, onehot)[0], picked)


def test_errors(rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"gate must have shape \(2, 3, 4\) or \(2, 3, 1\); got \(2, 3, 2\)"):
        mix_forward(a, a, a[..., :2])
    with pytest.raises(ValueError, match="share shape and dtype"):
        mix_forward(a, a[:1], a)
    with pytest.raises(ValueError, match="gate dtype float64"):
        scale_forward(a, a.astype(np.float64))
    with pytest.raises(ValueError, match=r"w must have shape \(2, 3\)"):
        weighted_sum_forward(a, a)
