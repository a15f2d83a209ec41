"""Exact top-k cosine neighbours in a lexicon, their softmax weights and weighted sums (docs/augmentation.md §1).

For a lexicon word w with vector v_w, and the L2-normalised table û_j = v_j / ‖v_j‖:

    s_j   = û_w · û_j                       cosine similarity with every word j ≠ w
    u_1..u_k = the k words with the largest s_j (w itself excluded)
    α     = softmax(s_{u_1}, …, s_{u_k})    max-subtracted, temperature 1
    A[w]  = Σ_i α_i v_{u_i}                 the weighted sum of the *raw* vectors

which is what the original computed with gensim's ``most_similar`` (docs/augmentation.md §1).

**Search.** Exact (no approximate index). Queries are processed in chunks of Qc
rows so that the similarity block ``S = Û[q] Ûᵀ`` (Qc, V) stays under a memory
budget; each chunk is one matrix product on the backend (NumPy or CuPy), never a
Python loop over the vocabulary. Selecting the top k of each 400k-long row is
done in two exact stages, because a ``partition`` of every full row costs about
as much as the product itself, while block maxima are one cheap pass:

1. split each row's columns into nb blocks of ``block`` columns (block b holds
   columns b, b + nb, b + 2nb, …) and take the block maxima; let lb be the k-th
   largest block maximum and keep every block whose maximum is ≥ lb (k blocks
   unless maxima tie);
2. take the exact top k among the similarities of the kept blocks.

Stage 1 never loses a true neighbour: the k blocks with the largest maxima hold
k distinct elements ≥ lb, so the k-th largest element x_k is ≥ lb, and every
top-k element, being ≥ x_k ≥ lb, sits in a block whose maximum is ≥ lb.

**Ties** are broken deterministically: similarity descending, then lexicon
index ascending (the earlier word wins). :func:`topk_rows` implements this
exactly, without relying on the stability of a backend's sort. Note that float32
similarities of *different* vectors can differ from float64 ones by ~1e-7, so two
words whose true similarities are that close may swap against a float64 oracle.
Identical unit vectors (exact copies, or copies scaled by a power of two) get the
same float32 similarity from the same matrix product (checked by the tests on
NumPy's BLAS), so they tie exactly and the lower index wins.

**Zero vectors** normalise to zero (similarity 0 to everything) instead of NaN.

Dimension legend: V lexicon words, E vector size, Q query words, k neighbours
per word, Qc queries per chunk, N columns of a generic row set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minimner import backend
from minimner.backend import get_xp

__all__ = ["Neighbours", "CASE_POLICIES", "normalise_rows", "topk_rows", "topk_cosine", "softmax_weights",
           "weighted_sum", "find_neighbours", "resolve_words", "describe_neighbours"]

#: How a data word is looked up: ``exact`` (the paper: case-sensitive), ``lower``
#: (lower-case only) or ``auto`` (the word, then its lower-case form; right for
#: uncased lexicons such as GloVe, harmless for cased ones).
CASE_POLICIES = ("auto", "exact", "lower")

_DEFAULT_CHUNK_BYTES = 128 << 20   # budget for one (Qc, V) float32 similarity block
_DEFAULT_BLOCK = 128               # columns per block in the two-stage selection


@dataclass
class Neighbours:
    """The k nearest neighbours of Q lexicon words (host NumPy arrays).

    Attributes
    ----------
    query_ids : (Q,) int64, the lexicon rows that were queried
    ids : (Q, k) int64; ids[q, i] is the lexicon row of the (i+1)-th neighbour of query q
        (similarity descending, then index ascending)
    similarities : (Q, k) float32 cosine similarities, same order
    weights : (Q, k) float32, softmax of each row of ``similarities`` (rows sum to 1)
    vectors : (Q, E) float32; vectors[q] = Σ_i weights[q, i] · lexicon.vectors[ids[q, i]]
    """

    query_ids: np.ndarray
    ids: np.ndarray
    similarities: np.ndarray
    weights: np.ndarray
    vectors: np.ndarray

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def words(self, lexicon) -> list[list[str]]:
        """Neighbour words of every query, best first."""
        return [[lexicon.words[j] for j in row] for row in self.ids.tolist()]


# ----------------------------------------------------------------------------- building blocks
def normalise_rows(vectors):
    """Rows scaled to unit L2 norm; all-zero rows stay zero.

    Parameters
    ----------
    vectors : array (V, E), float

    Returns
    -------
    array (V, E), same dtype and backend
    """
    xp = get_xp(vectors)
    norms = xp.sqrt((vectors * vectors).sum(axis=1, keepdims=True))         # (V, E) -> (V, 1)
    safe = xp.where(norms > 0, norms, xp.ones_like(norms))                   # (V, 1), 1 where the row is 0
    return vectors / safe                                                    # (V, E) / (V, 1) -> (V, E)


def topk_rows(values, k: int):
    """Exact, tie-aware top k of every row: value descending, then column ascending.

    Parameters
    ----------
    values : array (n, N), float, no NaN; -inf allowed (it marks excluded entries)
    k : int, 1 ≤ k ≤ N

    Returns
    -------
    cols : (n, k) int64; cols[r, i] is the column of the (i+1)-th largest value of row r
    vals : (n, k), the values at ``cols`` (same dtype as ``values``)
    """
    xp = get_xp(values)
    n, N = values.shape
    if not 1 <= k <= N:
        raise ValueError(f"topk_rows: k must be in [1, {N}], got {k}")
    kth = xp.partition(values, N - k, axis=1)[:, N - k]                      # (n,) the k-th largest value
    above = values > kth[:, None]                                            # (n, N) surely in the top k
    at = values == kth[:, None]                                              # (n, N) tied with the k-th
    need = k - above.sum(axis=1)                                             # (n,) ≥ 1 ties still to take
    take = above | (at & (xp.cumsum(at, axis=1) <= need[:, None]))           # (n, N) exactly k per row;
    #                                                     among ties the lowest columns are taken first
    cols = xp.nonzero(take)[1].reshape(n, k)                                 # (n, k) ascending columns
    vals = xp.take_along_axis(values, cols, axis=1)                          # (n, k)
    # rank[r, i] = how many of the k entries go before entry i; a permutation of 0..k-1,
    # computed by comparison so no backend's sort stability is relied upon.
    vi, vj = vals[:, :, None], vals[:, None, :]                              # (n, k, 1), (n, 1, k)
    ahead = (vj > vi) | ((vj == vi) & (cols[:, None, :] < cols[:, :, None]))  # (n, k, k): j before i
    order = xp.argsort(ahead.sum(axis=2), axis=1)                            # (n, k) unique ranks -> order
    cols = xp.take_along_axis(cols, order, axis=1).astype(xp.int64)          # (n, k)
    return cols, xp.take_along_axis(vals, order, axis=1)                     # (n, k), (n, k)


def _chunk_rows(n_cols: int, chunk_bytes: int, itemsize: int = 4) -> int:
    return max(1, int(chunk_bytes) // (itemsize * max(1, n_cols)))


def topk_cosine(unit, query_ids, k: int, exclude_self: bool = True, chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
                block: int = _DEFAULT_BLOCK, progress: bool = False):
    """Exact top-k cosine neighbours of lexicon rows, chunked over the queries.

    Parameters
    ----------
    unit : array (V, E) float32, the L2-normalised table (:func:`normalise_rows`), on the backend
    query_ids : array (Q,) int, lexicon rows to query (same backend as ``unit``)
    k : int, neighbours per query; ``k ≤ V − 1`` when ``exclude_self``
    exclude_self : bool, leave each query's own row out (docs/augmentation.md §1)
    chunk_bytes : int, memory budget of one (Qc, V) similarity block
    block : int, columns per block in the two-stage selection (see module docstring)
    progress : bool, tqdm bar over the chunks

    Returns
    -------
    ids : (Q, k) int64 neighbour rows, similarity descending then index ascending
    sims : (Q, k) float32 cosine similarities
    """
    xp = get_xp(unit)
    V, E = unit.shape
    Q = int(query_ids.shape[0])
    limit = V - 1 if exclude_self else V
    if not 1 <= k <= limit:
        raise ValueError(f"k must be between 1 and {limit} for a lexicon of {V} words, got {k}")
    nb = math.ceil(V / block)
    blocked = nb >= k + 1                  # enough blocks that k of them always hold finite values
    Vp = nb * block if blocked else V
    unit_t = xp.zeros((E, Vp), dtype=unit.dtype)  # (E, Vp): the faster GEMM layout; zero columns pad
    unit_t[:, :V] = unit.T                         # the table to whole blocks (their scores are set to -inf)
    Qc = min(max(Q, 1), _chunk_rows(Vp, chunk_bytes))
    buf = xp.empty((Qc, Vp), dtype=unit.dtype)   # reused: a fresh block each chunk would page-fault
    ids = xp.empty((Q, k), dtype=xp.int64)                                   # (Q, k)
    sims = xp.empty((Q, k), dtype=unit.dtype)                                # (Q, k)
    from tqdm.auto import tqdm

    for start in tqdm(range(0, Q, Qc), desc="neighbours", unit="chunk", disable=not progress, leave=False):
        q = query_ids[start:start + Qc]                                      # (n,)
        n = int(q.shape[0])
        S = buf[:n]                                                          # (n, Vp)
        xp.matmul(unit[q], unit_t, out=S)                                    # (n, E) @ (E, Vp) -> (n, Vp)
        S[:, V:] = -xp.inf                                                   # padding rows never win
        rows = xp.arange(n)                                                  # (n,)
        if exclude_self:
            S[rows, q] = -xp.inf                                             # the word is not its own neighbour
        if blocked:
            Sb = S.reshape(n, block, nb)                                     # (n, Vp) -> (n, block, nb);
            #                                    Sb[r, t, b] = S[r, t·nb + b]: block b is the column set
            #                                    {b, b + nb, b + 2nb, …} (strided, so the max is SIMD-friendly)
            bmax = Sb.max(axis=1)                                            # (n, nb) best value per block
            lb = xp.partition(bmax, nb - k, axis=1)[:, nb - k:nb - k + 1]     # (n, 1) k-th best block max
            keep = bmax >= lb                                                # (n, nb) blocks that may hold a
            #                                    top-k element (every top-k element is >= lb, see above)
            C = int(keep.sum(axis=1).max())  # >= k; > k only when block maxima tie. It sets a shape,
            #                                  hence one host sync per chunk.
            if C == k:                       # the usual case: exactly k blocks in every row
                bsel = xp.nonzero(keep)[1].reshape(n, k)                     # (n, k) block ids
            else:                            # the C best blocks include every kept block of every row
                bsel, _ = topk_rows(bmax, C)                                 # (n, C)
            cand = Sb[rows[:, None], :, bsel].reshape(n, C * block)          # (n, C, block) -> (n, C·block)
            gidx = (bsel[:, :, None] + nb * xp.arange(block)[None, None, :]).reshape(n, C * block)  # (n, C·block)
            order = xp.argsort(gidx, axis=1)                                 # (n, C·block) by lexicon index, so
            #                                    topk_rows' column tie-break is the index tie-break
            gidx = xp.take_along_axis(gidx, order, axis=1)                   # (n, C·block) ascending
            cand = xp.take_along_axis(cand, order, axis=1)                   # (n, C·block)
            pos, val = topk_rows(cand, k)                                    # (n, k) positions in cand
            ids[start:start + n] = xp.take_along_axis(gidx, pos, axis=1)     # (n, k) lexicon rows
        else:
            pos, val = topk_rows(S[:, :V], k)                                # (n, k)
            ids[start:start + n] = pos
        sims[start:start + n] = val
    return ids, sims


def softmax_weights(sims):
    """``α = softmax(sims)`` over the last axis, max-subtracted (docs/augmentation.md §1: temperature 1).

    Parameters
    ----------
    sims : array (Q, k) float

    Returns
    -------
    array (Q, k), same dtype; rows sum to 1
    """
    xp = get_xp(sims)
    z = sims - sims.max(axis=-1, keepdims=True)                              # (Q, k), max entry 0
    e = xp.exp(z)                                                            # (Q, k) in (0, 1]
    return e / e.sum(axis=-1, keepdims=True)                                 # (Q, k) / (Q, 1) -> (Q, k)


def weighted_sum(vectors, ids, weights):
    """``out[q] = Σ_i weights[q, i] · vectors[ids[q, i]]`` (raw, un-normalised vectors).

    Parameters
    ----------
    vectors : array (V, E) float
    ids : array (Q, k) int
    weights : array (Q, k) float

    Returns
    -------
    array (Q, E), dtype of ``vectors``
    """
    xp = get_xp(vectors)
    return xp.einsum("qk,qke->qe", weights, vectors[ids])                    # (Q, k) · (Q, k, E) -> (Q, E)


# ----------------------------------------------------------------------------- public API
def find_neighbours(lexicon, query_ids, k: int = 4, backend_name: str | None = None,
                    chunk_bytes: int = _DEFAULT_CHUNK_BYTES, block: int = _DEFAULT_BLOCK,
                    progress: bool = False) -> Neighbours:
    """Top-k neighbours, softmax weights and weighted sums for lexicon rows ``query_ids``.

    The table is moved to ``backend_name`` (default: the current backend),
    normalised there and searched with :func:`topk_cosine`; results come back as
    host NumPy arrays.

    Parameters
    ----------
    lexicon : :class:`minimner.lexicon.io.Lexicon` (V words, vectors (V, E))
    query_ids : sequence or array (Q,) of int, rows of the lexicon
    k : int, neighbours per word (the paper: 4)
    backend_name : ``'numpy'``, ``'cupy'`` or None
    chunk_bytes, block, progress : see :func:`topk_cosine`

    Returns
    -------
    Neighbours

    Raises
    ------
    ValueError
        for a query id outside [0, V) or an impossible k.
    """
    qids = np.asarray(query_ids, dtype=np.int64).reshape(-1)                # (Q,)
    V = len(lexicon)
    if qids.size and (qids.min() < 0 or qids.max() >= V):
        raise ValueError(f"query ids must lie in [0, {V}); got min {qids.min()}, max {qids.max()}")
    raw = backend.asarray(lexicon.vectors, backend=backend_name)             # (V, E) float32 on the backend
    unit = normalise_rows(raw)                                               # (V, E)
    q_dev = backend.asarray(qids, backend=backend_name)                      # (Q,)
    ids, sims = topk_cosine(unit, q_dev, k, chunk_bytes=chunk_bytes, block=block, progress=progress)
    weights = softmax_weights(sims)                                          # (Q, k)
    vecs = weighted_sum(raw, ids, weights)                                   # (Q, E)
    return Neighbours(query_ids=qids, ids=backend.asnumpy(ids), similarities=backend.asnumpy(sims),
                      weights=backend.asnumpy(weights), vectors=backend.asnumpy(vecs))


def resolve_words(lexicon, words: Sequence[str], case: str = "auto"):
    """Map data words to lexicon rows under a case policy (see :data:`CASE_POLICIES`).

    Parameters
    ----------
    lexicon : Lexicon
    words : sequence of str, length N
    case : ``auto`` (the word, then ``word.lower()``), ``exact`` or ``lower``

    Returns
    -------
    ids : (N,) int64, the lexicon row, or -1 when the word is not found
    forms : list of str or None, the form that matched (None when not found)
    """
    if case not in CASE_POLICIES:
        raise ValueError(f"unknown case policy {case!r}; expected one of {', '.join(CASE_POLICIES)}")
    index = lexicon.index
    ids = np.full(len(words), -1, dtype=np.int64)                            # (N,)
    forms: list[str | None] = []
    for i, w in enumerate(words):
        tries = (w,) if case == "exact" else (w.lower(),) if case == "lower" else (w, w.lower())
        form = next((t for t in tries if t in index), None)
        if form is not None:
            ids[i] = index[form]
        forms.append(form)
    return ids, forms


def describe_neighbours(lexicon, words: Sequence[str], k: int = 4, case: str = "auto",
                        backend_name: str | None = None) -> dict:
    """Inspection: each word's k neighbours with similarities and softmax weights.

    Parameters
    ----------
    lexicon : Lexicon
    words : sequence of str
    k : int
    case : see :func:`resolve_words`

    Returns
    -------
    dict ``{word: {"matched": form or None, "neighbours": [{"word", "similarity", "weight"}, ...]}}``
    in the order given; a word not in the lexicon has ``matched`` None and no neighbours.
    """
    ids, forms = resolve_words(lexicon, list(words), case)
    found = np.flatnonzero(ids >= 0)                                         # (Qf,)
    res = find_neighbours(lexicon, ids[found], k, backend_name=backend_name) if found.size else None
    out: dict = {}
    row_of = {int(i): r for r, i in enumerate(found)}
    for i, (w, form) in enumerate(zip(words, forms)):
        if form is None:
            out[w] = {"matched": None, "neighbours": []}
            continue
        r = row_of[i]
        out[w] = {"matched": form, "neighbours": [
            {"word": lexicon.words[int(j)], "similarity": float(s), "weight": float(a)}
            for j, s, a in zip(res.ids[r], res.similarities[r], res.weights[r])]}
    return out
