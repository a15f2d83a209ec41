"""Pooling: 2-D max pooling with padding, adaptive and global average pooling.

Dimension legend: B batch, C channels, Hi×Wi input, Ho×Wo output, kh×kw window,
s stride, p padding. Arrays are NCHW.

Max pooling (PyTorch ``nn.MaxPool2d``, floor mode, padding counts as −∞)::

    y[b, c, i, j] = max_{u < kh, v < kw} xp[b, c, s·i + u, s·j + v]
    dx: all of dy[b, c, i, j] goes to the one input that won the max.

**Ties** are broken deterministically: the window is scanned in row-major order
(u, then v) and the *first* maximal entry wins, so a tie sends the whole gradient
to the top-left-most of the equal values. (PyTorch's CPU kernel scans in the same
order with a strict ``>``, so it picks the same entry.) A NaN is not treated
specially.

Adaptive average pooling (PyTorch ``nn.AdaptiveAvgPool2d``): output cell (i, j)
averages input rows ``floor(i·Hi/Ho) … ceil((i+1)·Hi/Ho) − 1`` (columns alike).
Windows may overlap when Hi is not a multiple of Ho, so the backward adds.
Global average pooling is the 1×1 case: ``y[b, c] = mean_{h, w} x[b, c, h, w]``.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["MaxPool2dCache", "maxpool2d_forward", "maxpool2d_backward",
           "AdaptiveAvgPool2dCache", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
           "global_avg_pool2d_forward", "global_avg_pool2d_backward"]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------------------------- max pool
class MaxPool2dCache(NamedTuple):
    x: object           # (B, C, Hi, Wi) stored (a reference to the input) and
    y: object           # (B, C, Ho, Wo) stored (a reference to the output): backward recomputes which
                        # entry won each window from them, so the forward stays a plain running max
                        # (all that inference needs) and no index array is kept
    kernel: tuple       # (kh, kw)
    stride: tuple       # (sh, sw)
    padding: tuple      # (ph, pw)


def _pad_neg_inf(x, ph, pw):
    """x padded with −∞ (never wins a max): (B, C, Hi, Wi) -> (B, C, Hi+2p, Wi+2p)."""
    if not (ph or pw):
        return x
    xp = get_xp(x)
    B, C, Hi, Wi = x.shape
    xpad = xp.full((B, C, Hi + 2 * ph, Wi + 2 * pw), -xp.inf, dtype=x.dtype)  # (B, C, Hi+2p, Wi+2p)
    xpad[:, :, ph:ph + Hi, pw:pw + Wi] = x
    return xpad


def maxpool2d_forward(x, kernel_size=3, stride=None, padding=0):
    """Max pooling over kh×kw windows with stride s and −∞ padding p (PyTorch semantics).

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    padding : int or (int, int), at most half the kernel (as PyTorch requires)

    Returns
    -------
    y : array (B, C, Ho, Wo), dtype of ``x``, ``Ho = (Hi + 2p − kh) // s + 1``
    cache : MaxPool2dCache

    Raises
    ------
    ValueError
        for a non-4-D input, padding above half the kernel, or a window that does not fit.
    """
    xp = get_xp(x)
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride if stride is not None else kernel_size)
    (ph, pw) = _pair(padding)
    if x.ndim != 4:
        raise ValueError(f"maxpool2d_forward: expected x (B, C, Hi, Wi), got shape {tuple(x.shape)}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"maxpool2d_forward: padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    B, C, Hi, Wi = x.shape
    Ho, Wo = (Hi + 2 * ph - kh) // sh + 1, (Wi + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool2d_forward: window {kh}×{kw} does not fit input {Hi}×{Wi} with padding {(ph, pw)}")
    xpad = _pad_neg_inf(x, ph, pw)                         # (B, C, Hi+2p, Wi+2p)
    y = xp.empty((B, C, Ho, Wo), dtype=x.dtype)            # running max over the window offsets
    for u in range(kh):
        for v in range(kw):
            cand = xpad[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw]  # (B, C, Ho, Wo)
            if u == 0 and v == 0:
                y[...] = cand
            else:
                xp.maximum(y, cand, out=y)
    return y, MaxPool2dCache(x, y, (kh, kw), (sh, sw), (ph, pw))


def maxpool2d_backward(dy, cache):
    """Gradient of :func:`maxpool2d_forward`: route each dy to its window's winner.

    The winner is recomputed: scanning the offsets in row-major order, the first
    entry equal to the window's max wins (so ties go to the top-left-most one).

    Parameters
    ----------
    dy : array (B, C, Ho, Wo)
    cache : MaxPool2dCache

    Returns
    -------
    dx : array (B, C, Hi, Wi); entries that won no window get 0, entries that won
        several overlapping windows get the sum.
    """
    xp = get_xp(dy)
    x, y, (kh, kw), (sh, sw), (ph, pw) = cache
    B, C, Hi, Wi = x.shape
    Ho, Wo = dy.shape[2:]
    xpad = _pad_neg_inf(x, ph, pw)                         # (B, C, Hi+2p, Wi+2p)
    dxpad = xp.zeros(xpad.shape, dtype=dy.dtype)           # (B, C, Hi+2p, Wi+2p)
    taken = xp.zeros((B, C, Ho, Wo), dtype=bool)           # windows whose winner is already found
    zero = dy.dtype.type(0)
    for u in range(kh):
        for v in range(kw):
            rows, cols = slice(u, u + sh * (Ho - 1) + 1, sh), slice(v, v + sw * (Wo - 1) + 1, sw)
            wins = (xpad[:, :, rows, cols] == y) & ~taken  # (B, C, Ho, Wo): first offset equal to the max
            taken |= wins
            # the winners of offset (u, v) receive dy; windows overlap, so add
            dxpad[:, :, rows, cols] += xp.where(wins, dy, zero)
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + Hi, pw:pw + Wi])  # (B, C, Hi, Wi): drop the padding


# ------------------------------------------------------------------------- adaptive avg pool
class AdaptiveAvgPool2dCache(NamedTuple):
    x_shape: tuple      # (B, C, Hi, Wi): backward needs only the window bounds, not x
    rows: tuple         # ((start, end), …) per output row
    cols: tuple         # ((start, end), …) per output column


def _bounds(n_in, n_out):
    """PyTorch's adaptive windows: [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out)) for each i."""
    return tuple(((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out))


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling to a fixed ``(Ho, Wo)`` grid (PyTorch ``AdaptiveAvgPool2d``).

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float
    output_size : int or (int, int)

    Returns
    -------
    y : array (B, C, Ho, Wo), dtype of ``x``
    cache : AdaptiveAvgPool2dCache
    """
    xp = get_xp(x)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d_forward: expected x (B, C, Hi, Wi), got shape {tuple(x.shape)}")
    Ho, Wo = _pair(output_size)
    B, C, Hi, Wi = x.shape
    if (Ho, Wo) == (Hi, Wi):                               # every window is one pixel: the identity
        return x.copy(), AdaptiveAvgPool2dCache(tuple(x.shape), _bounds(Hi, Ho), _bounds(Wi, Wo))
    rows, cols = _bounds(Hi, Ho), _bounds(Wi, Wo)
    y = xp.empty((B, C, Ho, Wo), dtype=x.dtype)            # (B, C, Ho, Wo)
    for i, (r0, r1) in enumerate(rows):                    # Ho·Wo small windows (7×7 for ResNet)
        for j, (c0, c1) in enumerate(cols):
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))  # (B, C)
    return y, AdaptiveAvgPool2dCache(tuple(x.shape), rows, cols)


def adaptive_avg_pool2d_backward(dy, cache):
    """Gradient of :func:`adaptive_avg_pool2d_forward`: spread dy evenly over each window.

    Returns
    -------
    dx : array (B, C, Hi, Wi)
    """
    xp = get_xp(dy)
    x_shape, rows, cols = cache
    if tuple(dy.shape[2:]) == tuple(x_shape[2:]):
        return dy.copy()
    dx = xp.zeros(x_shape, dtype=dy.dtype)                 # (B, C, Hi, Wi)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            area = dy.dtype.type((r1 - r0) * (c1 - c0))
            dx[:, :, r0:r1, c0:c1] += (dy[:, :, i, j] / area)[:, :, None, None]  # (B, C, 1, 1) broadcast
    return dx


# --------------------------------------------------------------------------- global avg pool
def global_avg_pool2d_forward(x):
    """``y[b, c] = mean over (h, w) of x[b, c]``: the pooled vector of a CNN.

    Parameters
    ----------
    x : array (B, C, H, W), float

    Returns
    -------
    y : array (B, C), dtype of ``x``
    cache : tuple ``x.shape`` (backward needs nothing else)
    """
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d_forward: expected x (B, C, H, W), got shape {tuple(x.shape)}")
    return x.mean(axis=(2, 3)), tuple(x.shape)             # (B, C)


def global_avg_pool2d_backward(dy, cache):
    """Gradient of :func:`global_avg_pool2d_forward`: ``dx[b, c, h, w] = dy[b, c] / (H·W)``.

    Returns
    -------
    dx : array (B, C, H, W)
    """
    xp = get_xp(dy)
    B, C, H, W = cache
    scale = dy.dtype.type(1.0 / (H * W))
    return xp.broadcast_to((dy * scale)[:, :, None, None], (B, C, H, W)).copy()  # (B, C, H, W)
