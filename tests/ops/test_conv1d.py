"""conv1d_forward / conv1d_backward: gradient checks, a loop reference, dtype, validation, torch parity."""
import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.conv1d import conv1d_backward, conv1d_forward, conv1d_output_size

# (kernel, stride, padding, L): the char-CNN's three branches at L = 12 plus uneven ones
CONFIGS = [(2, 1, 1, 12), (3, 1, 1, 12), (4, 1, 2, 12), (3, 2, 0, 7), (1, 1, 0, 5), (5, 3, 2, 6)]


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


def conv1d_loops(x, w, b, stride, padding):
    """Independent reference: the defining sum, one output position at a time (float64)."""
    B, C, L = x.shape
    O, _, k = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    Lo = (L + 2 * padding - k) // stride + 1
    y = np.zeros((B, O, Lo))
    for i in range(Lo):
        patch = xp_[:, :, i * stride:i * stride + k]                       # (B, C, k)
        y[:, :, i] = np.tensordot(patch, w, axes=([1, 2], [1, 2]))         # (B, O)
    return y + (0 if b is None else b[None, :, None])


@pytest.mark.parametrize("k,s,p,L", CONFIGS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv1d_gradcheck(xp_name, rng, k, s, p, L, with_bias):
    x = _on(xp_name, rng.standard_normal((2, 3, L)))                      # (B, C, L) float64
    w = _on(xp_name, rng.standard_normal((4, 3, k)))                      # (O, C, k)
    b = _on(xp_name, rng.standard_normal(4)) if with_bias else None
    y, cache = conv1d_forward(x, w, b, s, p)
    assert y.shape == (2, 4, conv1d_output_size(L, k, s, p)) and y.dtype == np.float64
    dy = _on(xp_name, rng.standard_normal(y.shape))                       # random upstream gradient
    dx, dw, db = conv1d_backward(dy, cache)
    assert (db is None) == (not with_bias)
    assert dx.shape == x.shape and dw.shape == w.shape and dx.dtype == dw.dtype == np.float64
    arrays, analytic = {"x": x, "w": w}, {"x": dx, "w": dw}
    if with_bias:
        arrays["b"], analytic["b"] = b, db
    errs = check_grads(lambda: float((conv1d_forward(x, w, b, s, p)[0] * dy).sum()), arrays, analytic)
    assert max(errs.values()) <= 1e-6


@pytest.mark.parametrize("k,s,p,L", CONFIGS)
def test_conv1d_matches_the_loop_reference_and_keeps_float32(rng, k, s, p, L):
    x = rng.standard_normal((3, 5, L))
    w = rng.standard_normal((2, 5, k))
    b = rng.standard_normal(2)
    y, _ = conv1d_forward(x, w, b, s, p)
    np.testing.assert_allclose(y, conv1d_loops(x, w, b, s, p), rtol=1e-12, atol=1e-12)
    y32, _ = conv1d_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), s, p)
    assert y32.dtype == np.float32


def test_char_cnn_output_lengths():
    """padding k // 2 gives 13 / 12 / 13 positions for k = 2 / 3 / 4 at L = 12 (docs/modules.md §8)."""
    assert [conv1d_output_size(12, k, 1, k // 2) for k in (2, 3, 4)] == [13, 12, 13]


def test_conv1d_validation():
    x, w = np.zeros((2, 3, 6), np.float32), np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected x \(B, C, L\) and weight \(O, C, k\).*\(2, 3, 6, 1\)"):
        conv1d_forward(x[..., None], w)
    with pytest.raises(ValueError, match=r"same C, got x \(2, 3, 6\) and weight \(4, 2, 2\)"):
        conv1d_forward(x, np.zeros((4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="float64"):
        conv1d_forward(x, w.astype(np.float64))
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(4,\)"):
        conv1d_forward(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        conv1d_forward(x, np.zeros((4, 3, 9), np.float32))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv1d_forward(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        conv1d_forward(x, w, padding=-1)


@pytest.mark.parity
@pytest.mark.parametrize("k,s,p,L", CONFIGS)
def test_conv1d_torch_parity(rng, k, s, p, L):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 6, L)).astype(np.float32)
    w = rng.standard_normal((5, 6, k)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    y, cache = conv1d_forward(x, w, b, s, p)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv1d_backward(dy, cache)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv1d(tx, tw, tb, stride=s, padding=p)
    (ty * torch.from_numpy(dy)).sum().backward()
    for name, ours, ref in (("y", y, ty.detach().numpy()), ("dx", dx, tx.grad.numpy()),
                            ("dw", dw, tw.grad.numpy()), ("db", db, tb.grad.numpy())):
        assert ours.dtype == np.float32
        err = np.abs(ours - ref)
        assert err.max() <= 1e-5 * max(1.0, np.abs(ref).max()), \
            f"{name}: max abs diff {err.max():.3e} at {np.unravel_index(err.argmax(), err.shape)}"
