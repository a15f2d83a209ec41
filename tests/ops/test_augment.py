"""Tests for the augmentation fusions (docs/augmentation.md §3): minimner.ops.augment and minimner.nn.augment.

Every variant gets a float64 central-difference check on every input and
parameter with a random upstream gradient (op level and module level), plus
dtype/backend checks, invariants and a float32 parity check against PyTorch.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.gradcheck import check_grads, check_module
from minimner.nn.augment import (AUG_MODES, AugmentAdd, AugmentGate, AugmentNone, EmbeddingAugment, flags_from_mode,
                                 make_augment_fusion, mode_from_flags)
from minimner.ops.augment import aug_add_backward, aug_add_forward, aug_gate_backward, aug_gate_forward

B, T, C, E = 2, 3, 4, 5


def _inputs(rng, dtype=np.float64):
    s0 = rng.standard_normal((B, T, C)).astype(dtype)
    a = rng.standard_normal((B, T, E)).astype(dtype)
    a[0, 1] = 0  # a zero augmentation row, as at [CLS]/[SEP]/sub-word pieces
    return s0, a


def _linear(rng, dtype=np.float64):
    return (rng.standard_normal((C, E)) * 0.5).astype(dtype), (rng.standard_normal(C) * 0.5).astype(dtype)


def _gate(rng, dtype=np.float64):
    return ((rng.standard_normal((C, C)) * 0.5).astype(dtype), (rng.standard_normal((C, C)) * 0.5).astype(dtype),
            (rng.standard_normal(C) * 0.5).astype(dtype))


# ----------------------------------------------------------------------------- op-level gradient checks
def test_add_gradcheck_every_input_and_parameter(rng):
    s0, a = _inputs(rng)
    w, b = _linear(rng)
    dout = rng.standard_normal((B, T, C))
    s, cache = aug_add_forward(s0, a, w, b)
    ds0, da, dw, db = aug_add_backward(dout, cache)
    errs = check_grads(lambda: float((aug_add_forward(s0, a, w, b)[0] * dout).sum()),
                       {"s0": s0, "a": a, "w": w, "b": b}, {"s0": ds0, "a": da, "w": dw, "b": db})
    assert max(errs.values()) < 1e-6


def test_gate_gradcheck_every_input_and_parameter(rng):
    s0, a = _inputs(rng)
    w, b = _linear(rng)
    w1, w2, gb = _gate(rng)
    dout = rng.standard_normal((B, T, C))
    s, cache = aug_gate_forward(s0, a, w, b, w1, w2, gb)
    grads = aug_gate_backward(dout, cache)
    names = ["s0", "a", "w", "b", "w1", "w2", "gb"]
    arrays = dict(zip(names, (s0, a, w, b, w1, w2, gb)))
    errs = check_grads(lambda: float((aug_gate_forward(s0, a, w, b, w1, w2, gb)[0] * dout).sum()), arrays,
                       dict(zip(names, grads)))
    assert max(errs.values()) < 1e-6


# ----------------------------------------------------------------------------- module-level gradient checks
@pytest.mark.parametrize("mode", ["add", "gate"])
def test_fusion_module_gradcheck(rng, mode):
    m = make_augment_fusion(mode, E, C, rng=np.random.default_rng(3)).double()
    s0, a = _inputs(rng)
    errs = check_module(m, m.forward, m.backward, [s0, a], rng)
    expected = {"add": {"maug_linear.weight", "maug_linear.bias"},
                "gate": {"aug_w1", "aug_w2", "aug_bias", "maug_linear.weight", "maug_linear.bias"}}[mode]
    assert set(errs) == {"input0", "input1"} | expected
    assert max(errs.values()) < 1e-6


def test_fusion_module_directional_check(rng):
    m = AugmentGate(E, C, rng=np.random.default_rng(4)).double()
    s0, a = _inputs(rng)
    errs = check_module(m, m.forward, m.backward, [s0, a], rng, directional=True)
    assert errs["direction"] < 1e-6


def test_none_module_is_identity_and_passes_gradient(rng):
    m = AugmentNone().double()
    s0, a = _inputs(rng)
    assert m.forward(s0, a) is s0
    ds = rng.standard_normal(s0.shape)
    ds0, da = m.backward(ds)
    assert ds0 is ds and da is None
    assert m.num_parameters() == 0
    with pytest.raises(RuntimeError):
        m.backward(ds)  # one pending cache only
    errs = check_module(m, lambda x: m.forward(x, a), lambda d: m.backward(d)[:1], [s0], rng)
    assert errs["input0"] < 1e-6


def test_embedding_augment_gradcheck_and_term(rng):
    m = EmbeddingAugment(E, C, rng=np.random.default_rng(5))
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (C, E) and float(np.abs(m.bias.data).max()) == 0.0  # BERT init: bias 0
    m.double()
    m.bias.data = rng.standard_normal(C)  # a non-zero bias so its gradient is checked on a general point
    _, a = _inputs(rng)
    errs = check_module(m, m.forward, m.backward, [a], rng)
    assert set(errs) == {"input0", "weight", "bias"} and max(errs.values()) < 1e-6
    # the hook's contract: the term added before LayerNorm equals a Wᵀ + b
    e = rng.standard_normal((B, T, C))
    np.testing.assert_allclose(e + m.forward(a), aug_add_forward(e, a, m.weight.data, m.bias.data)[0], atol=1e-12)


def test_embedding_augment_init_statistics():
    m = EmbeddingAugment(200, 384, rng=np.random.default_rng(0))
    assert abs(float(m.weight.data.std()) - 0.02) < 0.001 and m.weight.dtype == np.float32


# ----------------------------------------------------------------------------- names, flags, shapes, dtypes
def test_parameter_names_follow_the_original():
    gate = AugmentGate(E, C, rng=np.random.default_rng(0))
    assert [n for n, _ in gate.named_parameters()] == ["aug_w1", "aug_w2", "aug_bias", "maug_linear.weight",
                                                       "maug_linear.bias"]
    assert [tuple(p.shape) for _, p in gate.named_parameters()] == [(C, C), (C, C), (C,), (C, E), (C,)]
    bound = 1 / np.sqrt(C)
    assert all(float(np.abs(getattr(gate, n).data).max()) <= bound for n in ("aug_w1", "aug_w2", "aug_bias"))
    add = AugmentAdd(E, C, rng=np.random.default_rng(0))
    assert list(add.state_dict()) == ["maug_linear.weight", "maug_linear.bias"]


def test_modes_and_original_flags():
    assert AUG_MODES == ("add", "gate", "embed", "none")
    assert mode_from_flags(1, 1) == "add" and mode_from_flags(1, 0) == "gate"
    assert mode_from_flags(0, 0) == mode_from_flags(0, 1) == "embed"
    assert mode_from_flags(2, 1) == mode_from_flags(7, 0) == "none"
    for m in AUG_MODES:
        assert mode_from_flags(*flags_from_mode(m)) == m
    assert isinstance(make_augment_fusion("embed", E, C), AugmentNone)
    with pytest.raises(ValueError, match="unknown augmentation mode"):
        make_augment_fusion("concat", E, C)
    with pytest.raises(ValueError, match="unknown augmentation mode"):
        flags_from_mode("concat")


@pytest.mark.parametrize("mode", ["add", "gate"])
def test_dtype_and_backend(xp_name, rng, mode):
    xp = backend.xp()
    m = make_augment_fusion(mode, E, C, rng=backend.rng(0))
    s0 = xp.asarray(rng.standard_normal((B, T, C)), dtype=xp.float32)
    a = xp.asarray(rng.standard_normal((B, T, E)), dtype=xp.float32)
    s = m.forward(s0, a)
    assert s.dtype == np.float32 and backend.get_xp(s) is xp and s.shape == (B, T, C)
    ds0, da = m.backward(xp.ones_like(s))
    assert ds0.dtype == da.dtype == np.float32 and da.shape == (B, T, E)
    assert all(p.grad.dtype == np.float32 for p in m.parameters())


def test_shape_errors(rng):
    s0, a = _inputs(rng, np.float32)
    w, b = _linear(rng, np.float32)
    with pytest.raises(ValueError, match=r"\(B, T, C\) and \(B, T, E\)"):
        aug_add_forward(s0, a[:, :2], w, b)
    with pytest.raises(ValueError, match="expected \\(C, E\\)"):
        aug_add_forward(s0, a, w[:, :3], b)
    w1, w2, gb = _gate(rng, np.float32)
    with pytest.raises(ValueError, match="gate parameters"):
        aug_gate_forward(s0, a, w, b, w1[:2], w2, gb)


def test_bias_leaks_into_zero_positions(rng):
    """docs/original-quirks.md §15: a zero augmentation vector still adds maug_linear's bias."""
    s0, a = _inputs(rng, np.float32)
    w, b = _linear(rng, np.float32)
    s, _ = aug_add_forward(s0, a, w, b)
    np.testing.assert_allclose(s[0, 1], s0[0, 1] + b, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 16), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_gate_output_lies_between_s0_and_n(b_, t_, c_, e_, seed):
    r = np.random.default_rng(seed)
    s0 = r.standard_normal((b_, t_, c_)).astype(np.float32)
    a = r.standard_normal((b_, t_, e_)).astype(np.float32)
    w, bias = r.standard_normal((c_, e_)).astype(np.float32), r.standard_normal(c_).astype(np.float32)
    w1, w2, gb = (r.standard_normal((c_, c_)).astype(np.float32), r.standard_normal((c_, c_)).astype(np.float32),
                  r.standard_normal(c_).astype(np.float32))
    s, _ = aug_gate_forward(s0, a, w, bias, w1, w2, gb)
    n = a @ w.T + bias
    assert s.dtype == np.float32
    tol = 1e-5 * (1 + np.abs(s0) + np.abs(n))
    assert np.all(s >= np.minimum(s0, n) - tol) and np.all(s <= np.maximum(s0, n) + tol)


