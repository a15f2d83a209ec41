"""Tests for minimner.ops.gmf: GMF and the filtration gate (gradients of every input and weight, dtype, errors).

Torch parity of both blocks runs through fusion method 5 in tests/models/test_fusion.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.gmf import filtration_gate_backward, filtration_gate_forward, gmf_backward, gmf_forward

GMF_W = ("w_t", "b_t", "w_i", "b_i", "w_g", "b_g")
FG_W = ("w_x", "w_m", "b_m", "w_f", "b_f", "w_r", "b_r")


def _weights(rng, names, H, dtype=np.float64):
    shape = {"w_g": (1, 2 * H), "b_g": (1,), "w_f": (1, 2 * H), "b_f": (1,)}
    return {n: (rng.standard_normal(shape.get(n, (H, H) if n.startswith("w") else (H,))) * 0.5).astype(dtype)
            for n in names}


@pytest.mark.parametrize("block", ["gmf", "filtration"])
def test_gradcheck_every_input_and_weight(rng, block):
    H = 4
    fwd, bwd, names, out_h = ((gmf_forward, gmf_backward, GMF_W, H) if block == "gmf" else
                              (filtration_gate_forward, filtration_gate_backward, FG_W, 2 * H))
    a, b = rng.standard_normal((2, 3, H)), rng.standard_normal((2, 3, H))
    w = _weights(rng, names, H)
    dout = rng.standard_normal((2, 3, out_h))
    out, gate, cache = fwd(a, b, *w.values())
    assert out.shape == (2, 3, out_h) and gate.shape == (2, 3, 1) and ((gate > 0) & (gate < 1)).all()
    grads = bwd(dout, cache)
    arrays = {"a": a, "b": b, **w}
    errs = check_grads(lambda: float((fwd(a, b, *w.values())[0] * dout).sum()), arrays, dict(zip(arrays, grads)))
    assert len(errs) == len(arrays) and max(errs.values()) < 1e-6


def test_filtration_copies_text_and_gmf_mixes_tanh_features(rng):
    H = 3
    a, b = rng.standard_normal((2, H)), rng.standard_normal((2, H))
    out, phi, _ = filtration_gate_forward(a, b, *_weights(rng, FG_W, H).values())
    np.testing.assert_array_equal(out[:, :H], a)
    w = _weights(rng, GMF_W, H)
    w["b_g"][...] = 50                                     # saturated gate: Gm = tanh(img W_iᵀ + b_i)
    gm, gamma, _ = gmf_forward(a, b, *w.values())
    np.testing.assert_allclose(gm, np.tanh(b @ w["w_i"].T + w["b_i"]), atol=1e-10)


def test_dtype_and_backend(xp_name, rng):
    xp, H = backend.xp(), 4
    a, b = (xp.asarray(rng.standard_normal((2, 3, H)), dtype=xp.float32) for _ in range(2))
    for fwd, bwd, names in ((gmf_forward, gmf_backward, GMF_W), (filtration_gate_forward, filtration_gate_backward,
                                                                  FG_W)):
        w = [backend.asarray(v) for v in _weights(rng, names, H, np.float32).values()]
        out, gate, cache = fwd(a, b, *w)
        assert out.dtype == gate.dtype == np.float32 and backend.get_xp(out) is xp
        assert all(g.dtype == np.float32 for g in bwd(xp.ones_like(out), cache))


def test_errors(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 4))
    with pytest.raises(ValueError, match="text and img must share one shape"):
        gmf_forward(a, b, *_weights(rng, GMF_W, 4).values())
    with pytest.raises(ValueError, match="text and mm must share one shape"):
        filtration_gate_forward(a, b, *_weights(rng, FG_W, 4).values())
    with pytest.raises(ValueError, match="linear_forward"):
        gmf_forward(a, a, *_weights(rng, GMF_W, 3).values())
