"""relu / tanh / sigmoid: gradient checks, stability, dtype, torch parity."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.activations import (relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                                      tanh_backward, tanh_forward)

PAIRS = {"relu": (relu_forward, relu_backward), "tanh": (tanh_forward, tanh_backward),
         "sigmoid": (sigmoid_forward, sigmoid_backward)}


@pytest.mark.parametrize("op", sorted(PAIRS))
def test_gradcheck(xp_name, rng, op):
    fwd, bwd = PAIRS[op]
    x = rng.standard_normal((3, 4, 5)) * 3
    x = np.where(np.abs(x) < 1e-3, 0.5, x)                # keep away from relu's kink at 0
    x = backend.asarray(x, backend=xp_name)
    dy = backend.asarray(rng.standard_normal(x.shape), backend=xp_name)
    dx = bwd(dy, fwd(x)[1])
    # h = 1e-5 ~ eps^(1/3) balances truncation and round-off in float64 (at 1e-6 round-off in L
    # alone is ~1e-9 absolute, which is ~1e-6 relative on sigmoid's tiny tail gradients).
    errs = check_grads(lambda: float((fwd(x)[0] * dy).sum()), {"x": x}, {"x": dx}, h=1e-5)
    assert errs["x"] <= 1e-6


@pytest.mark.parametrize("op", sorted(PAIRS))
@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16)), seed=st.integers(0, 2**16))
def test_float32_in_float32_out(op, shape, seed):
    fwd, bwd = PAIRS[op]
    x = (np.random.default_rng(seed).standard_normal(shape) * 5).astype(np.float32)
    y, cache = fwd(x)
    dx = bwd(np.ones_like(x), cache)
    assert y.dtype == dx.dtype == np.float32 and y.shape == dx.shape == x.shape


def test_sigmoid_stable_for_large_magnitudes():
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no overflow warnings
        y, cache = sigmoid_forward(x)
        dx = sigmoid_backward(np.ones_like(x), cache)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    # relative accuracy in the left tail (1 - sigmoid(30) would have cancelled to 0)
    np.testing.assert_allclose(y[2], 1 / (1 + np.exp(30.0)), rtol=1e-6)
    np.testing.assert_allclose(y, 1 - sigmoid_forward(-x)[0], atol=1e-7)


def test_relu_zero_gradient_at_and_below_zero():
    x = np.array([-2.0, 0.0, 3.0], np.float32)
    y, cache = relu_forward(x)
    np.testing.assert_array_equal(y, [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(relu_backward(np.array([5.0, 5.0, 5.0], np.float32), cache), [0.0, 0.0, 5.0])


@pytest.mark.parity
@pytest.mark.parametrize("op", sorted(PAIRS))
def test_parity_with_torch(rng, op):
    torch = pytest.importorskip("torch")
    fwd, bwd = PAIRS[op]
    x = (rng.standard_normal((4, 6, 9)) * 4).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = getattr(torch, op)(tx)
    ty.backward(torch.from_numpy(dy))
    y, cache = fwd(x)
    dx = bwd(dy, cache)
    for name, ours, theirs, tol in (("y", y, ty.detach().numpy(), 1e-5), ("dx", dx, tx.grad.numpy(), 1e-4)):
        diff = np.abs(ours.astype(np.float64) - theirs)
        assert diff.max() <= tol, f"{op} {name}: max abs diff {diff.max():.3e} at {np.unravel_index(diff.argmax(), diff.shape)}"
