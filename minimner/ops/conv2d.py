"""2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``) as im2col + one GEMM.

Dimension legend: B batch, C input channels, C_out output channels (PyTorch's
``out_channels``), Hi×Wi input height/width, kh×kw kernel, Ho×Wo output
height/width, P = C·kh·kw the length of one unrolled patch, N = Ho·Wo output
positions per image. Images are NCHW, weights are PyTorch's (C_out, C, kh, kw).

The maths, with stride s and zero padding p (xp is x padded with p zeros on each
side of both spatial axes)::

    y[b, o, i, j] = bias[o] + Σ_{c, u, v} w[o, c, u, v] · xp[b, c, s·i + u, s·j + v]
    Ho = (Hi + 2p − kh) // s + 1,   Wo = (Wi + 2p − kw) // s + 1

im2col turns the sum into one matrix product for the whole batch. ``cols`` has one
row per kernel tap (c, u, v) and one column per (image, output position)
(b, i, j): ``cols[(c, u, v), (b, i, j)]`` is the input value that tap sees there. Then::

    y2 = W2 @ cols              (C_out, P) @ (P, B·N) -> (C_out, B·N),   W2 = w.reshape(C_out, P)

and y is y2 with its (C_out, B) axes swapped back to NCHW (the bias is added in the
same pass). One big GEMM keeps BLAS efficient even where N is small (7×7 maps).
``cols`` is built with kh·kw strided slice copies, one per kernel offset (u, v)
(every offset contributes a shifted, subsampled copy of the whole input), which
reads the same on NumPy and CuPy. A 1×1 convolution needs no unrolling: its patch
is the pixel, so ``cols`` is just x with the batch moved next to the positions (a
free view when B = 1).

Backward follows from y2 = W2 @ cols being linear in both factors::

    dW2    = dy2 @ colsᵀ        (C_out, B·N) @ (B·N, P) -> (C_out, P)
    dcols  = W2ᵀ @ dy2          (P, C_out) @ (C_out, B·N)   -> (P, B·N)
    dbias  = Σ_{b, i, j} dy
    dx     = col2im(dcols): each offset's slice of dcols is *added* back where that
             offset's slice of xp was copied from (overlapping windows sum), then the
             padding is cut off. col2im is the adjoint (transpose) of im2col.

**Layouts.** The GEMM naturally produces (C_out, B, Ho, Wo), channels first: "CNHW".
``layout="NCHW"`` (the default, PyTorch's) swaps the first two axes on the way in
and out, which costs a copy whenever B > 1. ``layout="CNHW"`` takes and returns
(C, B, Hi, Wi) / (C_out, B, Ho, Wo) arrays and skips both swaps; ResNet's inference
path keeps its activations in that layout from the first convolution to the last
(max-pool, ReLU and the residual sums do not care which of the first two axes is
the batch), and swaps once at each end.

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
    cols: object        # (P, B·N) stored: the unrolled input, needed for dW. Recomputing it would
                        # cost the same copy again; for a 1×1 stride-1 conv (CNHW, or B = 1) it is a view of x.
    x_shape: tuple      # (B, C, Hi, Wi): to size dx
    weight: object      # (C_out, C, kh, kw) stored (a reference): needed for dcols = W2ᵀ dy
    stride: tuple       # (sh, sw)
    padding: tuple      # (ph, pw)
    has_bias: bool      # whether backward returns dbias or None
    layout: str         # "NCHW" or "CNHW", of x, y and their gradients


_LAYOUTS = ("NCHW", "CNHW")


def _im2col(x, kh, kw, stride, padding, layout="NCHW"):
    """Unroll the input patches: x (B, C, Hi, Wi) [or (C, B, Hi, Wi) for CNHW] -> cols (C·kh·kw, B·Ho·Wo)."""
    xp = get_xp(x)
    xc = x.transpose(1, 0, 2, 3) if layout == "NCHW" else x  # (C, B, Hi, Wi) view: the batch joins the positions
    C, B, Hi, Wi = xc.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    if kh == kw == 1 and ph == pw == 0:                    # a 1×1 patch is just the pixel
        xs = xc[:, :, ::sh, ::sw] if (sh, sw) != (1, 1) else xc  # (C, B, Ho, Wo)
        return xs.reshape(C, B * Ho * Wo)                  # (P=C, B·N): a view for s = 1 and CNHW or B = 1
    if ph or pw:
        xpad = xp.zeros((C, B, Hi + 2 * ph, Wi + 2 * pw), dtype=x.dtype)  # (C, B, Hi+2p, Wi+2p)
        xpad[:, :, ph:ph + Hi, pw:pw + Wi] = xc            # the padding copy also moves the batch axis
    else:
        xpad = xc
    cols = xp.empty((C, kh, kw, B, Ho, Wo), dtype=x.dtype)  # cols[c, u, v, b, i, j] = xpad[c, b, s·i+u, s·j+v]
    for u in range(kh):
        for v in range(kw):
            # kernel offset (u, v) sees the input rows u, u+s, …, u+s(Ho−1) and columns v, v+s, …
            cols[:, u, v] = xpad[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw]  # (C, B, Ho, Wo)
    return cols.reshape(C * kh * kw, B * Ho * Wo)          # (P, B·N), P ordered (c, u, v) like w.reshape(C_out, P)


def _col2im(dcols, x_shape, kh, kw, stride, padding, layout="NCHW"):
    """Adjoint of :func:`_im2col`: scatter-add (P, B·N) patch gradients back to (B, C, Hi, Wi) [or CNHW]."""
    xp = get_xp(dcols)
    B, C, Hi, Wi = x_shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    dxc = xp.zeros((C, B, Hi + 2 * ph, Wi + 2 * pw), dtype=dcols.dtype)  # (C, B, Hi+2p, Wi+2p)
    d6 = dcols.reshape(C, kh, kw, B, Ho, Wo)               # (C, kh, kw, B, Ho, Wo)
    for u in range(kh):
        for v in range(kw):
            # undo "cols[:, u, v] = xpad[slice]": overlapping windows add up (skipped pixels stay 0)
            dxc[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw] += d6[:, u, v]
    dx = dxc[:, :, ph:ph + Hi, pw:pw + Wi]                 # (C, B, Hi, Wi) view: drop the padding
    return xp.ascontiguousarray(dx.transpose(1, 0, 2, 3) if layout == "NCHW" else dx)


def _to_layout(y2, B, Ho, Wo, bias, layout):
    """(C_out, B·N) GEMM output -> (B, C_out, Ho, Wo) contiguous [or (C_out, B, Ho, Wo)], adding the bias on the way."""
    xp = get_xp(y2)
    C_out = y2.shape[0]
    if layout == "CNHW":                                   # the GEMM's own layout: nothing to move
        y = y2.reshape(C_out, B, Ho, Wo)                       # (C_out, B, Ho, Wo) view
        if bias is not None:
            y += bias[:, None, None, None]                 # in place: y2 is fresh
        return y
    y4 = y2.reshape(C_out, B, Ho, Wo).transpose(1, 0, 2, 3)   # (B, C_out, Ho, Wo) view
    if B == 1:                                             # the swap is free: y2 already is NCHW
        if bias is not None:
            y4 += bias[:, None, None]                      # in place: y2 is fresh
        return y4
    y = xp.empty((B, C_out, Ho, Wo), dtype=y2.dtype)           # (B, C_out, Ho, Wo)
    if bias is None:
        y[...] = y4
    else:
        xp.add(y4, bias[:, None, None], out=y)             # (B, C_out, Ho, Wo) + (C_out, 1, 1): layout change + bias
    return y


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, layout="NCHW"):
    """2-D convolution ``y = W ⋆ x + b`` (cross-correlation, PyTorch semantics), im2col + GEMM.

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float
    weight : array (C_out, C, kh, kw), same dtype as ``x`` (PyTorch ``nn.Conv2d`` layout)
    bias : array (C_out,) or None
    stride, padding : int or (int, int)
        Stride and symmetric zero padding, per spatial axis.
    layout : ``"NCHW"`` (default) or ``"CNHW"``: x is then (C, B, Hi, Wi) and y (C_out, B, Ho, Wo)

    Returns
    -------
    y : array (B, C_out, Ho, Wo) [CNHW: (C_out, B, Ho, Wo)], dtype of ``x``
    cache : Conv2dCache

    Raises
    ------
    ValueError
        for wrong ranks, a channel mismatch, a dtype mismatch, a mis-shaped bias, or
        a kernel larger than the padded input; the message gives both shapes.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"conv2d_forward: layout must be 'NCHW' or 'CNHW', got {layout!r}")
    c_axis = 1 if layout == "NCHW" else 0
    if x.ndim != 4 or weight.ndim != 4 or x.shape[c_axis] != weight.shape[1]:
        want = "(B, C, Hi, Wi)" if layout == "NCHW" else "(C, B, Hi, Wi)"
        raise ValueError(f"conv2d_forward: expected x {want} and weight (O, C, kh, kw) with the same C, "
                         f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise ValueError(f"conv2d_forward: x is {x.dtype} but weight is {weight.dtype}; cast one of them")
    C_out, C, kh, kw = weight.shape
    if bias is not None and tuple(bias.shape) != (C_out,):
        raise ValueError(f"conv2d_forward: bias has shape {tuple(bias.shape)}, expected ({C_out},)")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    B, Hi, Wi = x.shape[1 - c_axis], x.shape[2], x.shape[3]
    Ho, Wo = conv2d_output_size(Hi, Wi, kh, kw, stride, padding)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d_forward: kernel {kh}×{kw} does not fit input {Hi}×{Wi} with padding {padding}")
    cols = _im2col(x, kh, kw, stride, padding, layout)     # (P, B·N)
    y2 = weight.reshape(C_out, C * kh * kw) @ cols             # (C_out, P) @ (P, B·N) -> (C_out, B·N): one GEMM
    y = _to_layout(y2, B, Ho, Wo, bias, layout)            # (B, C_out, Ho, Wo) [CNHW: (C_out, B, Ho, Wo)]
    return y, Conv2dCache(cols, (B, C, Hi, Wi), weight, stride, padding, bias is not None, layout)


def conv2d_backward(dy, cache):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : array (B, C_out, Ho, Wo) [CNHW: (C_out, B, Ho, Wo)], upstream gradient
    cache : Conv2dCache from the forward call

    Returns
    -------
    dx : array (B, C, Hi, Wi) [CNHW: (C, B, Hi, Wi)]
    dweight : array (C_out, C, kh, kw)
    dbias : array (C_out,) or None when the forward had no bias
    """
    cols, x_shape, weight, stride, padding, has_bias, layout = cache
    xp = get_xp(dy)
    C_out, C, kh, kw = weight.shape
    dyc = dy.transpose(1, 0, 2, 3) if layout == "NCHW" else dy  # (C_out, B, Ho, Wo): undo the final swap
    dy2 = xp.ascontiguousarray(dyc).reshape(C_out, -1)         # (C_out, B·N)
    # y2 = W2 @ cols  =>  dW2 = dy2 @ colsᵀ, summing over every image and position at once
    dw = dy2 @ cols.T                                      # (C_out, B·N) @ (B·N, P) -> (C_out, P)
    # y2 = W2 @ cols  =>  dcols = W2ᵀ @ dy2
    dcols = weight.reshape(C_out, C * kh * kw).T @ dy2         # (P, C_out) @ (C_out, B·N) -> (P, B·N)
    dx = _col2im(dcols, x_shape, kh, kw, stride, padding, layout)  # (B, C, Hi, Wi) [CNHW: (C, B, Hi, Wi)]
    db = dy2.sum(axis=1) if has_bias else None             # (C_out,): y = … + bias[o] at every (b, i, j)
    return dx, dw.reshape(weight.shape), db
