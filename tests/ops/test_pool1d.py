"""maxpool1d_forward / maxpool1d_backward: gradient checks, floor mode, ties, validation, torch parity."""
import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.pool1d import maxpool1d_backward, maxpool1d_forward

# (kernel, stride, L): the char-CNN's pools (one window over 11 of 13, 10 of 12, 9 of 13) and overlapping ones
CONFIGS = [(11, None, 13), (10, None, 12), (9, None, 13), (2, 1, 6), (3, 2, 8)]


def _distinct(rng, shape):
    """Values well apart (a permutation scaled by 0.1), so no max is near a tie (docs/style.md §2: away from kinks)."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape)


@pytest.mark.parametrize("k,s,L", CONFIGS)
def test_maxpool1d_gradcheck(xp_name, rng, k, s, L):
    x = backend.asarray(_distinct(rng, (2, 3, L)), backend=xp_name)      # (B, C, L) float64
    y, cache = maxpool1d_forward(x, k, s)
    stride = k if s is None else s
    assert y.shape == (2, 3, (L - k) // stride + 1) and y.dtype == np.float64
    dy = backend.asarray(rng.standard_normal(y.shape), backend=xp_name)
    dx = maxpool1d_backward(dy, cache)
    assert dx.shape == x.shape and dx.dtype == np.float64
    errs = check_grads(lambda: float((maxpool1d_forward(x, k, s)[0] * dy).sum()), {"x": x}, {"x": dx})
    assert errs["x"] <= 1e-6


def test_floor_mode_never_reads_the_tail(rng):
    """kernel = stride = 11 on 13 positions: one window over 0..10; positions 11, 12 are ignored."""
    x = _distinct(rng, (2, 4, 13)).astype(np.float32)
    y, cache = maxpool1d_forward(x, 11)
    assert y.shape == (2, 4, 1) and y.dtype == np.float32
    np.testing.assert_array_equal(y[..., 0], x[..., :11].max(-1))
    x2 = x.copy()
    x2[..., 11:] = 1e3                                     # huge values in the tail change nothing
    np.testing.assert_array_equal(maxpool1d_forward(x2, 11)[0], y)
    dx = maxpool1d_backward(np.ones_like(y), cache)
    assert np.all(dx[..., 11:] == 0) and np.all(dx.sum(-1) == 1)


def test_ties_go_to_the_first_maximum():
    x = np.array([[[0.0, 5.0, 1.0, 5.0, 5.0]]], np.float32)
    y, cache = maxpool1d_forward(x, 5)
    np.testing.assert_array_equal(maxpool1d_backward(np.full_like(y, 2.0), cache), [[[0, 2, 0, 0, 0]]])


def test_maxpool1d_validation():
    x = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"expected x \(B, C, L\), got shape \(3, 6\)"):
        maxpool1d_forward(x[0], 2)
    with pytest.raises(ValueError, match="window 7 is longer than the input length 6"):
        maxpool1d_forward(x, 7)
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        maxpool1d_forward(x, 0)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        maxpool1d_forward(x, 2, 0)


@pytest.mark.parity
@pytest.mark.parametrize("k,s,L", CONFIGS)
def test_maxpool1d_torch_parity(rng, k, s, L):
    torch = pytest.importorskip("torch")
    x = _distinct(rng, (3, 4, L)).astype(np.float32)
    y, cache = maxpool1d_forward(x, k, s)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = maxpool1d_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool1d(tx, k, s)
    (ty * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())
