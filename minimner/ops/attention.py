"""Multi-head scaled dot-product attention: forward/backward pair.

Follows BERT's self-attention (Devlin et al. 2019; docs/modules.md §3) and the
cross-attention of MSCMT (docs/modules.md §4), on queries, keys and values that have
*already* been projected by their linear layers::

    split heads:  Q_h = Q[..., h·D:(h+1)·D],  K_h, V_h likewise         (head h = features h·D … h·D+D−1)
    scores:       S_h = Q_h K_hᵀ / √D + m                              m = (1 − mask)·(−10000)
    probs:        P_h = softmax(S_h) over keys                          (rows sum to one)
    dropout:      P̃_h = drop_p(P_h)                                     (inverted dropout, training only)
    context:      Ctx = concat_h(P̃_h V_h)

The key mask is additive and *finite* (−10000, docs/modules.md §5, docs/model.md §2 step 9): a row
whose keys are all padding still gets a well-defined softmax (the common −10000
shift cancels, so it equals the unmasked softmax up to float rounding) instead
of the NaN that −inf would give. Only keys are masked;
padded query rows still produce outputs, which later code ignores.

Backward, term by term (``dX`` is ∂L/∂X)::

    Ctx = P̃ V          ->  dP̃ = dCtx Vᵀ,   dV = P̃ᵀ dCtx
    P̃ = drop(P)        ->  dP = drop_backward(dP̃)       (same keep-mask, same 1/(1−p) scale)
    P = softmax(S)     ->  dS = P ⊙ (dP − Σ_k dP ⊙ P)     (softmax Jacobian-vector product)
    S = (Q/√D) Kᵀ + m   ->  dQ = dS K / √D,   dK = dSᵀ (Q/√D)   (m is a constant: no gradient)

Layout (speed only, the maths above is unchanged): heads are strided views of
the projections (no copies), and the scores are computed *keys-major*,
``Sᵀ = K_h (Q_h/√D)ᵀ`` of shape (B, H, Lk, Lq), so the softmax reduces over
axis −2. NumPy reduces over a middle axis with whole-row vector operations but
pays a per-row overhead when reducing short last-axis rows (Lk = 64 at BERT's
usual length); the returned ``probs`` is a (B, H, Lq, Lk) transposed view.

Dimension legend: B batch, Lq query length, Lk key/value length (T word pieces,
R image regions or O object slots), C hidden, H heads, D head size (C = H·D).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from minimner.backend import device_of, get_xp
from minimner.ops.dropout import dropout_backward, dropout_forward
from minimner.ops.softmax import softmax_backward, softmax_forward

__all__ = ["MASK_VALUE", "additive_key_mask", "attention_forward", "attention_backward", "AttentionCache"]

#: The additive score of a padding key (finite on purpose, see the module docstring).
MASK_VALUE = -10000.0


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs (all stored, none recomputed).

    q_s : (B, H, Lq, D) queries already divided by √D (stored: dK = dSᵀ q_s).
    k_h : (B, H, Lk, D) key heads, a view of k (stored: dQ = dS k_h / √D).
    v_h : (B, H, Lk, D) value heads, a view of v (stored: dP̃ = dCtx v_hᵀ).
    probs_drop_t : (B, H, Lk, Lq) probabilities after dropout, keys-major (stored:
        dV = P̃ᵀ dCtx); the very same array as the softmax output when dropout is off.
    softmax_cache : cache of the softmax op (holds the pre-dropout probabilities).
    dropout_cache : cache of the dropout op, or None when dropout was skipped.
    scale : 1/√D in the data dtype.
    """

    q_s: object
    k_h: object
    v_h: object
    probs_drop_t: object
    softmax_cache: object
    dropout_cache: object
    scale: object


def additive_key_mask(mask, dtype):
    """Turn a 0/1 key mask into BERT's additive mask ``(1 − mask)·(−10000)``.

    Parameters
    ----------
    mask : (B, Lk) int or bool array, 1 for a real key and 0 for padding.
    dtype : floating dtype of the scores (the additive mask is built in it, so
        nothing upcasts).

    Returns
    -------
    (B, 1, 1, Lk) array of ``dtype``: 0 for real keys, −10000 for padding keys,
    ready to broadcast over heads and query rows.

    Raises
    ------
    ValueError
        if ``mask`` is not 2-D or is a floating array (an already-additive mask
        passed by mistake would otherwise be silently reinterpreted).
    """
    xp = get_xp(mask)
    if mask.ndim != 2:
        raise ValueError(f"key mask must have shape (B, Lk); got shape {tuple(mask.shape)}")
    if mask.dtype.kind not in "biu":
        raise ValueError(f"key mask must be an int or bool 0/1 array (1 = real key); got dtype {mask.dtype}")
    dt = np.dtype(dtype).type                   # scalars in the data dtype: no upcast, and no host->device copy
    add = (dt(1) - mask.astype(dtype)) * dt(MASK_VALUE)                     # (B, Lk): 0 or −10000
    return add[:, None, None, :]                                            # (B, Lk) -> (B, 1, 1, Lk)


