"""Broadcast gating products used by the fusion variants (docs/model.md §6): mix, scale, weighted sum.

Three small pairs that combine feature vectors with weights that may be shared
by every feature of a row::

    mix           out = g ⊙ a + (1 − g) ⊙ b      a, b (…, C)   g (…, C) or (…, 1)
    scale         out = g ⊙ x                    x (…, C)      g (…, C) or (…, 1)
    weighted_sum  out = Σ_k w_k x_k              x (…, K, C)   w (…, K)

A (…, 1) gate holds one number per row that multiplies all C features (GMF's γ
and the filtration gate φ of method 5). :func:`minimner.ops.gate.gate_forward`
covers the per-feature gate that also computes g from its inputs; ``mix`` only
mixes, with g computed elsewhere. ``weighted_sum`` is the attention-weighted
pooling of K stacked paths (method 3, K = 4).

Backward (``dX`` is ∂L/∂X; Σ_C sums over the last axis only where g was broadcast)::

    mix           da = g ⊙ dout      db = (1 − g) ⊙ dout      dg = Σ_C (a − b) ⊙ dout
    scale         dx = g ⊙ dout                               dg = Σ_C x ⊙ dout
    weighted_sum  dx_k = w_k dout                             dw_k = ⟨x_k, dout⟩

Dimension legend: B batch, T word-piece tokens, C hidden, K stacked paths;
``…`` is any leading shape (typically (B, T)).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["MixCache", "mix_forward", "mix_backward", "ScaleCache", "scale_forward", "scale_backward",
           "WeightedSumCache", "weighted_sum_forward", "weighted_sum_backward"]


def _check_gate(name, x, g):
    """``g`` must be x's shape, or x's shape with a last axis of 1, and share x's dtype."""
    if x.ndim < 1 or (tuple(g.shape) != tuple(x.shape) and tuple(g.shape) != (*x.shape[:-1], 1)):
        raise ValueError(f"{name}: gate must have shape {tuple(x.shape)} or {(*x.shape[:-1], 1)}; "
                         f"got {tuple(g.shape)}")
    if g.dtype != x.dtype:
        raise ValueError(f"{name}: gate dtype {g.dtype} differs from the input dtype {x.dtype}")


def _sum_like(d, g):
    """Reduce a (…, C) gradient to g's shape: sum over C where g was broadcast from (…, 1)."""
    xp = get_xp(d)
    return xp.sum(d, axis=-1, keepdims=True) if g.shape[-1] != d.shape[-1] else d   # (…, 1) or (…, C)


class MixCache(NamedTuple):
    a: object   # (…, C) stored: dg = Σ (a − b) dout
    b: object   # (…, C) stored
    g: object   # (…, C) or (…, 1) stored: weighs da and db


def mix_forward(a, b, g):
    """Convex mix ``out = g ⊙ a + (1 − g) ⊙ b`` with a given gate.

    Parameters
    ----------
    a, b : (…, C) float arrays of one shape and dtype; ``a`` takes g, ``b`` takes 1 − g.
    g : (…, C) or (…, 1) float array of the same dtype, normally in (0, 1).

    Returns
    -------
    out : (…, C) array of ``a.dtype``; cache : :class:`MixCache`.

    Raises
    ------
    ValueError
        when shapes or dtypes disagree.
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"mix_forward: a and b must share shape and dtype; got {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")
    _check_gate("mix_forward", a, g)
    out = g * a + (1.0 - g) * b                            # (…, C); a (…, 1) gate broadcasts over C
    return out, MixCache(a, b, g)


def mix_backward(dout, cache):
    """Gradients of :func:`mix_forward`: ``(da, db, dg)`` shaped like a, b, g."""
    a, b, g = cache
    da = g * dout                                          # (…, C) ∂out/∂a = g
    db = (1.0 - g) * dout                                  # (…, C) ∂out/∂b = 1 − g
    dg = _sum_like((a - b) * dout, g)                      # (…, C) -> g's shape; ∂out/∂g = a − b
    return da, db, dg


class ScaleCache(NamedTuple):
    x: object   # (…, C) stored: dg = Σ x dout
    g: object   # (…, C) or (…, 1) stored: dx = g dout


def scale_forward(x, g):
    """``out = g ⊙ x`` with g of shape (…, C) or (…, 1) (broadcast over C).

    Parameters
    ----------
    x : (…, C) float array.
    g : (…, C) or (…, 1) float array of x's dtype.

    Returns
    -------
    out : (…, C) array of ``x.dtype``; cache : :class:`ScaleCache`.

    Raises
    ------
    ValueError
        when g's shape or dtype does not fit x.
    """
    _check_gate("scale_forward", x, g)
    return g * x, ScaleCache(x, g)                         # (…, 1|C) * (…, C) -> (…, C)


def scale_backward(dout, cache):
    """Gradients of :func:`scale_forward`: ``(dx, dg)`` shaped like x and g."""
    x, g = cache
    return g * dout, _sum_like(x * dout, g)                # (…, C), g's shape


class WeightedSumCache(NamedTuple):
    x: object   # (…, K, C) stored: dw_k = ⟨x_k, dout⟩
    w: object   # (…, K) stored: dx_k = w_k dout


def weighted_sum_forward(x, w):
    """``out = Σ_k w[…, k] x[…, k, :]``: pool K stacked vectors with weights (e.g. a softmax over paths).

    Parameters
    ----------
    x : (…, K, C) float array, K stacked feature vectors per row.
    w : (…, K) float array of x's dtype.

    Returns
    -------
    out : (…, C) array of ``x.dtype``; cache : :class:`WeightedSumCache`.

    Raises
    ------
    ValueError
        when w is not x's shape without the last axis, or the dtypes differ.
    """
    if x.ndim < 2 or tuple(w.shape) != tuple(x.shape[:-1]) or w.dtype != x.dtype:
        raise ValueError(f"weighted_sum_forward: w must have shape {tuple(x.shape[:-1])} and dtype {x.dtype}; "
                         f"got {tuple(w.shape)} {w.dtype}")
    out = (w[..., None, :] @ x)[..., 0, :]                 # (…, 1, K) @ (…, K, C) -> (…, 1, C) -> (…, C)
    return out, WeightedSumCache(x, w)


def weighted_sum_backward(dout, cache):
    """Gradients of :func:`weighted_sum_forward`: ``(dx (…, K, C), dw (…, K))``."""
    x, w = cache
    dx = w[..., :, None] * dout[..., None, :]              # (…, K, 1) * (…, 1, C) -> (…, K, C)
    dw = (x @ dout[..., :, None])[..., 0]                  # (…, K, C) @ (…, C, 1) -> (…, K, 1) -> (…, K)
    return dx, dw
