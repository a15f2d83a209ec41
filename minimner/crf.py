"""The linear-chain CRF as pure functions: forward/backward recursions, log Z,
path scores, (pairwise) marginals, the NLL with its gradient, and Viterbi.

Model (Lafferty et al. 2001; semantics of pytorch-crf 0.7.2 with
``batch_first=True``, docs/training.md §4). For one sequence with emissions ``e (T, K)``,
tags ``y`` and a prefix mask of length ``n = Σ mask``::

    score(y) = start[y_0] + Σ_{t<n} e[t, y_t] + Σ_{1≤t<n} trans[y_{t−1}, y_t] + end[y_{n−1}]
    log Z    = logsumexp over all K^n tag sequences y of score(y)
    llh(y)   = score(y) − log Z          NLL = −llh

``trans[i, j]`` scores the move *from* tag i *to* tag j. Padded steps
(``mask[b, t] = False``) carry every recursion variable forward unchanged, which
is the same as cutting the sequence at ``n``. ``mask[:, 0]`` must be true.

Everything works in log space with max-subtracted logsumexp. The forward
variables are *re-centred* at every step (``alpha_hat``: its largest entry is
0) and the shifts are summed into log Z separately, so no value grows with T:
that is what keeps float32 accurate for T = 512 and emissions of magnitude 1e3
(an uncentred alpha of size T·|e| would leave only a few correct digits in
``alpha + beta − log Z``). The backward variables are centred the same way,
independently, and every marginal is normalised locally, so marginals sum to
one to float round-off.

The gradient of the NLL is *expected minus observed counts*::

    ∂NLL/∂e[t, k]        = P(y_t = k)                         − [y_t = k]
    ∂NLL/∂start[k]       = P(y_0 = k)                         − [y_0 = k]
    ∂NLL/∂end[k]         = P(y_{n−1} = k)                     − [y_{n−1} = k]
    ∂NLL/∂trans[i, j]    = Σ_{1≤t<n} P(y_{t−1} = i, y_t = j)   − [y_{t−1} = i, y_t = j]

(because ∂ log Z / ∂θ is the expectation of ∂ score / ∂θ under the model).

Viterbi is the same forward recursion with ``max`` in place of ``logsumexp``
plus back-pointers; a :class:`minimner.constraints.Constraints` turns disallowed
start/end/transition entries and per-position tags into ``−inf`` scores for
constrained decoding (its builders, e.g. ``paper_constraints``, live in
:mod:`minimner.constraints`).

Dimension legend: B batch, T word-piece tokens (time steps), K tags.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import asnumpy, get_xp
from minimner.constraints import Constraints
from minimner.ops.softmax import logsumexp

__all__ = [
    "CRFCache",
    "crf_path_score", "crf_alphas", "crf_betas", "crf_log_partition",
    "crf_marginals", "crf_pairwise_marginals",
    "crf_nll_forward", "crf_nll_backward",
    "crf_viterbi", "paths_to_lists",
]


# --------------------------------------------------------------------------- helpers
def _logsumexp(x, axis):
    """``log Σ exp(x)`` along ``axis`` (removed): max-shifted, ``−inf``-safe (ops/softmax.py)."""
    return logsumexp(x, axis=axis)


def _shift(x):
    """Row maxima of ``x (B, K)`` used to re-centre the recursions -> (B,); 0 for an all ``−inf`` row."""
    xp = get_xp(x)
    m = x.max(axis=1)                                          # (B,)
    return xp.where(xp.isfinite(m), m, x.dtype.type(0))        # (B,) never shift by -inf


def _check(emissions, mask, start=None, end=None, trans=None, tags=None):
    """Shape/dtype validation shared by the public functions (no device sync)."""
    if getattr(emissions, "ndim", None) != 3:
        raise ValueError(f"emissions must be (B, T, K), got shape {getattr(emissions, 'shape', None)}")
    if emissions.dtype.kind != "f":
        raise ValueError(f"emissions must be floating point, got dtype {emissions.dtype}")
    B, T, K = emissions.shape
    if T < 1 or K < 1:
        raise ValueError(f"emissions must have T >= 1 and K >= 1, got shape {emissions.shape}")
    if tuple(mask.shape) != (B, T):
        raise ValueError(f"mask must be (B, T) = {(B, T)}, got {tuple(mask.shape)}")
    if mask.dtype.kind != "b":
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    if tags is not None:
        if tuple(tags.shape) != (B, T):
            raise ValueError(f"tags must be (B, T) = {(B, T)}, got {tuple(tags.shape)}")
        if tags.dtype.kind not in "iu":
            raise ValueError(f"tags must be integer, got dtype {tags.dtype}")
    for name, p, shape in (("start", start, (K,)), ("end", end, (K,)), ("trans", trans, (K, K))):
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for K = {K}, got {tuple(p.shape)}")
        if p is not None and p.dtype != emissions.dtype:
            raise ValueError(f"{name} dtype {p.dtype} differs from emissions dtype {emissions.dtype}")


def _lengths(mask):
    """n[b] = Σ_t mask[b, t], the length of each prefix mask. (B, T) bool -> (B,) int."""
    return mask.sum(axis=1)


# ------------------------------------------------------------------------ path score
def crf_path_score(emissions, tags, mask, start, end, trans):
    """Score of one given tag path per sequence (the numerator of the likelihood).

    ``score[b] = start[y_0] + Σ_{t<n} e[b, t, y_t] + Σ_{1≤t<n} trans[y_{t−1}, y_t] + end[y_{n−1}]``

    Parameters
    ----------
    emissions : (B, T, K) float
    tags : (B, T) int in [0, K); entries at padded positions are ignored.
    mask : (B, T) bool prefix mask, ``mask[:, 0]`` true.
    start, end : (K,) float        trans : (K, K) float, ``trans[i, j]`` scores i -> j.

    Returns
    -------
    score : (B,) float, dtype of ``emissions``.
    """
    _check(emissions, mask, start, end, trans, tags)
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    tags = xp.where(mask, tags, 0)                                  # (B, T) padding -> a valid index
    ar = xp.arange(B)                                               # (B,)
    # emitted[b, t] = e[b, t, y_t]: the emission score of the gold tag at each step
    emitted = xp.take_along_axis(emissions, tags[:, :, None], axis=2)[:, :, 0]   # (B, T, 1) -> (B, T)
    emitted = xp.where(mask, emitted, emissions.dtype.type(0))      # (B, T) padding contributes 0
    # moved[b, t-1] = trans[y_{t-1}, y_t], counted only where step t is real
    moved = trans[tags[:, :-1], tags[:, 1:]]                        # (B, T-1)
    moved = xp.where(mask[:, 1:], moved, emissions.dtype.type(0))   # (B, T-1)
    last = tags[ar, _lengths(mask) - 1]                             # (B,) tag at position n-1
    return start[tags[:, 0]] + emitted.sum(axis=1) + moved.sum(axis=1) + end[last]   # (B,)


# ----------------------------------------------------------------- forward recursion
def crf_alphas(emissions, mask, start, trans):
    """Forward algorithm in log space, re-centred at every step.

    The classic forward variable is ``alpha[b, t, k]``: the log of the summed
    exp-scores of all prefixes ``y_0 … y_t`` that end in tag k (including the
    emission at t, excluding ``end``)::

        alpha_0 = start + e_0
        alpha_t[j] = logsumexp_i(alpha_{t−1}[i] + trans[i, j]) + e_t[j]    (mask[t] true)
        alpha_t = alpha_{t−1}                                           (mask[t] false)

    Left alone, alpha grows like T·|e| and float32 keeps only a few correct
    digits of it. We therefore return it split into a centred part and the
    shift taken off at each step::

        alpha_hat[b, t, k] = alpha[b, t, k] − max_k alpha[b, t, :]      (max entry = 0)
        log_scale[b, t]    = max_k alpha[b, t] − max_k alpha[b, t−1]    (0 where masked)

    so ``alpha = alpha_hat + cumsum_t(log_scale)`` and the recursion runs on
    ``alpha_hat``, whose entries stay O(|e| + |trans|) for any T. (Centring with
    ``logsumexp_k`` instead of ``max_k`` would make ``exp(alpha_hat)`` the filtered
    distribution P(y_t = k | e_0 … e_t); the max is cheaper and just as stable.)

    Parameters
    ----------
    emissions : (B, T, K) float       mask : (B, T) bool prefix mask
    start : (K,) float                trans : (K, K) float

    Returns
    -------
    alpha_hat : (B, T, K) float       log_scale : (B, T) float
    """
    _check(emissions, mask, start, None, trans)
    alpha_hat, log_scale, _ = _alphas_and_messages(emissions, mask, start, trans)
    return alpha_hat, log_scale


def _alphas_and_messages(emissions, mask, start, trans):
    """:func:`crf_alphas` plus the messages ``msg`` (B, T, K) it computes on the way.

    ``msg[b, t, j] = logsumexp_i(alpha_hat[b, t−1, i] + trans[i, j])`` for t ≥ 1
    (``start`` at t = 0): everything that flows into tag j at step t before its
    emission is added. The backward pass reuses it to normalise the pairwise
    marginals with the very numbers the forward pass used (see :func:`_pairwise_from`).
    """
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    alpha_hat = xp.empty((B, T, K), dtype=emissions.dtype)     # (B, T, K)
    log_scale = xp.zeros((B, T), dtype=emissions.dtype)        # (B, T)
    msg = xp.empty((B, T, K), dtype=emissions.dtype)           # (B, T, K)
    msg[:, 0] = start
    a = start + emissions[:, 0]                                # (K,) + (B, K) -> (B, K)  alpha_0
    s = _shift(a)                                              # (B,)
    a = a - s[:, None]                                         # (B, K)  centred alpha_0
    alpha_hat[:, 0], log_scale[:, 0] = a, s
    for t in range(1, T):
        # scores[b, i, j]: all prefixes ending in i at t-1, then the move i -> j
        scores = a[:, :, None] + trans                         # (B, K, 1) + (K, K) -> (B, K, K)
        msg[:, t] = _logsumexp(scores, axis=1)                 # sum out i: (B, K, K) -> (B, K)
        nxt = msg[:, t] + emissions[:, t]                      # (B, K)
        s = _shift(nxt)                                        # (B,) this step's shift
        nxt = nxt - s[:, None]                                 # (B, K)
        on = mask[:, t]                                        # (B,) is step t real?
        a = xp.where(on[:, None], nxt, a)                      # (B, K) padded steps carry alpha
        alpha_hat[:, t] = a
        log_scale[:, t] = xp.where(on, s, emissions.dtype.type(0))   # (B,)
    return alpha_hat, log_scale, msg


def crf_log_partition(emissions, mask, start, end, trans):
    """``log Z[b]`` by the forward algorithm: ``Σ_t log_scale + logsumexp(alpha_hat_{T−1} + end)``.

    Since padded steps carry alpha, ``alpha_hat[:, T−1]`` is the centred alpha
    at each sequence's own last position ``n − 1``.

    Returns
    -------
    log_z : (B,) float, dtype of ``emissions``.
    """
    _check(emissions, mask, start, end, trans)
    alpha_hat, log_scale = crf_alphas(emissions, mask, start, trans)   # (B, T, K), (B, T)
    return log_scale.sum(axis=1) + _logsumexp(alpha_hat[:, -1] + end, axis=1)   # (B,)


# ---------------------------------------------------------------- backward recursion
def crf_betas(emissions, mask, end, trans):
    """Backward algorithm in log space, re-centred at every step.

    The classic backward variable ``beta[b, t, k]`` is the log of the summed
    exp-scores of all *suffixes* after position t (their transitions, emissions
    and ``end``), given ``y_t = k``::

        beta_{n−1} = end
        beta_t[i] = logsumexp_j(trans[i, j] + e_{t+1}[j] + beta_{t+1}[j])    (mask[t+1] true)
        beta_t = beta_{t+1}                                               (mask[t+1] false)

    (for t ≥ n − 1 it therefore equals ``end``). As for the alphas we return
    ``beta_hat = beta − max_k beta`` and the shifts, with
    ``beta = beta_hat + (reverse cumulative sum of log_scale)``; ``log_scale[b, T−1]``
    holds ``max(end)``. Either recursion gives log Z:
    ``log Z = Σ_t log_scale + logsumexp(start + e_0 + beta_hat_0)``.

    Parameters
    ----------
    emissions : (B, T, K) float       mask : (B, T) bool prefix mask
    end : (K,) float                  trans : (K, K) float

    Returns
    -------
    beta_hat : (B, T, K) float        log_scale : (B, T) float
    """
    _check(emissions, mask, None, end, trans)
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    beta_hat = xp.empty((B, T, K), dtype=emissions.dtype)      # (B, T, K)
    log_scale = xp.zeros((B, T), dtype=emissions.dtype)        # (B, T)
    s = _shift(end[None])                                      # (1,) shift of beta_{T-1} = end
    b = xp.broadcast_to(end - s, (B, K))                       # (K,) - (1,) -> (B, K)
    beta_hat[:, T - 1] = b
    log_scale[:, T - 1] = s
    trans_t = xp.ascontiguousarray(trans.T)                    # (K, K) trans_t[j, i] = trans[i, j]
    for t in range(T - 2, -1, -1):
        # scores[b, j, i]: move i -> j, emit e_{t+1}[j], then every suffix from j.
        # (Laid out [b, j, i] so the sum over j runs along axis 1, like the alphas:
        # NumPy reduces a middle axis of a small array much faster than the last.)
        scores = (emissions[:, t + 1] + b)[:, :, None] + trans_t   # (B, K, 1) + (K, K) -> (B, K, K)
        nxt = _logsumexp(scores, axis=1)                       # sum out j: (B, K, K) -> (B, K) over i
        s = _shift(nxt)                                        # (B,)
        nxt = nxt - s[:, None]                                 # (B, K)
        on = mask[:, t + 1]                                    # (B,) does a real step follow t?
        b = xp.where(on[:, None], nxt, b)                      # (B, K) carry through padding
        beta_hat[:, t] = b
        log_scale[:, t] = xp.where(on, s, emissions.dtype.type(0))   # (B,)
    return beta_hat, log_scale


# ------------------------------------------------------------------------- marginals
def _position_norm(alpha_hat, beta_hat):
    """``nrm[b, t] = logsumexp_k(alpha_hat[b, t] + beta_hat[b, t])`` -> (B, T).

    ``alpha_t + beta_t − log Z`` is the log marginal at t. The centring shifts
    are constant over k, so ``alpha_hat_t + beta_hat_t − nrm_t`` is the same
    number, obtained without ever forming the large alpha, beta or log Z.
    """
    return _logsumexp(alpha_hat + beta_hat, axis=2)            # (B, T, K) -> (B, T)


def _marginals_from(alpha_hat, beta_hat, nrm, mask):
    """P(y_t = k) = exp(alpha_hat_t + beta_hat_t − nrm_t); zero at padded steps. -> (B, T, K)."""
    xp = get_xp(alpha_hat)
    logp = alpha_hat + beta_hat - nrm[:, :, None]              # (B, T, K) log marginals
    return xp.where(mask[:, :, None], xp.exp(logp), alpha_hat.dtype.type(0))   # (B, T, K)


def _pairwise_from(emissions, mask, trans, alpha_hat, msg, beta_hat):
    """P(y_t = i, y_{t+1} = j) from the centred recursions; zero where step t+1 is padded.

    The classic formula is ``alpha_t[i] + trans[i, j] + e_{t+1}[j] + beta_{t+1}[j] − log Z``.
    With the centred variables the large shifts are constant over (i, j), so we
    may drop them and normalise over (i, j) instead::

        log xi[b, t, i, j] = alpha_hat[b, t, i] + trans[i, j] + right[b, t, j] − norm[b, t]
        right[b, t, j]     = e[b, t+1, j] + beta_hat[b, t+1, j]
        norm[b, t]         = logsumexp_{i, j}(alpha_hat[b, t, i] + trans[i, j] + right[b, t, j])
                           = logsumexp_j(msg[b, t+1, j] + right[b, t, j])

    The last line (the sum over i done first) is what makes this cheap: the
    forward pass already computed ``msg = logsumexp_i(alpha_hat + trans)``, so the
    normaliser costs a (B, T, K) logsumexp instead of one over (B, T, K, K).

    Returns (B, T−1, K, K).
    """
    xp = get_xp(emissions)
    neg = emissions.dtype.type(-float("inf"))
    right = emissions[:, 1:] + beta_hat[:, 1:]                         # (B, T-1, K)  indexed by j
    # centre `right` before adding msg: with |e| ~ 1e4, msg + right would round
    # at 1e-3 (the float32 spacing there) and the xi would no longer sum to one
    top = right.max(axis=2, keepdims=True)                             # (B, T-1, 1)
    right = right - xp.where(xp.isfinite(top), top, emissions.dtype.type(0))   # (B, T-1, K), max 0
    norm = _logsumexp(msg[:, 1:] + right, axis=2)                      # (B, T-1, K) -> (B, T-1)
    # fold the normaliser into the j-part; -inf at a padded t+1 makes xi 0 there
    right = xp.where(mask[:, 1:, None], right - norm[:, :, None], neg)  # (B, T-1, K)
    logxi = alpha_hat[:, :-1, :, None] + trans + right[:, :, None, :]  # (B,T-1,K,1)+(K,K)+(B,T-1,1,K) -> (B,T-1,K,K)
    return xp.exp(logxi)                                               # (B, T-1, K, K)


def crf_marginals(emissions, mask, start, end, trans):
    """Unary marginals ``P(y_t = k | e)`` by forward-backward; zeros at padded positions.

    These equal ``∂ log Z / ∂ e[b, t, k]``.

    Returns
    -------
    marginals : (B, T, K) float; each unmasked row sums to 1.
    """
    _check(emissions, mask, start, end, trans)
    alpha_hat, _ = crf_alphas(emissions, mask, start, trans)   # (B, T, K)
    beta_hat, _ = crf_betas(emissions, mask, end, trans)       # (B, T, K)
    return _marginals_from(alpha_hat, beta_hat, _position_norm(alpha_hat, beta_hat), mask)


def crf_pairwise_marginals(emissions, mask, start, end, trans):
    """Pairwise marginals ``xi[b, t, i, j] = P(y_t = i, y_{t+1} = j | e)``.

    Zero where step t+1 is padded. ``Σ_j xi[b, t, i, j]`` is the unary marginal at
    t and ``Σ_i`` the one at t+1. Summed over b and t they are ``∂ log Z / ∂ trans``.

    Returns
    -------
    xi : (B, T−1, K, K) float.
    """
    _check(emissions, mask, start, end, trans)
    alpha_hat, _, msg = _alphas_and_messages(emissions, mask, start, trans)   # (B, T, K), _, (B, T, K)
    beta_hat, _ = crf_betas(emissions, mask, end, trans)                      # (B, T, K)
    return _pairwise_from(emissions, mask, trans, alpha_hat, msg, beta_hat)


# ------------------------------------------------------------------- NLL and gradient
class CRFCache(NamedTuple):
    """What :func:`crf_nll_backward` needs. All stored by reference, none copied."""
    emissions: object   # (B, T, K) stored: input, needed for the betas and pairwise marginals
    tags: object        # (B, T) stored: the observed counts
    mask: object        # (B, T) stored
    trans: object       # (K, K) stored: needed for the betas and pairwise marginals
    end: object         # (K,) stored: the betas start from it
    alpha_hat: object   # (B, T, K) stored: computed by forward anyway, costs T steps to redo
    msg: object         # (B, T, K) stored: forward messages, normalise the pairwise marginals
    # beta_hat is *recomputed* in backward: forward (inference, evaluation loss)
    # never needs it, so it is only paid for when a gradient is asked for.


def crf_nll_forward(emissions, tags, mask, start, end, trans):
    """Per-sequence negative log-likelihood ``nll[b] = log Z[b] − score(y_b)``.

    Parameters
    ----------
    emissions : (B, T, K) float       tags : (B, T) int       mask : (B, T) bool prefix mask
    start, end : (K,) float           trans : (K, K) float

    Returns
    -------
    nll : (B,) float (``−llh``; pytorch-crf's ``reduction='none'`` negated)
    cache : CRFCache
    """
    _check(emissions, mask, start, end, trans, tags)
    alpha_hat, log_scale, msg = _alphas_and_messages(emissions, mask, start, trans)   # (B,T,K), (B,T), (B,T,K)
    log_z = log_scale.sum(axis=1) + _logsumexp(alpha_hat[:, -1] + end, axis=1)        # (B,)
    score = crf_path_score(emissions, tags, mask, start, end, trans)                   # (B,)
    return log_z - score, CRFCache(emissions, tags, mask, trans, end, alpha_hat, msg)


def crf_nll_backward(dnll, cache):
    """Gradient of ``Σ_b dnll[b] · nll[b]``: expected minus observed counts.

    Parameters
    ----------
    dnll : (B,) float, the upstream gradient of each sequence's NLL
        (``1/B`` everywhere for the batch mean).
    cache : CRFCache from :func:`crf_nll_forward`.

    Returns
    -------
    demissions : (B, T, K)     dstart : (K,)     dend : (K,)     dtrans : (K, K)
        in the dtype of the emissions; ``demissions`` is 0 at padded positions.
    """
    emissions, tags, mask, trans, end, alpha_hat, msg = cache
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    dtype = emissions.dtype
    if tuple(dnll.shape) != (B,):
        raise ValueError(f"dnll must be (B,) = {(B,)}, got {tuple(dnll.shape)}")
    dnll = dnll.astype(dtype, copy=False)
    beta_hat, _ = crf_betas(emissions, mask, end, trans)                     # (B, T, K) recomputed
    nrm = _position_norm(alpha_hat, beta_hat)                                # (B, T)
    marg = _marginals_from(alpha_hat, beta_hat, nrm, mask)                   # (B, T, K) expected unary counts
    # observed unary counts: onehot[b, t, k] = [y_t = k] at real steps, else 0
    onehot = ((tags[:, :, None] == xp.arange(K)) & mask[:, :, None]).astype(dtype)   # (B, T, K)
    w = dnll[:, None, None]                                                  # (B, 1, 1)
    # d log Z / d e = marginals and d score / d e = onehot
    demissions = (marg - onehot) * w                                         # (B, T, K)
    # start touches position 0 only
    dstart = demissions[:, 0].sum(axis=0)                                    # (B, K) -> (K,)
    # end touches each sequence's last real position n-1
    last = _lengths(mask) - 1                                                # (B,)
    dend = demissions[xp.arange(B), last].sum(axis=0)                        # (B, K) -> (K,)
    # trans: expected pair counts from the pairwise marginals minus observed pairs
    xi = _pairwise_from(emissions, mask, trans, alpha_hat, msg, beta_hat)   # (B, T-1, K, K)
    expected = (dnll @ xi.reshape(B, -1)).reshape(T - 1, K, K).sum(axis=0)   # (B,) @ (B, (T-1)KK) -> (K, K)
    prev = (onehot[:, :-1] * w).reshape(-1, K)                               # (B(T-1), K) weighted y_{t} one-hots
    nxt = onehot[:, 1:].reshape(-1, K)                                       # (B(T-1), K) y_{t+1}; 0 where padded
    observed = prev.T @ nxt                                                  # (K, B(T-1)) @ (B(T-1), K) -> (K, K)
    return demissions, dstart, dend, expected - observed


# ----------------------------------------------------------------------------- Viterbi
def crf_viterbi(emissions, mask, start, end, trans, allowed: Constraints | None = None):
    """Best tag path per sequence (Viterbi with back-pointers), optionally constrained.

    The forward recursion with ``max`` instead of ``logsumexp``::

        delta_0 = start + e_0
        delta_t[j] = max_i(delta_{t−1}[i] + trans[i, j]) + e_t[j],   psi_t[j] = argmax_i(...)
        best last tag = argmax_k(delta_{n−1}[k] + end[k]); then follow psi back.

    ``delta[b, k]`` is the score of the best prefix ending in tag k; ``psi[b, t, j]``
    is the tag at t−1 on that best prefix ending in j at t. The additions are
    done in pytorch-crf's order ``(delta + trans) + e`` so float32 results (and
    hence the paths) are identical to it.

    Parameters
    ----------
    emissions : (B, T, K) float       mask : (B, T) bool prefix mask
    start, end : (K,) float           trans : (K, K) float
    allowed : :class:`minimner.constraints.Constraints` or None. Its arrays must live on the
        emissions' backend.

    Returns
    -------
    paths : (B, T) int64, the best tags at real positions and 0 at padded ones.
    best_score : (B,) float, the score of each path (``−inf`` when no path is allowed).
    """
    _check(emissions, mask, start, end, trans)
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    if allowed is not None:
        start, end, trans, emissions = _apply_constraints(allowed, start, end, trans, emissions)
    psi = xp.zeros((B, T, K), dtype=xp.int64)                  # (B, T, K) back-pointers; psi[:, 0] unused
    delta = start + emissions[:, 0]                            # (K,) + (B, K) -> (B, K)
    for t in range(1, T):
        scores = delta[:, :, None] + trans + emissions[:, t, None, :]   # (B,K,1)+(K,K)+(B,1,K) -> (B,K,K)
        idx = scores.argmax(axis=1)                            # (B, K) best previous tag i for each j
        best = xp.take_along_axis(scores, idx[:, None, :], axis=1)[:, 0]  # (B, 1, K) -> (B, K)
        delta = xp.where(mask[:, t, None], best, delta)        # (B, K) padded steps carry delta
        psi[:, t] = idx
    final = delta + end                                        # (B, K)
    cur = final.argmax(axis=1)                                 # (B,) best last tag
    best_score = xp.take_along_axis(final, cur[:, None], axis=1)[:, 0]   # (B,)
    # Back-track, vectorised over the batch. Walking t from T-1 down, a sequence
    # starts writing at its own last position n-1 (before that, mask is False and
    # `cur` keeps the best last tag); at each real t we step to psi[b, t, cur].
    paths = xp.zeros((B, T), dtype=xp.int64)                   # (B, T)
    ar = xp.arange(B)                                          # (B,)
    for t in range(T - 1, -1, -1):
        on = mask[:, t]                                        # (B,)
        paths[:, t] = xp.where(on, cur, 0)
        if t > 0:
            cur = xp.where(on, psi[ar, t, cur], cur)           # (B,) tag at t-1 on the best path
    return paths, best_score


def _apply_constraints(allowed: Constraints, start, end, trans, emissions):
    """Replace disallowed scores by −inf (new arrays; the parameters are untouched)."""
    xp = get_xp(emissions)
    B, T, K = emissions.shape
    neg = emissions.dtype.type(-float("inf"))
    checks = (("transitions", allowed.transitions, (K, K)), ("start", allowed.start, (K,)),
              ("end", allowed.end, (K,)))
    for name, a, shape in checks:
        if a is not None and (tuple(a.shape) != shape or a.dtype.kind != "b"):
            raise ValueError(f"allowed.{name} must be a boolean array of shape {shape}, "
                             f"got {a.dtype} {tuple(a.shape)}")
    if allowed.transitions is not None:
        trans = xp.where(allowed.transitions, trans, neg)      # (K, K)
    if allowed.start is not None:
        start = xp.where(allowed.start, start, neg)            # (K,)
    if allowed.end is not None:
        end = xp.where(allowed.end, end, neg)                  # (K,)
    if allowed.tags is not None:
        tags = allowed.tags
        if tags.dtype.kind != "b" or tags.ndim > 3 or tuple(tags.shape[-1:]) != (K,):
            raise ValueError(f"allowed.tags must be boolean (K,), (T, K) or (B, T, K) with K = {K}, "
                             f"got {tags.dtype} {tuple(tags.shape)}")
        try:
            tags = xp.broadcast_to(tags, (B, T, K))            # (B, T, K)
        except ValueError:
            raise ValueError(f"allowed.tags of shape {tuple(allowed.tags.shape)} does not broadcast "
                             f"to (B, T, K) = {(B, T, K)}") from None
        emissions = xp.where(tags, emissions, neg)             # (B, T, K)
    return start, end, trans, emissions


def paths_to_lists(paths, mask) -> list[list[int]]:
    """API edge: (B, T) paths + prefix mask -> one Python list of length n_b per sequence.

    This is a device -> host transfer (it calls ``tolist``); use it only when
    handing results to Python code.
    """
    p = asnumpy(paths)                                         # (B, T) on host
    n = asnumpy(mask).sum(axis=1)                              # (B,)
    return [row[:k].tolist() for row, k in zip(p, n)]
