"""2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``) as im2col + GEMM.

Dimension legend: B batch, C input channels, O output channels (PyTorch's
``out_channels``), Hi×Wi input height/width, kh×kw kernel, Ho×Wo output
height/width, K = C·kh·kw the length of one unrolled patch, N = Ho·Wo output
positions. Images are NCHW, weights are PyTorch's (O, C, kh, kw).

The maths, with stride s and zero padding p (xp is x padded with p zeros on each
side of both spatial axes)::

    y[b, o, i, j] = bias[o] + Σ_{c, u, v} w[o, c, u, v] · xp[b, c, s·i + u, s·j + v]
    Ho = (Hi + 2p − kh) // s + 1,   Wo = (Wi + 2p − kw) // s + 1

im2col turns the sum into one matrix product. ``cols[b, (c, u, v), (i, j)]`` holds
the input value that kernel tap (c, u, v) sees at output position (i, j); then::

    y[b] = W2 @ cols[b]         (O, K) @ (K, N) -> (O, N),   W2 = w.reshape(O, K)

``cols`` is built with kh·kw strided slice copies, one per kernel offset (u, v)
(every offset contributes a shifted, subsampled copy of the whole input), which
reads the same on NumPy and CuPy. A 1×1 convolution needs no unrolling at all: its
patch is the pixel, so ``cols`` is ``x`` itself (subsampled when s > 1).

Backward follows from y = W2 @ cols being linear in both factors::

    dW2       = Σ_b dy[b] @ cols[b]ᵀ     (O, N) @ (N, K) -> (O, K), summed over b
    dcols[b]  = W2ᵀ @ dy[b]              (K, O) @ (O, N) -> (K, N)
    dbias     = Σ_{b, i, j} dy
    dx        = col2im(dcols): each offset's slice of dcols is *added* back where
                that offset's slice of xp was copied from (overlapping windows sum),
                then the padding is cut off.

Groups and dilation are not supported (ResNet uses neither).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_output_size"]


def _pair(v, name):
    """``3`` -> ``(3, 3)``; ``(1, 2)`` stays; anything else is a ValueError."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(v)
    if len(t) != 2 or not all(isinstance(e, int) for e in t):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return t


def conv2d_output_size(hi, wi, kh, kw, stride=1, padding=0):
    """``(Ho, Wo)`` of a convolution (floor division, like PyTorch)."""
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    return (hi + 2 * ph - kh) // sh + 1, (wi + 2 * pw - kw) // sw + 1


class Conv2dCache(NamedTuple):
    cols: object        # (B, K, N) stored: the unrolled input, needed for dW. Recomputing it
                        # would cost the same copy again; for a 1×1 stride-1 conv it is a view of x.
    x_shape: tuple      # (B, C, Hi, Wi): to size dx
    weight: object      # (O, C, kh, kw) stored (a reference): needed for dcols = W2ᵀ dy
    stride: tuple       # (sh, sw)
    padding: tuple      # (ph, pw)
    has_bias: bool      # whether backward returns dbias or None


def _im2col(x, kh, kw, stride, padding):
    """Unroll the input patches: (B, C, Hi, Wi) -> cols (B, C·kh·kw, Ho·Wo) in x's dtype."""
    xp = get_xp(x)
    B, C, Hi, Wi = x.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    if kh == kw == 1 and ph == pw == 0:                   # a 1×1 patch is just the pixel
        xs = x[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else x  # (B, C, Ho, Wo)
        return xs.reshape(B, C, Ho * Wo)                   # (B, K=C, N): a view when s = 1, else a copy
    if ph or pw:
        xpad = xp.zeros((B, C, Hi + 2 * ph, Wi + 2 * pw), dtype=x.dtype)  # (B, C, Hi+2p, Wi+2p)
        xpad[:, :, ph:ph + Hi, pw:pw + Wi] = x
    else:
        xpad = x
    cols = xp.empty((B, C, kh, kw, Ho, Wo), dtype=x.dtype)  # cols[b, c, u, v, i, j] = xpad[b, c, s·i+u, s·j+v]
    for u in range(kh):
        for v in range(kw):
            # kernel offset (u, v) sees the input rows u, u+s, …, u+s(Ho−1) and columns v, v+s, …
            cols[:, :, u, v] = xpad[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw]  # (B, C, Ho, Wo)
    return cols.reshape(B, C * kh * kw, Ho * Wo)           # (B, K, N), K ordered (c, u, v) like w.reshape(O, K)


def _col2im(dcols, x_shape, kh, kw, stride, padding):
    """Adjoint of :func:`_im2col`: scatter-add (B, K, N) patch gradients back to (B, C, Hi, Wi)."""
    xp = get_xp(dcols)
    B, C, Hi, Wi = x_shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    if kh == kw == 1 and ph == pw == 0:
        d = dcols.reshape(B, C, Ho, Wo)                    # (B, C, Ho, Wo)
        if (sh, sw) == (1, 1):
            return d
        dx = xp.zeros(x_shape, dtype=dcols.dtype)          # (B, C, Hi, Wi): skipped pixels get 0
        dx[:, :, ::sh, ::sw] = d
        return dx
    d6 = dcols.reshape(B, C, kh, kw, Ho, Wo)               # (B, C, kh, kw, Ho, Wo)
    dxpad = xp.zeros((B, C, Hi + 2 * ph, Wi + 2 * pw), dtype=dcols.dtype)  # (B, C, Hi+2p, Wi+2p)
    for u in range(kh):
        for v in range(kw):
            # undo "cols[:, :, u, v] = xpad[slice]": overlapping windows add up
            dxpad[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw] += d6[:, :, u, v]
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + Hi, pw:pw + Wi])  # (B, C, Hi, Wi): drop the padding