# ----------------------------------------------------------------------------- parity with PyTorch
@pytest.mark.parity
@pytest.mark.parametrize("mode", ["add", "gate"])
def test_parity_with_torch(rng, mode):
    torch = pytest.importorskip("torch")
    Cp, Ep = 16, 12
    m = make_augment_fusion(mode, Ep, Cp, rng=np.random.default_rng(7))
    s0 = rng.standard_normal((2, 5, Cp)).astype(np.float32)
    a = rng.standard_normal((2, 5, Ep)).astype(np.float32)
    a[:, 0] = 0
    dout = rng.standard_normal((2, 5, Cp)).astype(np.float32)
    s = m.forward(s0, a)
    ds0, da = m.backward(dout)

    ts0, ta = torch.tensor(s0, requires_grad=True), torch.tensor(a, requires_grad=True)
    lin = torch.nn.Linear(Ep, Cp)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(m.maug_linear.weight.data))
        lin.bias.copy_(torch.from_numpy(m.maug_linear.bias.data))
    n = lin(ta)
    tparams = {}
    if mode == "add":
        out = ts0 + n
    else:
        for name in ("aug_w1", "aug_w2", "aug_bias"):
            tparams[name] = torch.tensor(getattr(m, name).data, requires_grad=True)
        g = torch.sigmoid(ts0 @ tparams["aug_w1"].T + n @ tparams["aug_w2"].T + tparams["aug_bias"])
        out = g * ts0 + (1 - g) * n
    out.backward(torch.from_numpy(dout))

    def close(ours, ref, name):
        ref = ref.detach().numpy()
        diff = np.abs(ours - ref)
        worst = np.unravel_index(np.argmax(diff), diff.shape)
        assert np.allclose(ours, ref, rtol=1e-5, atol=1e-5), f"{name}: max abs diff {diff.max():.3e} at {worst}"

    close(s, out, "S")
    close(ds0, ts0.grad, "dS0")
    close(da, ta.grad, "da")
    close(m.maug_linear.weight.grad, lin.weight.grad, "maug_linear.weight")
    close(m.maug_linear.bias.grad, lin.bias.grad, "maug_linear.bias")
    for name, t in tparams.items():
        close(getattr(m, name).grad, t.grad, name)
