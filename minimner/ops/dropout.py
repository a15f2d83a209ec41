"""Inverted dropout (docs/modules.md §7): zero entries with prob. p, scale the rest by 1/(1-p).

    keep ~ Bernoulli(1 - p)  (one draw per entry, from the caller's generator)
    y    = x * keep / (1 - p)          training
    y    = x                           evaluation, or p == 0

Scaling at training time keeps E[y] = x, so evaluation needs no rescaling.
Backward reuses the same mask: dx = dy * keep / (1 - p).

The uniforms are always drawn as float32 of ``x.shape``, whatever the dtype of
``x``: the mask is then a function of (generator state, shape, p) only, so a
float64 gradient check sees exactly the mask the float32 model sees.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["DropoutCache", "dropout_forward", "dropout_backward"]


class DropoutCache(NamedTuple):
    keep: object   # (...) bool mask stored (1 byte/entry), or None when dropout was the identity
    scale: float   # 1/(1-p) (0.0 when p == 1: everything dropped)


def dropout_forward(x, p, rng, training=True):
    """Inverted dropout.

    Parameters
    ----------
    x : array (...), float
    p : float in [0, 1], the probability of *dropping* an entry
    rng : ``numpy.random.Generator`` (or CuPy's, for CuPy ``x``); consumed only
        when training and ``p > 0``
    training : bool; when False the op is the identity

    Returns
    -------
    y : array (...), dtype of ``x`` (``x`` itself when the op is the identity)
    cache : DropoutCache (``keep`` is None for the identity)

    Raises
    ------
    ValueError
        if ``p`` is outside [0, 1], or a generator is needed and ``rng`` is None.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return x, DropoutCache(None, 1.0)
    if rng is None:
        raise ValueError("dropout_forward: training with p > 0 needs a random generator (rng=...)")
    xp = get_xp(x)
    keep = rng.random(x.shape, dtype=xp.float32) >= p      # (...) bool, P(keep) = 1 - p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    y = x * keep * x.dtype.type(scale)                     # (...) dtype of x
    return y, DropoutCache(keep, scale)


def dropout_backward(dy, cache):
    """``dx = dy * keep / (1 - p)`` with the forward's mask (``dx = dy`` for the identity)."""
    keep, scale = cache
    if keep is None:
        return dy
    return dy * keep * dy.dtype.type(scale)                # (...) same mask as forward
