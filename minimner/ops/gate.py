"""Sigmoid fusion gate: forward/backward pair (docs/model.md §2 step 10 and §6, docs/augmentation.md §3).

MSCMT mixes two streams ``a`` and ``b`` of the same shape with a learned,
per-feature gate::

    g   = σ(a W1ᵀ + b W2ᵀ + bias)            (…, C)   gate in (0, 1)
    out = g ⊙ a + (1 − g) ⊙ b                 (…, C)   a convex mix, entry by entry

``W1, W2`` are (C, C) matrices in PyTorch layout, used as ``x Wᵀ`` like an
``nn.Linear`` weight (``fus1_w1``, ``fus1_w2``, ``fus1_bias`` and friends). The
same maths covers a single concatenated (C, 2C) weight acting on ``[a; b]``
(``W = [W1 | W2]``); :class:`minimner.nn.gate.Gate` slices it into the two views.

Backward (``dX`` is ∂L/∂X; z is the pre-activation)::

    out = g a + (1 − g) b  ->  da₁ = g ⊙ dout,   db₁ = (1 − g) ⊙ dout,   dg = (a − b) ⊙ dout
    g = σ(z)               ->  dz = dg ⊙ g (1 − g)
    z = a W1ᵀ + b W2ᵀ + c  ->  da₂ = dz W1,  db₂ = dz W2,  dW1 = dzᵀ a,  dW2 = dzᵀ b,  dc = Σ_rows dz
    da = da₁ + da₂,  db = db₁ + db₂

Dimension legend: B batch, T word-piece tokens, C hidden; ``…`` is any leading
shape (typically (B, T)), flattened to N rows for the weight gradients.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.ops.activations import sigmoid_backward, sigmoid_forward
from minimner.ops.linear import linear_backward, linear_forward

__all__ = ["GateCache", "gate_forward", "gate_backward"]


class GateCache(NamedTuple):
    """What :func:`gate_backward` needs (all stored).

    a, b : (…, C) the two inputs (stored: dg = (a − b) ⊙ dout).
    g : (…, C) the gate (stored: it is the sigmoid's cache and weighs da₁, db₁).
    lin_a, lin_b : linear caches for ``a W1ᵀ`` and ``b W2ᵀ`` (hold a, b and the weights by reference).
    """

    a: object
    b: object
    g: object
    lin_a: object
    lin_b: object


def gate_forward(a, b, w1, w2, bias):
    """``out = g ⊙ a + (1 − g) ⊙ b`` with ``g = σ(a W1ᵀ + b W2ᵀ + bias)``.

    Parameters
    ----------
    a, b : (…, C) float arrays of one dtype; ``a`` takes the gate, ``b`` takes 1 − gate.
    w1, w2 : (C, C) float arrays (PyTorch layout, used as ``x Wᵀ``).
    bias : (C,) float array.

    Returns
    -------
    out : (…, C) array of ``a.dtype``, between ``a`` and ``b`` entry by entry.
    cache : :class:`GateCache`.

    Raises
    ------
    ValueError
        when shapes or dtypes disagree.
    """
    C = a.shape[-1] if a.ndim else 0
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"gate inputs must have one shape (…, C); got {tuple(a.shape)} and {tuple(b.shape)}")
    if tuple(w1.shape) != (C, C) or tuple(w2.shape) != (C, C) or tuple(bias.shape) != (C,):
        raise ValueError(f"gate parameters must be w1, w2 ({C}, {C}) and bias ({C},); got "
                         f"{tuple(w1.shape)}, {tuple(w2.shape)}, {tuple(bias.shape)}")
    if not (a.dtype == b.dtype == w1.dtype == w2.dtype == bias.dtype):
        raise ValueError(f"gate arrays must share one dtype; got a {a.dtype}, b {b.dtype}, w1 {w1.dtype}, "
                         f"w2 {w2.dtype}, bias {bias.dtype}")
    za, lin_a = linear_forward(a, w1, bias)          # (…, C) @ (C, C)ᵀ + (C,) -> (…, C)
    zb, lin_b = linear_forward(b, w2)                # (…, C) @ (C, C)ᵀ -> (…, C)
    g, _ = sigmoid_forward(za + zb)                  # (…, C) in (0, 1); the sigmoid's cache is g itself
    out = g * a + (1.0 - g) * b                      # (…, C): exactly a where g = 1 and b where g = 0
    return out, GateCache(a, b, g, lin_a, lin_b)


def gate_backward(dout, cache):
    """Gradients of :func:`gate_forward`.

    Parameters
    ----------
    dout : (…, C) float array, ∂L/∂out.
    cache : :class:`GateCache` from the forward pass.

    Returns
    -------
    da, db : (…, C); dw1, dw2 : (C, C); dbias : (C,) — all in ``dout.dtype``.
    """
    a, b, g, lin_a, lin_b = cache
    if dout.shape != a.shape:
        raise ValueError(f"dout must have the forward output's shape {tuple(a.shape)}; got {tuple(dout.shape)}")
    # out = g a + (1 − g) b: the direct paths and the gate's share.
    dg = (a - b) * dout                              # (…, C) ∂out/∂g = a − b
    # g = σ(z): dz = dg ⊙ g (1 − g).
    dz = sigmoid_backward(dg, g)                     # (…, C)
    # z = a W1ᵀ + bias + b W2ᵀ: the same dz flows into both linear maps.
    da2, dw1, dbias = linear_backward(dz, lin_a)     # (…, C), (C, C), (C,)
    db2, dw2, _ = linear_backward(dz, lin_b)         # (…, C), (C, C)
    da = g * dout + da2                              # (…, C) g ⊙ dout + dz W1
    db = (1.0 - g) * dout + db2                      # (…, C) (1 − g) ⊙ dout + dz W2
    return da, db, dw1, dw2, dbias