def conv2d_forward(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution ``y = W ⋆ x + b`` (cross-correlation, PyTorch semantics), im2col + GEMM.

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float
    weight : array (O, C, kh, kw), same dtype as ``x`` (PyTorch ``nn.Conv2d`` layout)
    bias : array (O,) or None
    stride, padding : int or (int, int)
        Stride and symmetric zero padding, per spatial axis.

    Returns
    -------
    y : array (B, O, Ho, Wo), dtype of ``x``
    cache : Conv2dCache

    Raises
    ------
    ValueError
        for wrong ranks, a channel mismatch, a dtype mismatch, a mis-shaped bias, or
        a kernel larger than the padded input; the message gives both shapes.
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d_forward: expected x (B, C, Hi, Wi) and weight (O, C, kh, kw) with the same C, "
                         f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise ValueError(f"conv2d_forward: x is {x.dtype} but weight is {weight.dtype}; cast one of them")
    O, C, kh, kw = weight.shape
    if bias is not None and tuple(bias.shape) != (O,):
        raise ValueError(f"conv2d_forward: bias has shape {tuple(bias.shape)}, expected ({O},)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    B, _, Hi, Wi = x.shape
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d_forward: kernel {kh}×{kw} does not fit input {Hi}×{Wi} with padding {padding}")
    cols = _im2col(x, kh, kw, stride, padding)             # (B, K, N)
    y = weight.reshape(O, C * kh * kw) @ cols              # (O, K) @ (B, K, N) -> (B, O, N)
    if bias is not None:
        y += bias[:, None]                                 # (B, O, N) + (O, 1): y is fresh, in place is safe
    return y.reshape(B, O, Ho, Wo), Conv2dCache(cols, tuple(x.shape), weight, stride, padding, bias is not None)


def conv2d_backward(dy, cache):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : array (B, O, Ho, Wo), upstream gradient
    cache : Conv2dCache from the forward call

    Returns
    -------
    dx : array (B, C, Hi, Wi)
    dweight : array (O, C, kh, kw)
    dbias : array (O,) or None when the forward had no bias
    """
    cols, x_shape, weight, stride, padding, has_bias = cache
    xp = get_xp(dy)
    O, C, kh, kw = weight.shape
    B = dy.shape[0]
    dy2 = dy.reshape(B, O, -1)                             # (B, O, N)
    # y = W2 @ cols  =>  dW2 = Σ_b dy[b] @ cols[b]ᵀ: contract over the batch and the positions at once
    dw = xp.tensordot(dy2, cols, axes=([0, 2], [0, 2]))    # (B, O, N) · (B, K, N) -> (O, K)
    # y = W2 @ cols  =>  dcols = W2ᵀ @ dy
    dcols = weight.reshape(O, C * kh * kw).T @ dy2         # (K, O) @ (B, O, N) -> (B, K, N)
    dx = _col2im(dcols, x_shape, kh, kw, stride, padding)  # (B, C, Hi, Wi)
    db = dy2.sum(axis=(0, 2)) if has_bias else None        # (O,): y = … + bias[o] at every (b, i, j)
    return dx, dw.reshape(weight.shape), db
