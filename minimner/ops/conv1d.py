"""1-D convolution (cross-correlation, like ``torch.nn.functional.conv1d``) as a height-1 2-D convolution.

Dimension legend: B batch (for the char-CNN: B·T words), C input channels, C_out
output channels, L input length, k kernel width, Lo output length. Inputs are
NCL (PyTorch ``nn.Conv1d``), weights are PyTorch's (C_out, C, k).

The maths, with stride s and zero padding p on both ends (xp is x padded)::

    y[b, o, i] = bias[o] + Σ_{c, u} w[o, c, u] · xp[b, c, s·i + u]
    Lo = (L + 2p − k) // s + 1

**Why no im2col of its own.** This is exactly :func:`minimner.ops.conv2d.conv2d_forward`
on an image of height 1 with a 1×k kernel and padding (0, p): view x as
(B, C, 1, L) and w as (C_out, C, 1, k) (both free views), run the 2-D op, drop the
height axis again. Its im2col + one GEMM, the col2im adjoint in the backward and
the tests behind them are reused unchanged, so this file only reshapes::

    y   = conv2d(x[:, :, None, :], w[:, :, None, :], b, stride=(1, s), padding=(0, p))[:, :, 0, :]
    dx, dw, db = conv2d_backward(dy[:, :, None, :])  with the height axis dropped again

PyTorch's char-CNN convention ``padding = k // 2`` gives ``Lo = L + 1`` for even k
and ``Lo = L`` for odd k (13 / 12 / 13 for k = 2 / 3 / 4 at L = 12, docs/modules.md §8).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.ops.conv2d import Conv2dCache, conv2d_backward, conv2d_forward

__all__ = ["Conv1dCache", "conv1d_forward", "conv1d_backward", "conv1d_output_size"]


def conv1d_output_size(length: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """``Lo = (L + 2p − k) // s + 1`` (floor division, like PyTorch)."""
    return (length + 2 * padding - kernel) // stride + 1


class Conv1dCache(NamedTuple):
    conv2d: Conv2dCache  # the height-1 2-D convolution's cache (its im2col columns, stored; see conv2d)


def _int(v, name):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"conv1d: {name} must be a non-negative int, got {v!r}")
    return v


def conv1d_forward(x, weight, bias=None, stride=1, padding=0):
    """1-D convolution ``y = W ⋆ x + b`` (cross-correlation, PyTorch semantics).

    Parameters
    ----------
    x : array (B, C, L), float
    weight : array (C_out, C, k), same dtype as ``x`` (PyTorch ``nn.Conv1d`` layout)
    bias : array (C_out,) or None
    stride : int ≥ 1
    padding : int ≥ 0, zeros added at both ends

    Returns
    -------
    y : array (B, C_out, Lo), dtype of ``x``, ``Lo = (L + 2p − k) // s + 1``
    cache : Conv1dCache

    Raises
    ------
    ValueError
        for wrong ranks, a channel or dtype mismatch, a mis-shaped bias, or a kernel
        wider than the padded input; the message gives both shapes.
    """
    if getattr(x, "ndim", None) != 3 or getattr(weight, "ndim", None) != 3 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv1d_forward: expected x (B, C, L) and weight (O, C, k) with the same C, got x "
                         f"{tuple(getattr(x, 'shape', ()))} and weight {tuple(getattr(weight, 'shape', ()))}")
    stride, padding = _int(stride, "stride"), _int(padding, "padding")
    if stride < 1:
        raise ValueError(f"conv1d_forward: stride must be >= 1, got {stride}")
    y4, cache = conv2d_forward(x[:, :, None, :], weight[:, :, None, :], bias,   # (B, C, 1, L) ⋆ (C_out, C, 1, k)
                               stride=(1, stride), padding=(0, padding))        # -> (B, C_out, 1, Lo)
    return y4[:, :, 0, :], Conv1dCache(cache)                                   # (B, C_out, Lo) view


def conv1d_backward(dy, cache):
    """Gradients of :func:`conv1d_forward`.

    Parameters
    ----------
    dy : array (B, C_out, Lo), upstream gradient
    cache : Conv1dCache from the forward call

    Returns
    -------
    dx : array (B, C, L)
    dweight : array (C_out, C, k)
    dbias : array (C_out,) or None when the forward had no bias
    """
    dx4, dw4, db = conv2d_backward(dy[:, :, None, :], cache.conv2d)  # (B, C, 1, L), (C_out, C, 1, k), (C_out,)
    return dx4[:, :, 0, :], dw4[:, :, 0, :], db                       # (B, C, L), (C_out, C, k), (C_out,)
