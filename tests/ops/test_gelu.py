"""Exact-erf GELU: gradient check, dtype, torch parity (approximate='none')."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.gelu import gelu_backward, gelu_forward


def test_gelu_gradcheck(xp_name, rng):
    # values spread over every erf branch (|x/sqrt2| < 0.84, < 1.25, < 2.86, < 6, >= 6)
    x = backend.asarray(np.concatenate([rng.standard_normal(12) * 3, [0.1, -1.5, 2.5, -5.0, 9.0, -9.0]]),
                        backend=xp_name)
    dy = backend.asarray(rng.standard_normal(x.shape), backend=xp_name)
    dx = gelu_backward(dy, gelu_forward(x)[1])
    errs = check_grads(lambda: float((gelu_forward(x)[0] * dy).sum()), {"x": x}, {"x": dx})
    assert errs["x"] <= 1e-6


def test_gelu_known_values():
    x = np.array([0.0, 1.0, -1.0, 3.0], np.float64)
    # 0.5 x (1 + erf(x / sqrt 2)) with math.erf
    import math
    ref = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(gelu_forward(x)[0], ref, rtol=1e-15, atol=1e-16)


@settings(max_examples=20, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16)), seed=st.integers(0, 2**16))
def test_gelu_float32_in_float32_out(shape, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)
    y, cache = gelu_forward(x)
    dx = gelu_backward(np.ones_like(x), cache)
    assert y.dtype == dx.dtype == np.float32 and y.shape == x.shape


@pytest.mark.parity
def test_gelu_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((4, 7, 33)) * 4).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.functional.gelu(tx, approximate="none")
    ty.backward(torch.from_numpy(dy))
    y, cache = gelu_forward(x)
    dx = gelu_backward(dy, cache)
    for name, ours, theirs, tol in (("y", y, ty.detach().numpy(), 1e-5), ("dx", dx, tx.grad.numpy(), 1e-4)):
        diff = np.abs(ours.astype(np.float64) - theirs)
        assert diff.max() <= tol, f"{name}: max abs diff {diff.max():.3e} at {np.unravel_index(diff.argmax(), diff.shape)}"
