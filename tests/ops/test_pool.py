"""Max pooling (ties included), adaptive and global average pooling: gradient checks and torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                               global_avg_pool2d_backward, global_avg_pool2d_forward, maxpool2d_backward,
                               maxpool2d_forward)

# (kernel, stride, padding, H×W)
MAXPOOL_CONFIGS = [(3, 2, 1, (7, 8)), (2, 2, 0, (4, 6)), (3, 1, 1, (4, 5)), ((2, 3), (1, 2), (1, 1), (5, 6))]


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


def _distinct(rng, shape):
    """Values well apart (a permutation scaled by 0.1), so no max is near a tie (docs/style.md §2: away from kinks)."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape)


@pytest.mark.parametrize("k,s,p,hw", MAXPOOL_CONFIGS)
def test_maxpool_gradcheck(xp_name, rng, k, s, p, hw):
    x = _on(xp_name, _distinct(rng, (2, 3) + hw))
    y, cache = maxpool2d_forward(x, k, s, p)
    dy = _on(xp_name, rng.standard_normal(y.shape))
    dx = maxpool2d_backward(dy, cache)
    errs = check_grads(lambda: float((maxpool2d_forward(x, k, s, p)[0] * dy).sum()), {"x": x}, {"x": dx})
    assert errs["x"] <= 1e-6


def test_maxpool_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 0, 2, 1] = 5.0     # a three-way tie inside several windows
    y, cache = maxpool2d_forward(x, 3, 1, 0)                 # 2×2 output, every window contains all three
    assert (y == 5).all()
    dx = maxpool2d_backward(np.ones_like(y), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 1] = 4.0                               # the top-left-most 5 wins all four windows
    np.testing.assert_array_equal(dx, expected)
    # all-equal input: each window's first entry (its top-left corner) wins
    y, cache = maxpool2d_forward(np.ones((1, 1, 4, 4), np.float32), 2, 2, 0)
    dx = maxpool2d_backward(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


def test_maxpool_validation():
    with pytest.raises(ValueError, match="at most half the kernel"):
        maxpool2d_forward(np.zeros((1, 1, 4, 4), np.float32), 3, 2, 2)
    with pytest.raises(ValueError, match=r"expected x \(B, C, Hi, Wi\)"):
        maxpool2d_forward(np.zeros((4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="does not fit"):
        maxpool2d_forward(np.zeros((1, 1, 2, 2), np.float32), 3, 1, 0)


@pytest.mark.parametrize("in_hw,out_hw", [((7, 7), (7, 7)), ((14, 14), (7, 7)), ((5, 7), (3, 2)), ((3, 4), (5, 6))])
def test_adaptive_avg_pool_gradcheck(xp_name, rng, in_hw, out_hw):
    x = _on(xp_name, rng.standard_normal((2, 3) + in_hw))
    y, cache = adaptive_avg_pool2d_forward(x, out_hw)
    assert y.shape == (2, 3) + out_hw
    dy = _on(xp_name, rng.standard_normal(y.shape))
    dx = adaptive_avg_pool2d_backward(dy, cache)
    errs = check_grads(lambda: float((adaptive_avg_pool2d_forward(x, out_hw)[0] * dy).sum()), {"x": x}, {"x": dx})
    assert errs["x"] <= 1e-6


def test_global_avg_pool_gradcheck(xp_name, rng):
    x = _on(xp_name, rng.standard_normal((2, 3, 4, 5)))
    y, cache = global_avg_pool2d_forward(x)
    assert y.shape == (2, 3)
    dy = _on(xp_name, rng.standard_normal(y.shape))
    dx = global_avg_pool2d_backward(dy, cache)
    errs = check_grads(lambda: float((global_avg_pool2d_forward(x)[0] * dy).sum()), {"x": x}, {"x": dx})
    assert errs["x"] <= 1e-6


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(3, 8), W=st.integers(3, 8), seed=st.integers(0, 2**16))
def test_pools_keep_float32_and_bounds(B, C, H, W, seed):
    x = np.random.default_rng(seed).standard_normal((B, C, H, W)).astype(np.float32)
    y, cache = maxpool2d_forward(x, 3, 2, 1)
    assert y.dtype == np.float32 and maxpool2d_backward(y, cache).dtype == np.float32
    assert y.max() == x.max()                                # the global max survives max-pooling
    a, ca = adaptive_avg_pool2d_forward(x, (2, 3))
    assert a.dtype == np.float32 and adaptive_avg_pool2d_backward(a, ca).dtype == np.float32
    assert x.min() - 1e-6 <= a.min() and a.max() <= x.max() + 1e-6  # averages lie within the range
    g, cg = global_avg_pool2d_forward(x)
    assert g.dtype == np.float32 and global_avg_pool2d_backward(g, cg).dtype == np.float32


@pytest.mark.parity
@pytest.mark.parametrize("k,s,p,hw", MAXPOOL_CONFIGS)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_torch_parity(rng, k, s, p, hw, ties):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    if ties:
        x = np.round(x).astype(np.float32)                   # many equal values: tie-breaking is compared too
    y, cache = maxpool2d_forward(x, k, s, p)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = maxpool2d_backward(dy, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, k, s, p)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parity
@pytest.mark.parametrize("in_hw,out_hw", [((14, 14), (7, 7)), ((5, 7), (3, 2)), ((3, 4), (5, 6)), ((7, 7), (1, 1))])
def test_adaptive_avg_pool_torch_parity(rng, in_hw, out_hw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + in_hw).astype(np.float32)
    y, cache = adaptive_avg_pool2d_forward(x, out_hw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = adaptive_avg_pool2d_backward(dy, cache)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, out_hw)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
