"""Tests of the pure CRF functions in minimner/crf.py.

* brute-force oracles that enumerate all K^n paths with an independent,
  loop-based path score (float64, tolerance 1e-6);
* central-difference gradient checks of the NLL (float64, random upstream);
* hypothesis property tests on tiny shapes;
* float32 stability for long sequences and large emissions;
* constrained Viterbi (the constraint builders are tested in tests/test_constraints.py).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner import crf as C
from minimner.constraints import Constraints
from minimner.gradcheck import check_grads, numerical_grad

TOL = 1e-6


# ----------------------------------------------------------------------- helpers
def random_problem(rng, B, T, K, lengths=None, dtype=np.float64, scale=1.0):
    e = (rng.standard_normal((B, T, K)) * scale).astype(dtype)
    start = rng.uniform(-1, 1, K).astype(dtype)
    end = rng.uniform(-1, 1, K).astype(dtype)
    trans = rng.uniform(-1, 1, (K, K)).astype(dtype)
    if lengths is None:
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T                # one full row
        if B > 1:
            lengths[-1] = 1           # and one of length 1
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    tags = rng.integers(0, K, (B, T))
    return e, tags, mask, start, end, trans


def loop_score(e, y, start, end, trans):
    """Independent path score: plain Python loop over one sequence of length len(y)."""
    s = start[y[0]] + e[0, y[0]]
    for t in range(1, len(y)):
        s += trans[y[t - 1], y[t]] + e[t, y[t]]
    return s + end[y[-1]]


def enumerate_paths(e, n, start, end, trans, allowed=None):
    """All K^n paths of one sequence (e: (T, K)) with their scores; skip disallowed ones."""
    K = e.shape[1]
    out = []
    for y in itertools.product(range(K), repeat=n):
        if allowed is not None and not path_allowed(y, allowed):
            continue
        out.append((y, loop_score(e, y, start, end, trans)))
    return out


def path_allowed(y, allowed, b=None):
    tr, s, en, tags = allowed.transitions, allowed.start, allowed.end, allowed.tags
    if s is not None and not s[y[0]]:
        return False
    if en is not None and not en[y[-1]]:
        return False
    if tr is not None and any(not tr[y[t - 1], y[t]] for t in range(1, len(y))):
        return False
    if tags is not None and any(not tags[t, k] for t, k in enumerate(y)):
        return False
    return True


def lse(v):
    v = np.asarray(v, dtype=np.float64)
    m = v.max()
    return m + np.log(np.exp(v - m).sum())


CASES = [(B, T, K, seed) for seed, (B, T, K) in enumerate(
    [(3, 1, 1), (3, 1, 4), (4, 5, 1), (4, 5, 2), (4, 4, 3), (4, 5, 3), (3, 5, 4), (2, 3, 4)])]


# ------------------------------------------------------------------- brute force
@pytest.mark.parametrize("B,T,K,seed", CASES)
def test_brute_force_log_z_score_llh_marginals(B, T, K, seed):
    rng = np.random.default_rng(seed)
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K)
    log_z = C.crf_log_partition(e, mask, start, end, trans)
    score = C.crf_path_score(e, tags, mask, start, end, trans)
    nll, _ = C.crf_nll_forward(e, tags, mask, start, end, trans)
    marg = C.crf_marginals(e, mask, start, end, trans)
    xi = C.crf_pairwise_marginals(e, mask, start, end, trans)
    assert log_z.shape == score.shape == nll.shape == (B,)
    assert marg.shape == (B, T, K) and xi.shape == (B, max(T - 1, 0), K, K)
    for b in range(B):
        n = int(mask[b].sum())
        paths = enumerate_paths(e[b], n, start, end, trans)
        scores = np.array([s for _, s in paths])
        bz = lse(scores)
        assert abs(log_z[b] - bz) <= TOL * max(1.0, abs(bz))
        bs = loop_score(e[b], tags[b, :n], start, end, trans)
        assert abs(score[b] - bs) <= TOL * max(1.0, abs(bs))
        assert abs(-nll[b] - (bs - bz)) <= TOL * max(1.0, abs(bs - bz))
        p = np.exp(scores - bz)                                     # probability of each path
        bm = np.zeros((T, K))
        bxi = np.zeros((max(T - 1, 0), K, K))
        for (y, _), py in zip(paths, p):
            for t in range(n):
                bm[t, y[t]] += py
            for t in range(n - 1):
                bxi[t, y[t], y[t + 1]] += py
        np.testing.assert_allclose(marg[b], bm, atol=TOL, rtol=0)
        np.testing.assert_allclose(xi[b], bxi, atol=TOL, rtol=0)


@pytest.mark.parametrize("B,T,K,seed", CASES)
def test_marginals_equal_numerical_gradient_of_log_z(B, T, K, seed):
    rng = np.random.default_rng(100 + seed)
    e, _, mask, start, end, trans = random_problem(rng, B, T, K)
    marg = C.crf_marginals(e, mask, start, end, trans)
    # each e[b] only moves log Z[b], so d(Σ_b log Z[b]) / d e = the marginals
    num = numerical_grad(lambda: C.crf_log_partition(e, mask, start, end, trans).sum(), e)
    np.testing.assert_allclose(marg, num, atol=TOL, rtol=0)
    assert np.all(marg[~mask] == 0)


@pytest.mark.parametrize("B,T,K,seed", CASES)
def test_brute_force_viterbi(B, T, K, seed):
    rng = np.random.default_rng(200 + seed)
    e, _, mask, start, end, trans = random_problem(rng, B, T, K)
    paths, best = C.crf_viterbi(e, mask, start, end, trans)
    assert paths.shape == (B, T) and best.shape == (B,)
    lists = C.paths_to_lists(paths, mask)
    for b in range(B):
        n = int(mask[b].sum())
        y, s = max(enumerate_paths(e[b], n, start, end, trans), key=lambda ys: ys[1])
        assert tuple(lists[b]) == y
        assert abs(best[b] - s) <= TOL * max(1.0, abs(s))
        assert np.all(paths[b, n:] == 0)


@pytest.mark.parametrize("B,T,K,seed", CASES)
@pytest.mark.parametrize("kinds", ["transitions", "start_end", "tags", "all"])
def test_brute_force_constrained_viterbi(B, T, K, seed, kinds):
    rng = np.random.default_rng(300 + seed)
    e, _, mask, start, end, trans = random_problem(rng, B, T, K)
    fields = {}
    if kinds in ("transitions", "all"):
        fields["transitions"] = rng.random((K, K)) < 0.7
    if kinds in ("start_end", "all"):
        fields["start"] = rng.random(K) < 0.6
        fields["end"] = rng.random(K) < 0.6
    if kinds in ("tags", "all"):
        fields["tags"] = rng.random((B, T, K)) < 0.7
    allowed = Constraints(**fields)
    paths, best = C.crf_viterbi(e, mask, start, end, trans, allowed=allowed)
    lists = C.paths_to_lists(paths, mask)
    for b in range(B):
        n = int(mask[b].sum())
        per_b = allowed._replace(tags=None if allowed.tags is None else allowed.tags[b])
        cands = enumerate_paths(e[b], n, start, end, trans, allowed=per_b)
        if not cands:
            assert np.isneginf(best[b])
            continue
        y, s = max(cands, key=lambda ys: ys[1])
        assert tuple(lists[b]) == y
        assert abs(best[b] - s) <= TOL * max(1.0, abs(s))


def test_constrained_viterbi_tags_broadcast_from_k_and_tk(rng):
    e, _, mask, start, end, trans = random_problem(rng, 3, 4, 3)
    tk = rng.random((4, 3)) < 0.8
    tk[:, 0] = True
    p1, s1 = C.crf_viterbi(e, mask, start, end, trans, Constraints(tags=tk))
    p2, s2 = C.crf_viterbi(e, mask, start, end, trans, Constraints(tags=np.broadcast_to(tk, (3, 4, 3))))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)
    k_only = np.array([True, False, True])
    p3, _ = C.crf_viterbi(e, mask, start, end, trans, Constraints(tags=k_only))
    assert not np.any(p3[mask] == 1)
    with pytest.raises(ValueError, match="allowed.tags"):
        C.crf_viterbi(e, mask, start, end, trans, Constraints(tags=np.ones((5, 3), bool)))
    with pytest.raises(ValueError, match="allowed.transitions"):
        C.crf_viterbi(e, mask, start, end, trans, Constraints(transitions=np.ones((3, 3))))


# -------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("B,T,K,full", [(3, 5, 4, False), (2, 4, 3, True), (3, 1, 3, False)])
def test_gradcheck_nll_all_inputs(rng, B, T, K, full):
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K, lengths=[T] * B if full else None)
    dnll = rng.standard_normal(B)                                   # random upstream, never ones
    _, cache = C.crf_nll_forward(e, tags, mask, start, end, trans)
    de, dstart, dend, dtrans = C.crf_nll_backward(dnll, cache)

    def loss():
        return float((C.crf_nll_forward(e, tags, mask, start, end, trans)[0] * dnll).sum())

    errs = check_grads(loss, {"emissions": e, "start": start, "end": end, "trans": trans},
                       {"emissions": de, "start": dstart, "end": dend, "trans": dtrans}, tol=TOL)
    assert max(errs.values()) <= TOL
    assert np.all(de[~mask] == 0)


def test_gradcheck_mean_nll(rng):
    B, T, K = 4, 5, 3
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K)
    _, cache = C.crf_nll_forward(e, tags, mask, start, end, trans)
    grads = C.crf_nll_backward(np.full(B, 1.0 / B), cache)

    def loss():
        return float(C.crf_nll_forward(e, tags, mask, start, end, trans)[0].mean())

    errs = check_grads(loss, {"e": e, "s": start, "n": end, "t": trans}, dict(zip("esnt", grads)), tol=TOL)
    assert max(errs.values()) <= TOL


# ----------------------------------------------------------- property tests
problem = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**31 - 1))


@settings(max_examples=25, deadline=None)
@given(problem)
def test_marginals_sum_to_one_and_pairwise_consistent(p):
    B, T, K, seed = p
    e, _, mask, start, end, trans = random_problem(np.random.default_rng(seed), B, T, K, scale=3.0)
    marg = C.crf_marginals(e, mask, start, end, trans)
    np.testing.assert_allclose(marg.sum(-1)[mask], 1.0, atol=1e-12)
    assert np.all(marg[~mask] == 0) and np.all(marg >= 0)
    xi = C.crf_pairwise_marginals(e, mask, start, end, trans)
    on = mask[:, 1:]
    np.testing.assert_allclose(xi.sum(-1)[on], marg[:, :-1][on], atol=1e-10)   # Σ_j -> marginal at t
    np.testing.assert_allclose(xi.sum(-2)[on], marg[:, 1:][on], atol=1e-10)    # Σ_i -> marginal at t+1
    assert np.all(xi[~on] == 0)


@settings(max_examples=25, deadline=None)
@given(problem)
def test_log_z_bounds_every_path_and_viterbi(p):
    B, T, K, seed = p
    rng = np.random.default_rng(seed)
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K, scale=3.0)
    log_z = C.crf_log_partition(e, mask, start, end, trans)
    paths, best = C.crf_viterbi(e, mask, start, end, trans)
    for _ in range(5):
        y = rng.integers(0, K, (B, T))
        s = C.crf_path_score(e, y, mask, start, end, trans)
        assert np.all(log_z >= s - 1e-12)
        assert np.all(best >= s - 1e-12)
    assert np.all(log_z >= best - 1e-12)
    # Viterbi's score is the score of the path it returns
    np.testing.assert_allclose(C.crf_path_score(e, paths, mask, start, end, trans), best, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(problem, st.integers(1, 3))
def test_padding_never_changes_results(p, extra):
    B, T, K, seed = p
    rng = np.random.default_rng(seed)
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K)
    # same problem with `extra` more padded steps and garbage (huge) values there,
    # plus garbage in the already-padded positions
    T2 = T + extra
    e2 = rng.standard_normal((B, T2, K)) * 1e4
    e2[:, :T][mask] = e[mask]
    tags2 = rng.integers(0, K, (B, T2))
    tags2[:, :T][mask] = tags[mask]
    mask2 = np.zeros((B, T2), bool)
    mask2[:, :T] = mask
    args1, args2 = (e, mask, start, end, trans), (e2, mask2, start, end, trans)
    np.testing.assert_allclose(C.crf_log_partition(*args2), C.crf_log_partition(*args1), rtol=1e-12, atol=1e-12)
    m1, m2 = C.crf_marginals(*args1), C.crf_marginals(*args2)
    np.testing.assert_allclose(m2[:, :T], m1, atol=1e-12)
    assert np.all(m2[:, T:] == 0)
    assert C.paths_to_lists(C.crf_viterbi(*args2)[0], mask2) == C.paths_to_lists(C.crf_viterbi(*args1)[0], mask)
    n1, c1 = C.crf_nll_forward(e, tags, mask, start, end, trans)
    n2, c2 = C.crf_nll_forward(e2, tags2, mask2, start, end, trans)
    np.testing.assert_allclose(n2, n1, rtol=1e-12, atol=1e-12)
    d = rng.standard_normal(B)
    g1, g2 = C.crf_nll_backward(d, c1), C.crf_nll_backward(d, c2)
    np.testing.assert_allclose(g2[0][:, :T], g1[0], atol=1e-12)
    assert np.all(g2[0][:, T:] == 0)
    for a, b in zip(g1[1:], g2[1:]):
        np.testing.assert_allclose(b, a, atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(problem)
def test_batch_equals_per_example(p):
    B, T, K, seed = p
    rng = np.random.default_rng(seed)
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K)
    log_z = C.crf_log_partition(e, mask, start, end, trans)
    marg = C.crf_marginals(e, mask, start, end, trans)
    paths = C.paths_to_lists(C.crf_viterbi(e, mask, start, end, trans)[0], mask)
    nll, cache = C.crf_nll_forward(e, tags, mask, start, end, trans)
    d = rng.standard_normal(B)
    de, ds, dn, dt = C.crf_nll_backward(d, cache)
    sums = [np.zeros_like(ds), np.zeros_like(dn), np.zeros_like(dt)]
    for b in range(B):
        n = int(mask[b].sum())
        one = (e[b:b + 1, :n], np.ones((1, n), bool), start, end, trans)   # cut, not padded
        np.testing.assert_allclose(C.crf_log_partition(*one), log_z[b:b + 1], rtol=1e-12)
        np.testing.assert_allclose(C.crf_marginals(*one)[0], marg[b, :n], atol=1e-12)
        assert C.paths_to_lists(C.crf_viterbi(*one)[0], one[1]) == [paths[b]]
        nb, cb = C.crf_nll_forward(e[b:b + 1, :n], tags[b:b + 1, :n], one[1], start, end, trans)
        np.testing.assert_allclose(nb, nll[b:b + 1], rtol=1e-12)
        gb = C.crf_nll_backward(d[b:b + 1], cb)
        np.testing.assert_allclose(gb[0][0], de[b, :n], atol=1e-12)
        for acc, g in zip(sums, gb[1:]):
            acc += g
    for acc, g in zip(sums, (ds, dn, dt)):
        np.testing.assert_allclose(acc, g, atol=1e-11)


def test_alphas_betas_match_their_classic_definitions(rng):
    """alpha = alpha_hat + cumsum(log_scale); beta likewise from the right; both give log Z."""
    B, T, K = 3, 5, 3
    e, _, mask, start, end, trans = random_problem(rng, B, T, K)
    ah, sa = C.crf_alphas(e, mask, start, trans)
    bh, sb = C.crf_betas(e, mask, end, trans)
    alpha = ah + np.cumsum(sa, axis=1)[:, :, None]
    beta = bh + np.cumsum(sb[:, ::-1], axis=1)[:, ::-1][:, :, None]
    for b in range(B):
        n = int(mask[b].sum())
        for t in range(n):
            # classic alpha_t[k]: all prefixes y_0..y_t ending in k (no end score)
            for k in range(K):
                pre = [loop_score(e[b], y + (k,), start, np.zeros(K), trans)
                       for y in itertools.product(range(K), repeat=t)]
                assert abs(alpha[b, t, k] - lse(pre)) < 1e-10
                suf = [loop_score(e[b, t:], (k,) + y, np.zeros(K), end, trans) - e[b, t, k]
                       for y in itertools.product(range(K), repeat=n - 1 - t)]
                assert abs(beta[b, t, k] - lse(suf)) < 1e-10
    log_z = C.crf_log_partition(e, mask, start, end, trans)
    from_betas = sb.sum(1) + np.log(np.exp(start + e[:, 0] + bh[:, 0]).sum(1))
    np.testing.assert_allclose(from_betas, log_z, rtol=1e-12)


# ------------------------------------------------------- dtype, backends, stability
def test_float32_in_float32_out(xp, rng):
    e, tags, mask, start, end, trans = random_problem(rng, 3, 6, 4, dtype=np.float32)
    e, tags, mask, start, end, trans = (backend.asarray(a) for a in (e, tags, mask, start, end, trans))
    assert C.crf_log_partition(e, mask, start, end, trans).dtype == np.float32
    assert C.crf_path_score(e, tags, mask, start, end, trans).dtype == np.float32
    assert C.crf_marginals(e, mask, start, end, trans).dtype == np.float32
    assert C.crf_pairwise_marginals(e, mask, start, end, trans).dtype == np.float32
    nll, cache = C.crf_nll_forward(e, tags, mask, start, end, trans)
    assert nll.dtype == np.float32
    for g in C.crf_nll_backward(xp.full(3, 1 / 3, dtype=xp.float32), cache):
        assert g.dtype == np.float32 and backend.get_xp(g) is xp
    paths, best = C.crf_viterbi(e, mask, start, end, trans)
    assert best.dtype == np.float32 and backend.get_xp(paths) is xp


def test_backends_agree(xp, rng):
    """Same numbers on NumPy and CuPy (the cupy run skips without a GPU)."""
    host = random_problem(rng, 3, 7, 5, dtype=np.float32)
    dev = [backend.asarray(a) for a in host]
    e, tags, mask, start, end, trans = dev
    for f in (C.crf_log_partition, C.crf_marginals):
        np.testing.assert_allclose(backend.asnumpy(f(e, mask, start, end, trans)),
                                   f(host[0], host[2], *host[3:]), rtol=1e-5, atol=1e-6)
    assert C.paths_to_lists(C.crf_viterbi(e, mask, start, end, trans)[0], mask) == \
        C.paths_to_lists(C.crf_viterbi(host[0], host[2], *host[3:])[0], host[2])


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4])
def test_float32_stable_long_sequences_large_emissions(rng, scale):
    B, T, K = 2, 512, 13
    e, tags, mask, start, end, trans = random_problem(rng, B, T, K, lengths=[T, 300], scale=scale)
    args = (e, tags, mask, start, end, trans)
    f32 = [a.astype(np.float32) if a.dtype == np.float64 else a for a in args]
    f64 = [a.astype(np.float32).astype(np.float64) if a.dtype == np.float64 else a for a in args]  # same values
    z32 = C.crf_log_partition(f32[0], f32[2], *f32[3:])
    z64 = C.crf_log_partition(f64[0], f64[2], *f64[3:])
    assert np.all(np.isfinite(z32))
    assert np.all(np.abs(z32 - z64) <= 1e-6 * np.abs(z64))          # measured <= 1.2e-7 relative
    m32 = C.crf_marginals(f32[0], f32[2], *f32[3:])
    m64 = C.crf_marginals(f64[0], f64[2], *f64[3:])
    assert np.all(np.isfinite(m32))
    np.testing.assert_allclose(m32.sum(-1)[f32[2]], 1.0, atol=1e-5)
    # marginals are local quantities: their error must not grow with T or |e|;
    # near-ties between big emissions amplify the float32 rounding of e itself
    assert np.abs(m32 - m64).max() <= (1e-5 if scale == 1.0 else 2e-4)
    nll, cache = C.crf_nll_forward(*f32)
    grads = C.crf_nll_backward(np.full(B, 0.5, np.float32), cache)
    nll64, cache64 = C.crf_nll_forward(*f64)
    grads64 = C.crf_nll_backward(np.full(B, 0.5), cache64)
    assert np.all(np.abs(nll - nll64) <= 1e-6 * (np.abs(z64) + np.abs(nll64)))
    for g, g64 in zip(grads, grads64):       # gradients are O(1) here; measured errors are <= 2e-5
        assert g.dtype == np.float32 and np.abs(g - g64).max() <= 1e-4
    p32, _ = C.crf_viterbi(f32[0], f32[2], *f32[3:])
    p64, _ = C.crf_viterbi(f64[0], f64[2], *f64[3:])
    assert np.mean(p32 == p64) > 0.99


def test_shape_errors_name_the_problem(rng):
    e, tags, mask, start, end, trans = random_problem(rng, 2, 3, 4)
    with pytest.raises(ValueError, match=r"emissions must be \(B, T, K\)"):
        C.crf_log_partition(e[0], mask, start, end, trans)
    with pytest.raises(ValueError, match="mask must be"):
        C.crf_log_partition(e, mask[:, :2], start, end, trans)
    with pytest.raises(ValueError, match="mask must be boolean"):
        C.crf_log_partition(e, mask.astype(np.int64), start, end, trans)
    with pytest.raises(ValueError, match=r"trans must have shape \(4, 4\)"):
        C.crf_log_partition(e, mask, start, end, trans[:3])
    with pytest.raises(ValueError, match="tags must be"):
        C.crf_path_score(e, tags[:, :2], mask, start, end, trans)
    with pytest.raises(ValueError, match="dtype"):
        C.crf_log_partition(e, mask, start.astype(np.float32), end, trans)
