"""Softmax, log-softmax and logsumexp over one axis, all max-shifted for stability.

    softmax(x)_i     = exp(x_i - m) / Σ_j exp(x_j - m),   m = max_j x_j
    logsumexp(x)     = m + log Σ_j exp(x_j - m)
    log_softmax(x)_i = x_i - logsumexp(x)

Subtracting m changes nothing mathematically but keeps every exp() in (0, 1],
so large logits never overflow. Shapes are free; ``axis`` names the reduced axis
(typically keys in attention (B, H, T, T), or tags K in the CRF).

Backward (s = softmax(x), sums over the reduced axis)::

    softmax:      dx = s * (dy - Σ dy * s)
    log_softmax:  dx = dy - s * Σ dy
    logsumexp:    dx = dy * s              (dy broadcast along the reduced axis)

``-inf`` entries (hard masks, impossible CRF transitions) are allowed: they get
probability 0. A row that is *entirely* ``-inf`` has logsumexp ``-inf`` with no
warning and zero logsumexp gradient; its softmax is undefined (nan, as in PyTorch).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["SoftmaxCache", "softmax_forward", "softmax_backward", "log_softmax_forward",
           "log_softmax_backward", "logsumexp", "logsumexp_forward", "logsumexp_backward"]


class SoftmaxCache(NamedTuple):
    y: object   # (...) stored: softmax probabilities s (for log_softmax / logsumexp too)
    axis: int   # the reduced axis


def _safe_max(x, axis):
    """max over ``axis`` (keepdims), with non-finite maxima (all -inf row, +inf) replaced by 0."""
    xp = get_xp(x)
    m = xp.max(x, axis=axis, keepdims=True)                # (..., 1, ...) row maxima
    return xp.where(xp.isfinite(m), m, 0).astype(x.dtype)  # 0 keeps x - m free of inf - inf


def logsumexp(x, axis=-1, keepdims=False):
    """Stable ``log(sum(exp(x), axis))``.

    Parameters
    ----------
    x : array (...), float; may contain ``-inf``
    axis : int, the reduced axis
    keepdims : bool, keep the reduced axis with size 1

    Returns
    -------
    array, ``x.shape`` without ``axis`` (or with it as 1), dtype of ``x``.
    An all ``-inf`` row gives ``-inf`` (no warning).
    """
    xp = get_xp(x)
    m = _safe_max(x, axis)                                 # (..., 1, ...)
    s = xp.sum(xp.exp(x - m), axis=axis, keepdims=True)    # (..., 1, ...) Σ exp(x - m), in [1, n] unless all -inf
    pos = s > 0
    # log(0) would warn; an all -inf row has s == 0 and its answer is -inf.
    out = xp.where(pos, xp.log(xp.where(pos, s, 1)), -xp.inf).astype(x.dtype) + m   # (..., 1, ...)
    return out if keepdims else xp.squeeze(out, axis=axis)


def softmax_forward(x, axis=-1):
    """``y = exp(x - max) / sum(exp(x - max))`` along ``axis``.

    Parameters
    ----------
    x : array (...), float
    axis : int

    Returns
    -------
    y : array (...), dtype of ``x``; every slice along ``axis`` sums to 1
    cache : SoftmaxCache
    """
    xp = get_xp(x)
    y = x - _safe_max(x, axis)                             # (...) ≤ 0 (a fresh array: safe to overwrite)
    xp.exp(y, out=y)                                       # (...) in [0, 1], in place
    y /= xp.sum(y, axis=axis, keepdims=True)               # (...) / (..., 1, ...) -> (...)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dy, cache):
    """``dx = y * (dy - sum(dy * y, axis))`` (the softmax Jacobian diag(y) - y yᵀ applied to dy)."""
    y, axis = cache
    xp = get_xp(dy)
    dx = dy * y                                                  # (...)
    s = xp.sum(dx, axis=axis, keepdims=True)                     # (..., 1, ...) Σ_j dy_j y_j
    dx -= y * s                                                  # y ⊙ dy − y Σ(dy ⊙ y)
    return dx


def log_softmax_forward(x, axis=-1):
    """``y = x - logsumexp(x, axis)``.

    Parameters
    ----------
    x : array (...), float
    axis : int

    Returns
    -------
    y : array (...), dtype of ``x`` (log-probabilities)
    cache : SoftmaxCache (holds softmax(x) = exp(y))
    """
    xp = get_xp(x)
    y = x - logsumexp(x, axis=axis, keepdims=True)         # (...) - (..., 1, ...) -> (...)
    return y, SoftmaxCache(xp.exp(y), axis)


def log_softmax_backward(dy, cache):
    """``dx = dy - softmax(x) * sum(dy, axis)``."""
    s, axis = cache
    xp = get_xp(dy)
    return dy - s * xp.sum(dy, axis=axis, keepdims=True)   # (...) - (...) * (..., 1, ...)


def logsumexp_forward(x, axis=-1):
    """``y = logsumexp(x, axis)`` with a cache for :func:`logsumexp_backward`.

    Returns
    -------
    y : array, ``x.shape`` without ``axis``, dtype of ``x``
    cache : SoftmaxCache (holds softmax(x); zeros for an all ``-inf`` row)
    """
    xp = get_xp(x)
    y = logsumexp(x, axis=axis, keepdims=True)             # (..., 1, ...)
    y_safe = xp.where(xp.isfinite(y), y, 0).astype(x.dtype)   # all -inf row: exp(-inf - 0) = 0, no nan
    s = xp.exp(x - y_safe)                                 # (...) softmax(x)
    return xp.squeeze(y, axis=axis), SoftmaxCache(s, axis)


def logsumexp_backward(dy, cache):
    """``dx = expand(dy, axis) * softmax(x)``.

    Parameters
    ----------
    dy : array, the forward output's shape (``axis`` removed)
    cache : SoftmaxCache

    Returns
    -------
    dx : array, the forward input's shape
    """
    s, axis = cache
    xp = get_xp(dy)
    return xp.expand_dims(dy, axis) * s                    # (..., 1, ...) * (...) -> (...)
