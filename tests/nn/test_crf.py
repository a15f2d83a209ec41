"""Tests of the CRF module (minimner/nn/crf.py): API, validation, gradient check,
parity with pytorch-crf 0.7.2, and constrained decoding."""
from __future__ import annotations

import numpy as np
import pytest

from minimner import backend
from minimner import crf as C
from minimner.constraints import PAPER_MAIN_TAGS, paper_constraints
from minimner.gradcheck import check_module
from minimner.nn.crf import CRF, Constraints


def problem(rng, B, T, K, dtype=np.float32, scale=1.0, lengths=None):
    e = (rng.standard_normal((B, T, K)) * scale).astype(dtype)
    if lengths is None:
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
        if B > 1:
            lengths[-1] = 1
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    tags = rng.integers(0, K, (B, T))
    return e, tags, mask


def assert_close(name, ours, ref, tol):
    """Scale-aware closeness: max |a − b| ≤ tol · max(1, max |b|); reports the worst index."""
    a = backend.asnumpy(ours).astype(np.float64)
    b = np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    diff = np.abs(a - b)
    bound = tol * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    if diff.size and diff.max() > bound:
        idx = np.unravel_index(np.argmax(diff), diff.shape)
        raise AssertionError(f"{name}: max abs diff {diff.max():.3e} > {bound:.1e} at index {idx} "
                             f"(ours {a[idx]!r}, reference {b[idx]!r})")


# ---------------------------------------------------------------------- module API
def test_parameters_named_and_initialised_like_pytorch_crf():
    crf = CRF(7, rng=0)
    names = [n for n, _ in crf.named_parameters()]
    assert names == ["start_transitions", "end_transitions", "transitions"]
    assert [p.shape for p in crf.parameters()] == [(7,), (7,), (7, 7)]
    for p in crf.parameters():
        assert p.dtype == np.float32
        assert np.all(np.abs(p.data) <= 0.1) and p.data.std() > 0.01
        assert np.all(p.grad == 0)
    assert repr(crf) == "CRF(num_tags=7)"
    assert list(crf.state_dict()) == names
    np.testing.assert_array_equal(CRF(7, rng=0).transitions.data, crf.transitions.data)
    with pytest.raises(ValueError, match="invalid number of tags"):
        CRF(0)


def test_methods_agree_with_pure_functions(rng):
    crf = CRF(4, rng=rng)
    e, tags, mask = problem(rng, 3, 5, 4)
    s, n, t = crf.start_transitions.data, crf.end_transitions.data, crf.transitions.data
    np.testing.assert_array_equal(crf.log_partition(e, mask), C.crf_log_partition(e, mask, s, n, t))
    np.testing.assert_array_equal(crf.marginals(e, mask), C.crf_marginals(e, mask, s, n, t))
    llh = crf.log_likelihood(e, tags, mask)
    assert llh.shape == (3,) and llh.dtype == np.float32
    np.testing.assert_allclose(-llh.mean(), crf.forward(e, tags, mask), rtol=1e-6)
    crf.backward()
    assert crf.decode(e, mask) == C.paths_to_lists(C.crf_viterbi(e, mask, s, n, t)[0], mask)
    # mask=None means all on, integer masks are accepted like pytorch-crf's uint8
    full = np.ones((3, 5), bool)
    np.testing.assert_array_equal(crf.log_partition(e), crf.log_partition(e, full))
    np.testing.assert_array_equal(crf.log_partition(e, mask.astype(np.uint8)), crf.log_partition(e, mask))


def test_backward_requires_forward_and_accumulates(rng):
    crf = CRF(3, rng=rng)
    e, tags, mask = problem(rng, 2, 4, 3)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        crf.backward()
    crf.forward(e, tags, mask)
    d1 = crf.backward()
    g1 = crf.transitions.grad.copy()
    with pytest.raises(RuntimeError):
        crf.backward()                       # one forward supports one backward
    crf.forward(e, tags, mask)
    d2 = crf.backward(2.0)
    np.testing.assert_allclose(d2, 2 * d1, rtol=1e-6)
    np.testing.assert_allclose(crf.transitions.grad, 3 * g1, rtol=1e-5, atol=1e-7)
    crf.zero_grad()
    assert np.all(crf.transitions.grad == 0)


