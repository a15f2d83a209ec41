"""1-D max pooling (PyTorch ``nn.MaxPool1d``, floor mode, no padding) as height-1 2-D max pooling.

Dimension legend: B batch (for the char-CNN: B·T words), C channels, L input
length, k window, s stride, Lo output length. Arrays are NCL.

The maths::

    y[b, c, i] = max_{u < k} x[b, c, s·i + u],      Lo = (L − k) // s + 1
    dx: all of dy[b, c, i] goes to the one input that won window i.

Floor mode means a tail shorter than a window is never read: with k = s = 11 on
a length-13 input there is one window, over positions 0..10, and positions 11
and 12 get no gradient. The char-CNN relies on exactly this (docs/modules.md §8: each pool
yields one value per channel, covering only the first 12 − k + 1 conv positions).

**Why no loop of its own.** This is :func:`minimner.ops.pool.maxpool2d_forward`
on an image of height 1 with a 1×k window and stride (1, s): views in, views
out. Ties therefore follow that op's rule: the *first* maximal entry of a window
wins (PyTorch's CPU kernel picks the same one).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.ops.pool import MaxPool2dCache, maxpool2d_backward, maxpool2d_forward

__all__ = ["MaxPool1dCache", "maxpool1d_forward", "maxpool1d_backward"]


class MaxPool1dCache(NamedTuple):
    maxpool2d: MaxPool2dCache  # the height-1 2-D pool's cache (references to its input and output, stored)


def maxpool1d_forward(x, kernel_size, stride=None):
    """Max pooling over windows of ``kernel_size`` with stride ``stride`` (default: the kernel).

    Parameters
    ----------
    x : array (B, C, L), float
    kernel_size : int ≥ 1
    stride : int ≥ 1 or None (= ``kernel_size``, PyTorch's default)

    Returns
    -------
    y : array (B, C, Lo), dtype of ``x``, ``Lo = (L − k) // s + 1``
    cache : MaxPool1dCache

    Raises
    ------
    ValueError
        for a non-3-D input, a non-positive kernel or stride, or a window longer than the input.
    """
    stride = kernel_size if stride is None else stride
    for name, v in (("kernel_size", kernel_size), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"maxpool1d_forward: {name} must be a positive int, got {v!r}")
    if getattr(x, "ndim", None) != 3:
        raise ValueError(f"maxpool1d_forward: expected x (B, C, L), got shape {tuple(getattr(x, 'shape', ()))}")
    if kernel_size > x.shape[2]:
        raise ValueError(f"maxpool1d_forward: window {kernel_size} is longer than the input length {x.shape[2]}")
    y4, cache = maxpool2d_forward(x[:, :, None, :], (1, kernel_size), (1, stride), 0)  # (B, C, 1, L) -> (B, C, 1, Lo)
    return y4[:, :, 0, :], MaxPool1dCache(cache)                                      # (B, C, Lo) view


def maxpool1d_backward(dy, cache):
    """Gradient of :func:`maxpool1d_forward`: route each dy to its window's winner.

    Parameters
    ----------
    dy : array (B, C, Lo)
    cache : MaxPool1dCache

    Returns
    -------
    dx : array (B, C, L); entries that won no window (and the unread tail) get 0.
    """
    dx4 = maxpool2d_backward(dy[:, :, None, :], cache.maxpool2d)  # (B, C, 1, L)
    return dx4[:, :, 0, :]                                        # (B, C, L)
