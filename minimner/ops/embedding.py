"""Embedding lookup: ``out[..., :] = weight[ids[...], :]``.

Dimension legend: B batch, T word-piece tokens, R image regions, C hidden,
H heads, D head size (C = H·D), K tags, V vocab. ``...`` is the shape of ``ids``
(typically (B, T)).

Backward: every occurrence of id v adds its upstream row into dweight[v]
(a scatter-add: repeated ids accumulate, which plain ``dweight[ids] += dout``
would not do). Row ``padding_idx`` gets zero gradient, as in PyTorch, so the
padding vector stays fixed during training.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp, is_device_array, scatter_add

__all__ = ["EmbeddingCache", "embedding_forward", "embedding_backward"]


class EmbeddingCache(NamedTuple):
    ids: object          # (...) int stored: where to scatter the gradient
    weight_shape: tuple  # (V, C): shape of dweight
    weight_dtype: object # dtype of dweight
    padding_idx: object  # int in [0, V) or None


def _check(ids, weight, padding_idx):
    V = weight.shape[0]
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (V, C), got shape {tuple(weight.shape)}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"embedding: ids must be an integer array, got dtype {ids.dtype}")
    if padding_idx is not None:
        if not -V <= padding_idx < V:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {V} embeddings")
        padding_idx = padding_idx % V                      # torch convention: negative counts from the end
    # The range check needs min/max on the host; for CuPy ids that is a device->host
    # sync on every call, so it is done on the host (NumPy) path only (where NumPy itself
    # would silently wrap negative ids).
    if not is_device_array(ids) and ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"embedding: ids must lie in [0, {V}), got values in [{ids.min()}, {ids.max()}]")
    return padding_idx


def embedding_forward(ids, weight, padding_idx=None):
    """Look up rows of ``weight``.

    Parameters
    ----------
    ids : int array (...), values in [0, V)
    weight : array (V, C), float
    padding_idx : int or None; only affects the backward pass (that row gets no gradient)

    Returns
    -------
    out : array (..., C), dtype of ``weight``
    cache : EmbeddingCache

    Raises
    ------
    ValueError
        for non-integer ids, ids out of range, a bad ``padding_idx`` or a non-2-D weight.
    """
    padding_idx = _check(ids, weight, padding_idx)
    out = weight[ids]                                      # (V, C)[(...)] -> (..., C)
    return out, EmbeddingCache(ids, tuple(weight.shape), weight.dtype, padding_idx)


def embedding_backward(dout, cache, dweight=None):
    """Scatter-add ``dout`` rows into a (V, C) gradient.

    Parameters
    ----------
    dout : array (..., C), upstream gradient
    cache : EmbeddingCache
    dweight : (V, C) array to accumulate into (e.g. the parameter's ``.grad``), or None for a
        fresh zero array. Accumulating in place spares a (V, C) allocation and a full (V, C)
        addition per step: only the N looked-up rows are touched (for BERT's 30522 × 384 word
        table, 47 MB twice a step).

    Returns
    -------
    dweight : array (V, C), dtype of the weight (the given array when one was passed)
    """
    ids, (V, C), dtype, padding_idx = cache
    xp = get_xp(dout)
    if dweight is None:
        dweight = xp.zeros((V, C), dtype=dtype)            # (V, C)
    flat_ids = ids.reshape(-1)                             # (N,)
    vals = dout.reshape(-1, C).astype(dtype, copy=False)   # (N, C)
    if padding_idx is not None:
        # The padding row never learns (torch semantics): its rows add exactly 0.0.
        vals = vals * (flat_ids != padding_idx)[:, None].astype(dtype)   # (N, C) ⊙ (N, 1)
    scatter_add(dweight, flat_ids, vals)                   # dweight[ids] += vals, repeats accumulated
    return dweight
