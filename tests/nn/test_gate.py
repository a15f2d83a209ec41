"""Tests for minimner.nn.gate: parameter names and layouts, gradients, init, loading."""
from __future__ import annotations

import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_module
from minimner.nn.gate import Gate


def test_names_and_layouts():
    g = Gate(6, names=("fus1_w1", "fus1_w2", "fus1_bias"), rng=np.random.default_rng(0))
    assert [(n, p.shape) for n, p in g.named_parameters()] == [("fus1_w1", (6, 6)), ("fus1_w2", (6, 6)),
                                                               ("fus1_bias", (6,))]
    c = Gate(6, layout="concat", rng=np.random.default_rng(0))
    assert [(n, p.shape) for n, p in c.named_parameters()] == [("weight", (6, 12)), ("bias", (6,))]
    with pytest.raises(ValueError, match="needs 3 distinct"):
        Gate(4, names=("w", "bias"))
    with pytest.raises(ValueError, match="layout"):
        Gate(4, layout="stacked")


def test_init():
    g = Gate(64, rng=np.random.default_rng(0))
    for p in g.parameters():                                 # U(±1/√C) everywhere (reset_parameters)
        assert p.data.dtype == np.float32 and np.abs(p.data).max() <= 1 / 8 and p.data.std() > 0.05
    n = Gate(64, layout="concat", initializer_range=0.02, rng=np.random.default_rng(0))
    assert abs(n.weight.data.std() - 0.02) < 0.002 and (n.bias.data == 0).all()


@pytest.mark.parametrize("layout", ["split", "concat"])
def test_gradcheck(rng, layout):
    g = Gate(4, layout=layout, rng=np.random.default_rng(1)).double()
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    errs = check_module(g, g.forward, g.backward, [a, b], rng)
    assert len(errs) == 2 + (3 if layout == "split" else 2) and max(errs.values()) < 1e-6


def test_concat_layout_equals_split(rng):
    """weight = [W1 | W2] acting on [a; b] is the same gate as the two matrices."""
    s = Gate(5, rng=np.random.default_rng(2))
    c = Gate(5, layout="concat", rng=np.random.default_rng(3))
    c.load_state_dict({"weight": np.concatenate([s.w1.data, s.w2.data], 1), "bias": s.bias.data})
    a, b = rng.standard_normal((2, 3, 5)).astype(np.float32), rng.standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(s.forward(a, b), c.forward(a, b))
    dout = rng.standard_normal((2, 3, 5)).astype(np.float32)
    for x, y in zip(s.backward(dout), c.backward(dout)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(c.weight.grad, np.concatenate([s.w1.grad, s.w2.grad], 1))
    np.testing.assert_array_equal(c.bias.grad, s.bias.grad)


def test_gradients_accumulate_and_backend(xp_name, rng):
    xp = backend.xp()
    g = Gate(4, rng=backend.rng(0))
    a, b = (xp.asarray(rng.standard_normal((3, 4)), dtype=xp.float32) for _ in range(2))
    dout = xp.asarray(rng.standard_normal((3, 4)), dtype=xp.float32)
    g.forward(a, b)
    g.backward(dout)
    first = g.w1.grad.copy()
    out = g.forward(a, b)
    da, db = g.backward(dout)
    assert out.dtype == da.dtype == db.dtype == np.float32 and backend.get_xp(out) is xp
    np.testing.assert_allclose(backend.asnumpy(g.w1.grad), 2 * backend.asnumpy(first), rtol=1e-6)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        g.backward(dout)
