"""softmax / log_softmax / logsumexp: gradient checks, invariants, -inf handling, torch parity."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.softmax import (log_softmax_backward, log_softmax_forward, logsumexp, logsumexp_backward,
                                  logsumexp_forward, softmax_backward, softmax_forward)

PAIRS = {
    "softmax": (softmax_forward, softmax_backward),
    "log_softmax": (log_softmax_forward, log_softmax_backward),
    "logsumexp": (logsumexp_forward, logsumexp_backward),
}


@pytest.mark.parametrize("op", sorted(PAIRS))
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_gradcheck(xp_name, rng, op, axis):
    fwd, bwd = PAIRS[op]
    x = backend.asarray(rng.standard_normal((3, 4, 5)) * 2, backend=xp_name)
    y, cache = fwd(x, axis=axis)
    dy = backend.asarray(rng.standard_normal(y.shape), backend=xp_name)
    dx = bwd(dy, cache)
    # h = 1e-5 ~ eps^(1/3), the step that balances truncation (O(h^2)) against round-off
    # (O(eps |L| / h)) in float64; at h = 1e-6 round-off alone reaches ~1e-6 relative on the
    # smallest softmax gradients.
    errs = check_grads(lambda: float((fwd(x, axis=axis)[0] * dy).sum()), {"x": x}, {"x": dx}, h=1e-5)
    assert errs["x"] <= 1e-6


_shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16))


@settings(max_examples=25, deadline=None)
@given(shape=_shapes, seed=st.integers(0, 2**16), scale=st.floats(0.1, 1e4))
def test_softmax_rows_sum_to_one(shape, seed, scale):
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    y, _ = softmax_forward(x)
    assert y.dtype == np.float32 and np.isfinite(y).all() and (y >= 0).all()
    np.testing.assert_allclose(y.sum(-1, dtype=np.float64), 1.0, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(shape=_shapes, seed=st.integers(0, 2**16))
def test_log_softmax_is_log_of_softmax(shape, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3).astype(np.float32)
    ls, _ = log_softmax_forward(x)
    s, _ = softmax_forward(x)
    assert ls.dtype == np.float32
    np.testing.assert_allclose(ls, np.log(s), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(shape=_shapes, seed=st.integers(0, 2**16), offset=st.floats(-1e4, 1e4))
def test_logsumexp_matches_naive_and_large_magnitudes(shape, seed, offset):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    # stable inputs: the naive formula is fine and agrees
    naive = np.log(np.exp(x).sum(-1))
    np.testing.assert_allclose(logsumexp(x), naive, rtol=1e-12, atol=1e-12)
    x32 = x.astype(np.float32)
    assert logsumexp(x32).dtype == np.float32 and logsumexp_forward(x32)[0].dtype == np.float32
    # shifted by a large offset: naive exp overflows/underflows, ours is exact up to the shift
    big = logsumexp(x + offset)
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big - offset, naive, rtol=1e-9, atol=1e-9 * max(1.0, abs(offset)))


def test_logsumexp_keepdims_and_axis():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    assert logsumexp(x, axis=1).shape == (2, 4)
    assert logsumexp(x, axis=1, keepdims=True).shape == (2, 1, 4)
    np.testing.assert_allclose(logsumexp(x, axis=0), np.log(np.exp(x).sum(0)))


def test_minus_inf_entries_no_warnings():
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0], [1e30, 1e30, -np.inf]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # any RuntimeWarning fails the test
        lse = logsumexp(x)
        y, cache = logsumexp_forward(x)
        dx = logsumexp_backward(np.ones(3, np.float32), cache)
        s, _ = softmax_forward(x[1:])
        ls, _ = log_softmax_forward(x[1:])
    assert lse[0] == -np.inf and lse.dtype == np.float32
    np.testing.assert_allclose(lse[1], np.log(1 + np.e), rtol=1e-6)
    np.testing.assert_allclose(lse[2], 1e30 + 0.0, rtol=1e-6)  # 1e30 + log 2 rounds to 1e30 in float32
    np.testing.assert_array_equal(y, lse)
    np.testing.assert_array_equal(dx[0], 0.0)                   # all -inf row: zero gradient, no nan
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(s[0], [1 / (1 + np.e), 0.0, np.e / (1 + np.e)], rtol=1e-6)
    assert ls[0, 1] == -np.inf and np.isfinite(ls[0, [0, 2]]).all()


def test_softmax_invariant_to_shift():
    x = np.random.default_rng(0).standard_normal((4, 6))
    np.testing.assert_allclose(softmax_forward(x)[0], softmax_forward(x + 1000.0)[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parity
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_parity_with_torch(rng, op, axis):
    torch = pytest.importorskip("torch")
    fwd, bwd = PAIRS[op]
    x = (rng.standard_normal((2, 5, 7)) * 4).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = getattr(torch.nn.functional, op)(tx, dim=axis)
    ty.backward(torch.from_numpy(dy))
    y, cache = fwd(x, axis=axis)
    dx = bwd(dy, cache)
    for name, ours, theirs, tol in (("y", y, ty.detach().numpy(), 1e-5), ("dx", dx, tx.grad.numpy(), 1e-4)):
        diff = np.abs(ours.astype(np.float64) - theirs)
        assert diff.max() <= tol, f"{op} {name}: max abs diff {diff.max():.3e} at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parity
def test_logsumexp_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 4, 5)) * 10).astype(np.float32)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.logsumexp(tx, dim=-1)
    ty.backward(torch.from_numpy(dy))
    y, cache = logsumexp_forward(x)
    dx = logsumexp_backward(dy, cache)
    assert np.abs(y - ty.detach().numpy()).max() <= 1e-5
    assert np.abs(dx - tx.grad.numpy()).max() <= 1e-4
