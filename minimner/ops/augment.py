"""Fusing the semantic augmentation vectors into the text encoder (docs/augmentation.md §3).

``a`` is the per-position augmentation input (docs/augmentation.md §2: the table row of a
word at its first word piece, zeros elsewhere); ``S⁰`` the last BERT layer.

* **add** (after BERT, the default; ``aug_before = 1, aug_gate = 1``)::

      N = a W_maᵀ + b_ma                    maug_linear (E -> C)
      S = S⁰ + N

* **gate** (after BERT; ``aug_before = 1, aug_gate = 0``)::

      N = a W_maᵀ + b_ma
      g = σ(S⁰ W_1ᵀ + N W_2ᵀ + b_g)         aug_w1, aug_w2 (C, C), aug_bias (C,)
      S = g ⊙ S⁰ + (1 − g) ⊙ N

* **embed** (inside the embeddings; ``aug_before = 0``): ``E_t ← E_t + W_ea a_t + b_ea``
  before LayerNorm (``bert.embeddings.aug_linear``). The maths is the *add*
  pair applied to the embedding sum E instead of S⁰, so it reuses
  :func:`aug_add_forward` / :func:`aug_add_backward` (or, when the caller adds the
  term itself, :func:`minimner.ops.linear.linear_forward`).
* **none**: ``S = S⁰``; nothing to compute.

In every mode the model then applies ``drop_0.1(S)``; that dropout is not part of
these ops.

Backward of the gate (computed by :func:`minimner.ops.gate.gate_backward`), from
the output back (σ' = g(1 − g)):

    dg  = dS ⊙ (S⁰ − N)                     from S = N + g ⊙ (S⁰ − N)
    dz  = dg ⊙ g ⊙ (1 − g)                  through the sigmoid
    dS⁰ = g ⊙ dS + dz W_1                   direct path + gate path
    dN  = (1 − g) ⊙ dS + dz W_2
    dW_1 = dzᵀ S⁰,  dW_2 = dzᵀ N,  db_g = Σ dz     (summed over B, T)
    (da, dW_ma, db_ma) = linear backward of dN

Dimension legend: B batch, T word-piece tokens, C hidden, E augmentation vector
size (Da = 200 in the paper).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.ops.gate import GateCache, gate_backward, gate_forward
from minimner.ops.linear import LinearCache, linear_backward, linear_forward

__all__ = ["AugAddCache", "AugGateCache", "aug_add_forward", "aug_add_backward", "aug_gate_forward",
           "aug_gate_backward"]


def _check(s0, a, weight):
    if s0.ndim < 1 or a.shape[:-1] != s0.shape[:-1]:
        raise ValueError(f"augmentation fusion: S0 has shape {tuple(s0.shape)} and a has shape {tuple(a.shape)}; "
                         "they must agree on every axis but the last, (B, T, C) and (B, T, E)")
    if tuple(weight.shape) != (s0.shape[-1], a.shape[-1]):
        raise ValueError(f"augmentation fusion: weight has shape {tuple(weight.shape)}, expected "
                         f"(C, E) = {(s0.shape[-1], a.shape[-1])}")


class AugAddCache(NamedTuple):
    lin: LinearCache       # stored: a and W_ma, for the linear backward


def aug_add_forward(s0, a, weight, bias):
    """Additive fusion ``S = S⁰ + a Wᵀ + b`` (also the *embed* variant, with S⁰ = E).

    Parameters
    ----------
    s0 : array (B, T, C) float, BERT output S⁰ (or the embedding sum E)
    a : array (B, T, E), same dtype, augmentation input
    weight : array (C, E), ``maug_linear.weight`` (or ``aug_linear.weight``)
    bias : array (C,)

    Returns
    -------
    s : array (B, T, C), dtype of ``s0``
    cache : AugAddCache

    Raises
    ------
    ValueError
        naming both shapes when ``s0``, ``a`` and ``weight`` disagree.
    """
    _check(s0, a, weight)
    n, lin = linear_forward(a, weight, bias)               # N: (B, T, E) @ (E, C) -> (B, T, C)
    return s0 + n, AugAddCache(lin)                        # (B, T, C)


def aug_add_backward(ds, cache):
    """Gradients of :func:`aug_add_forward`.

    Parameters
    ----------
    ds : array (B, T, C), dL/dS

    Returns
    -------
    ds0 : (B, T, C)   (the identity path: dL/dS⁰ = dL/dS)
    da : (B, T, E)
    dweight : (C, E)
    dbias : (C,)
    """
    da, dweight, dbias = linear_backward(ds, cache.lin)    # through N = a Wᵀ + b
    return ds, da, dweight, dbias


class AugGateCache(NamedTuple):
    lin_a: LinearCache     # stored: a and W_ma (N = a W_maᵀ + b_ma)
    gate: GateCache        # stored: S⁰, N, g and the gate's linear caches (see minimner.ops.gate)


def aug_gate_forward(s0, a, weight, bias, w1, w2, gate_bias):
    """Gated fusion ``S = g ⊙ S⁰ + (1 − g) ⊙ N`` with ``g = σ(S⁰ W_1ᵀ + N W_2ᵀ + b_g)``.

    The gate itself is the shared fusion gate :func:`minimner.ops.gate.gate_forward`
    with ``a = S⁰`` (takes g) and ``b = N`` (takes 1 − g).

    Parameters
    ----------
    s0 : array (B, T, C) float, BERT output S⁰
    a : array (B, T, E), augmentation input
    weight, bias : (C, E), (C,), ``maug_linear`` (N = a Wᵀ + b)
    w1, w2 : (C, C), ``aug_w1``, ``aug_w2`` (used as ``x Wᵀ``)
    gate_bias : (C,), ``aug_bias``

    Returns
    -------
    s : array (B, T, C), dtype of ``s0``; each entry lies between S⁰ and N
    cache : AugGateCache

    Raises
    ------
    ValueError
        naming the shapes when they disagree.
    """
    _check(s0, a, weight)
    n, lin_a = linear_forward(a, weight, bias)             # N: (B, T, E) @ (E, C) -> (B, T, C)
    s, gate = gate_forward(s0, n, w1, w2, gate_bias)       # (B, T, C) = g ⊙ S⁰ + (1 − g) ⊙ N
    return s, AugGateCache(lin_a, gate)


def aug_gate_backward(ds, cache):
    """Gradients of :func:`aug_gate_forward`.

    Parameters
    ----------
    ds : array (B, T, C), dL/dS

    Returns
    -------
    ds0 : (B, T, C)
    da : (B, T, E)
    dweight, dbias : (C, E), (C,)   for ``maug_linear``
    dw1, dw2 : (C, C)
    dgate_bias : (C,)
    """
    ds0, dn, dw1, dw2, dgate_bias = gate_backward(ds, cache.gate)  # direct + gate paths into S⁰ and N
    da, dweight, dbias = linear_backward(dn, cache.lin_a)  # through N = a W_maᵀ + b_ma
    return ds0, da, dweight, dbias, dw1, dw2, dgate_bias