def test_validation_messages(rng):
    crf = CRF(4, rng=rng)
    e, tags, mask = problem(rng, 2, 3, 4)
    bad = mask.copy()
    bad[1, 0] = False
    with pytest.raises(ValueError, match="first timestep"):
        crf.log_partition(e, bad)
    holey = np.array([[True, False, True], [True, True, True]])
    with pytest.raises(ValueError, match="prefix mask"):
        crf.forward(e, tags, holey)
    with pytest.raises(ValueError, match="num_tags = 4"):
        crf.decode(e[:, :, :3], mask)
    with pytest.raises(ValueError, match="dtype"):
        crf.marginals(e.astype(np.float64), mask)
    with pytest.raises(ValueError, match=r"tags must lie in \[0, 4\)"):
        crf.log_likelihood(e, np.where(mask, 4, 0), mask)
    with pytest.raises(ValueError, match="mask must be"):
        crf.log_partition(e, mask[:, :2])
    with pytest.raises(ValueError, match="emissions must be"):
        crf.log_partition(e[0], mask)
    # tags outside [0, K) at padded positions are fine (they are never read)
    short = np.array([[True, False, False], [True, True, False]])
    crf.log_likelihood(e, np.where(short, 1, -100), short)


def test_module_gradcheck_mean_nll(rng):
    crf = CRF(4, rng=rng).double()
    e, tags, mask = problem(rng, 3, 5, 4, dtype=np.float64)
    errs = check_module(crf, lambda x, y, m: crf.forward(x, y, m),
                        lambda d: (crf.backward(d), None, None), [e, tags, mask], rng)
    assert set(errs) == {"input0", "start_transitions", "end_transitions", "transitions"}
    assert max(errs.values()) <= 1e-6


def test_to_backend_roundtrip(xp, rng):
    crf = CRF(5, rng=1).to(backend.get_backend())
    e, tags, mask = problem(rng, 2, 6, 5)
    e, tags, mask = backend.asarray(e), backend.asarray(tags), backend.asarray(mask)
    loss = crf.forward(e, tags, mask)
    de = crf.backward()
    assert backend.get_xp(de) is xp and de.dtype == np.float32 and float(loss) > 0
    assert len(crf.decode(e, mask)) == 2


# ------------------------------------------------------------- pytorch-crf parity
def torch_crf_like(crf):
    torch = pytest.importorskip("torch")
    torchcrf = pytest.importorskip("torchcrf")
    ref = torchcrf.CRF(crf.num_tags, batch_first=True)
    ref.load_state_dict({k: torch.from_numpy(backend.asnumpy(v).copy()) for k, v in crf.state_dict().items()})
    return torch, ref


@pytest.mark.parity
@pytest.mark.parametrize("seed,B,T,K,scale", [(0, 6, 9, 5, 1.0), (1, 8, 20, 13, 3.0), (2, 4, 1, 3, 1.0),
                                             (3, 24, 64, 13, 1.0)])
def test_parity_log_likelihood_and_gradients(seed, B, T, K, scale):
    rng = np.random.default_rng(seed)
    crf = CRF(K, rng=rng)
    torch, ref = torch_crf_like(crf)
    e, tags, mask = problem(rng, B, T, K, scale=scale)
    te, tt, tm = torch.tensor(e, requires_grad=True), torch.tensor(tags), torch.tensor(mask)
    llh = crf.log_likelihood(e, tags, mask)
    assert_close("llh none", llh, ref(te, tt, tm, reduction="none").detach().numpy(), 1e-5)
    assert_close("llh sum", llh.sum(), ref(te, tt, tm, reduction="sum").detach().numpy(), 1e-5)
    assert_close("llh mean", llh.mean(), ref(te, tt, tm, reduction="mean").detach().numpy(), 1e-5)
    # gradients of the mean NLL: autograd vs expected-minus-observed counts
    loss_ref = -ref(te, tt, tm, reduction="mean")
    loss_ref.backward()
    loss = crf.forward(e, tags, mask)
    assert_close("mean NLL", loss, loss_ref.detach().numpy(), 1e-5)
    de = crf.backward()
    assert_close("d emissions", de, te.grad.numpy(), 1e-5)
    for name, p in crf.named_parameters():
        g = getattr(ref, name).grad                  # None when unused (T = 1: no transition)
        assert_close(f"d {name}", p.grad, np.zeros(p.shape) if g is None else g.numpy(), 1e-5)


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(6))
def test_parity_decode_identical(seed):
    rng = np.random.default_rng(10 + seed)
    K = (2, 5, 13)[seed % 3]
    crf = CRF(K, rng=rng)
    # a trained-looking CRF: bigger transitions than the U(±0.1) init
    for p in crf.parameters():
        p.data = (p.data * 30).astype(np.float32)
    torch, ref = torch_crf_like(crf)
    e, _, mask = problem(rng, 16, 40, K, scale=(1.0, 5.0, 50.0)[seed % 3])
    assert crf.decode(e, mask) == ref.decode(torch.tensor(e), torch.tensor(mask))