def _head_view(x, num_heads):
    """(B, L, C) -> (B, H, L, D) as a strided *view* (no copy).

    Each (L, D) slice has unit stride along D and row stride C, which BLAS accepts
    as it is, so the batched matmuls below read the projections in place.
    """
    B, L, C = x.shape
    # Head h owns features h·D … h·D+D−1 of each row.
    return x.reshape(B, L, num_heads, C // num_heads).transpose(0, 2, 1, 3)  # (B,L,C) -> (B,L,H,D) -> (B,H,L,D)


def _merge_heads(xh):
    """(B, H, L, D) -> (B, L, C) with C = H·D (inverse of :func:`_head_view`; one copy)."""
    B, H, L, D = xh.shape
    return xh.transpose(0, 2, 1, 3).reshape(B, L, H * D)  # (B, H, L, D) -> (B, L, H, D) -> (B, L, C)


def _validate(q, k, v, mask, num_heads):
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise ValueError(f"attention expects q (B, Lq, C), k and v (B, Lk, C); got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"attention shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                         "(need q (B, Lq, C) and k = v (B, Lk, C))")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype.kind != "f":
        raise ValueError(f"attention expects q, k, v of one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if num_heads < 1 or q.shape[2] % num_heads:
        raise ValueError(f"hidden size {q.shape[2]} is not a multiple of num_heads={num_heads}")
    if mask is not None and tuple(mask.shape) != (k.shape[0], k.shape[1]):
        raise ValueError(f"key mask must have shape (B, Lk) = {(k.shape[0], k.shape[1])}; got {tuple(mask.shape)}")
    devices = {device_of(a) for a in (q, k, v) + (() if mask is None else (mask,))}
    if len(devices) > 1:  # ops never move data; the caller puts everything on one backend
        raise ValueError(f"attention inputs live on different backends {sorted(devices)}: q {device_of(q)}, "
                         f"k {device_of(k)}, v {device_of(v)}, mask {device_of(mask) if mask is not None else None}")


def attention_forward(q, k, v, mask, num_heads, dropout_p=0.0, rng=None, training=False):
    """Multi-head scaled dot-product attention with an additive key mask.

    ``Ctx = concat_h( drop_p(softmax(Q_h K_hᵀ/√D + m)) V_h )`` with
    ``m = (1 − mask)·(−10000)`` broadcast over heads and query rows.

    Parameters
    ----------
    q : (B, Lq, C) float array, projected queries.
    k, v : (B, Lk, C) float arrays (same dtype as ``q``), projected keys and values.
    mask : (B, Lk) int or bool array (1 = real key, 0 = padding), or None for no mask.
    num_heads : H; ``C`` must be a multiple of it (D = C / H).
    dropout_p : drop probability on the attention probabilities (0.1 in BERT).
    rng : random generator for the dropout keep-mask (needed when dropout is active).
    training : dropout is applied only when True and ``dropout_p > 0``.

    Returns
    -------
    ctx : (B, Lq, C) array of ``q.dtype``.
    probs : (B, H, Lq, Lk) array of ``q.dtype``, the pre-dropout probabilities
        (each row sums to one; exactly 0 on padding keys when a row has a real key).
    cache : :class:`AttentionCache` for :func:`attention_backward`.

    Raises
    ------
    ValueError
        on mismatched shapes/dtypes, a C not divisible by H, or a bad mask.
    """
    _validate(q, k, v, mask, num_heads)
    xp = get_xp(q)
    D = q.shape[2] // num_heads
    scale = q.dtype.type(1.0 / math.sqrt(D))             # 1/√D as a data-dtype scalar: no upcast
    q_s = _head_view(q, num_heads) * scale                # (B, Lq, C) -> (B, H, Lq, D), pre-scaled by 1/√D (one copy)
    k_h = _head_view(k, num_heads)                        # (B, Lk, C) -> (B, H, Lk, D) view
    v_h = _head_view(v, num_heads)                        # (B, Lk, C) -> (B, H, Lk, D) view
    # Scores are kept keys-major, st[b, h, j, i] = S[b, h, i, j]: how strongly key j matches
    # query i. The softmax then reduces over axis -2, which NumPy does as elementwise max/add
    # of whole rows (measured 3x faster than reducing each short row over the last axis).
    scores_t = xp.matmul(k_h, q_s.transpose(0, 1, 3, 2))  # (B,H,Lk,D) @ (B,H,D,Lq) -> (B,H,Lk,Lq)
    if mask is not None:
        scores_t += additive_key_mask(mask, q.dtype).transpose(0, 1, 3, 2)  # + (B,1,Lk,1): padding keys get −10000
    # p_t[b, h, j, i]: share of key j in query i's context (the softmax subtracts the max over keys first).
    probs_t, sm_cache = softmax_forward(scores_t, axis=-2)  # (B, H, Lk, Lq), sums to 1 over keys
    if training and dropout_p > 0:
        probs_drop_t, drop_cache = dropout_forward(probs_t, dropout_p, rng, training=True)  # (B, H, Lk, Lq)
    else:
        probs_drop_t, drop_cache = probs_t, None          # no copy: backward knows dropout was skipped
    ctx_h = xp.matmul(probs_drop_t.transpose(0, 1, 3, 2), v_h)  # (B,H,Lq,Lk) @ (B,H,Lk,D) -> (B,H,Lq,D)
    ctx = _merge_heads(ctx_h)                             # (B, H, Lq, D) -> (B, Lq, C)
    probs = probs_t.transpose(0, 1, 3, 2)                 # (B, H, Lk, Lq) -> (B, H, Lq, Lk) view
    return ctx, probs, AttentionCache(q_s, k_h, v_h, probs_drop_t, sm_cache, drop_cache, scale)


def attention_backward(dctx, cache):
    """Gradients of :func:`attention_forward` with respect to q, k and v.

    Parameters
    ----------
    dctx : (B, Lq, C) float array, ∂L/∂ctx.
    cache : the :class:`AttentionCache` returned by the forward pass.

    Returns
    -------
    dq : (B, Lq, C), dk : (B, Lk, C), dv : (B, Lk, C), all in ``dctx.dtype``.
    (The mask is a constant and gets no gradient.)
    """
    q_s, k_h, v_h, probs_drop_t, sm_cache, drop_cache, scale = cache
    B, H, Lq, D = q_s.shape
    if tuple(dctx.shape) != (B, Lq, H * D):
        raise ValueError(f"dctx must have shape (B, Lq, C) = {(B, Lq, H * D)}; got {tuple(dctx.shape)}")
    xp = get_xp(dctx)
    dctx_h = dctx.reshape(B, Lq, H, D).transpose(0, 2, 1, 3)  # (B,Lq,C) -> (B,H,Lq,D) view
    # Ctx_h = P̃ V_h (P̃ held keys-major as P̃ᵀ): gradient to the values and to the dropped probabilities.
    dv_h = xp.matmul(probs_drop_t, dctx_h)                   # (B,H,Lk,Lq) @ (B,H,Lq,D) -> (B,H,Lk,D)  P̃ᵀ dCtx
    dprobs_t = xp.matmul(v_h, dctx_h.transpose(0, 1, 3, 2))  # (B,H,Lk,D) @ (B,H,D,Lq) -> (B,H,Lk,Lq)  (dCtx Vᵀ)ᵀ
    # P̃ = drop(P): reuse the forward keep-mask and scale (drawn in the same keys-major layout).
    if drop_cache is not None:
        dprobs_t = dropout_backward(dprobs_t, drop_cache)        # (B, H, Lk, Lq)
    # P = softmax(S) over keys: dS = P ⊙ (dP − Σ_keys dP ⊙ P); the additive mask passes dS through unchanged.
    dscores_t = softmax_backward(dprobs_t, sm_cache)             # (B, H, Lk, Lq)
    # S = q_s K_hᵀ with q_s = Q_h/√D, i.e. Sᵀ = K_h q_sᵀ.
    dq_h = xp.matmul(dscores_t.transpose(0, 1, 3, 2), k_h) * scale  # (B,H,Lq,Lk) @ (B,H,Lk,D) -> (B,H,Lq,D), ·1/√D
    dk_h = xp.matmul(dscores_t, q_s)                             # (B,H,Lk,Lq) @ (B,H,Lq,D) -> (B,H,Lk,D)
    return _merge_heads(dq_h), _merge_heads(dk_h), _merge_heads(dv_h)  # each (B, H, L, D) -> (B, L, C)