@pytest.mark.parity
def test_load_pytorch_crf_state_dict():
    torch = pytest.importorskip("torch")
    torchcrf = pytest.importorskip("torchcrf")
    ref = torchcrf.CRF(13, batch_first=True)
    crf = CRF(13, rng=0)
    crf.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(crf.state_dict()[k], v.numpy())


# ------------------------------------------------------------ constrained decoding
def is_valid_paper_path(path, word):
    names = PAPER_MAIN_TAGS
    tags = [names[i] for i in path]
    if tags[0] != "[CLS]" or tags[-1] != "[SEP]" or "PAD" in tags:
        return False
    if "[CLS]" in tags[1:] or "[SEP]" in tags[:-1]:
        return False
    for t, (prev, cur) in enumerate(zip(tags, tags[1:]), start=1):
        if cur.startswith("I-") and prev not in (f"B-{cur[2:]}", cur, "X"):
            return False
    return not any(word[t] and tags[t] in ("X", "[CLS]", "[SEP]") for t in range(len(tags)))


def test_decode_with_paper_constraints(rng):
    K = 13
    crf = CRF(K, rng=rng)
    for p in crf.parameters():
        p.data = (p.data * 20).astype(np.float32)
    B, T = 12, 16
    e, _, mask = problem(rng, B, T, K, scale=4.0, lengths=rng.integers(3, T + 1, B))
    word = mask & (rng.random((B, T)) < 0.6)
    word[:, 0] = False
    word[np.arange(B), mask.sum(1) - 1] = False                   # [SEP] position
    word[:, 1] = True                                             # the first word piece after [CLS]
    free = crf.decode(e, mask)
    assert not all(is_valid_paper_path(p, w) for p, w in zip(free, word))   # the constraints do bite
    paths = crf.decode(e, mask, allowed=paper_constraints(word))
    assert [len(p) for p in paths] == mask.sum(1).tolist()
    assert all(is_valid_paper_path(p, w) for p, w in zip(paths, word))
    # constrained Viterbi = the best allowed path: no allowed path may score higher
    s, n, t = crf.start_transitions.data, crf.end_transitions.data, crf.transitions.data
    padded = np.zeros((B, T), np.int64)
    for b, p in enumerate(paths):
        padded[b, :len(p)] = p
    _, best = C.crf_viterbi(e, mask, s, n, t, paper_constraints(word))
    np.testing.assert_allclose(C.crf_path_score(e, padded, mask, s, n, t), best, rtol=1e-6)


def test_decode_allowed_forms_and_errors(rng):
    crf = CRF(3, rng=rng)
    e, _, mask = problem(rng, 4, 5, 3)
    trans = np.array([[True, True, False], [False, True, True], [True, False, True]])
    a = crf.decode(e, mask, allowed=trans)
    assert a == crf.decode(e, mask, allowed={"transitions": trans})
    assert a == crf.decode(e, mask, allowed=Constraints(transitions=trans))
    for p in a:
        assert all(trans[i, j] for i, j in zip(p, p[1:]))
    assert crf.decode(e, mask, allowed=Constraints()) == crf.decode(e, mask)
    with pytest.raises(ValueError, match="unknown constraint keys"):
        crf.decode(e, mask, allowed={"transition": trans})
    with pytest.raises(ValueError, match="allowed must be"):
        crf.decode(e, mask, allowed=[[True]])
    nothing = Constraints(start=np.array([True, False, False]), tags=np.array([False, True, True]))
    with pytest.raises(ValueError, match=r"no tag path satisfies the constraints for batch rows \[0, 1, 2, 3\]"):
        crf.decode(e, mask, allowed=nothing)
