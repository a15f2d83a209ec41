"""Tests for minimner.models.fusion: the nine fusion variants of docs/model.md §6 (ffusion_method 0–8)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner.gradcheck import check_module
from minimner.models.fusion import FUSION_METHODS, PATHS, fusion_method, fusion_name, make_fusion
from minimner.nn.layers import Dropout

METHODS = range(len(FUSION_METHODS))
DROPOUT_P = {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.1, 4: 0.5}      # docs/modules.md §7; methods 5–8 have none
READS = {0: PATHS, 1: PATHS, 2: PATHS, 3: PATHS, 4: PATHS, 5: ("img", "imgtxt", "objtxt"),
         6: ("img", "obj"), 7: ("obj", "objtxt"), 8: ("img", "imgtxt")}


def _names(method, H):
    """The original leaf names and torch shapes each variant must hold (docs/parameters.md §3), in key order."""
    gate = lambda k: [(f"fus{k}_w1", (H, H)), (f"fus{k}_w2", (H, H)), (f"fus{k}_bias", (H,))]  # noqa: E731
    lin = lambda n, i, o: [(f"{n}.weight", (o, i)), (f"{n}.bias", (o,))]                     # noqa: E731
    return {
        0: lin("fus_cat_linear", 4 * H, H),
        1: gate(1) + gate(2) + gate(3),
        2: gate(1) + gate(2) + lin("fus3_linear", 2 * H, H),
        3: lin("mlp_linear1", H, H) + lin("mlp_linear2", H, 1),
        4: [("seq_w", (H, H)), ("ali_w", (H, H)), ("ati_w", (H, H)), ("obj_w", (H, H)), ("add_bias", (H,))]
        + lin("add_linear", H, H),
        5: lin("gmf.text_linear", H, H) + lin("gmf.img_linear", H, H) + lin("gmf.gate_linear", 2 * H, 1)
        + [("filtration_gate.text_linear.weight", (H, H))] + lin("filtration_gate.multimodal_linear", H, H)
        + lin("filtration_gate.gate_linear", 2 * H, 1) + lin("filtration_gate.resv_linear", H, H)
        + lin("gfg", 2 * H, H),
    }.get(method, gate(1))


def _paths(rng, B=2, T=3, H=4, dtype=np.float64):
    return [rng.standard_normal((B, T, H)).astype(dtype) for _ in PATHS]


def _dropouts(m):
    return [d for _, d in m.named_modules() if isinstance(d, Dropout)]


def _frozen(m):
    """m.forward that restores every dropout generator's state first: each call draws the same masks."""
    drops = _dropouts(m)
    states = [d.rng.bit_generator.state for d in drops]

    def forward(*xs):
        for d, s in zip(drops, states):
            d.rng.bit_generator.state = s
        return m.forward(*xs)
    return forward


# ----------------------------------------------------------------------------- names, lookup, init
def test_names_and_ids_round_trip():
    assert FUSION_METHODS[2] == "gate_concat" and len(FUSION_METHODS) == 9
    for i, n in enumerate(FUSION_METHODS):
        assert fusion_name(i) == n and fusion_method(n) == i
        m = make_fusion(n, 4, np.random.default_rng(0))
        assert m.method == i and m.name == n and m.uses == READS[i]
        assert type(make_fusion(i, 4, np.random.default_rng(0))) is type(m)   # the original id works too


@pytest.mark.parametrize("call", [lambda: fusion_name(9), lambda: fusion_name(-1), lambda: fusion_name(True),
                                  lambda: fusion_name("2"), lambda: fusion_method("gate"),
                                  lambda: make_fusion("attention", 4), lambda: make_fusion(9, 4)])
def test_unknown_variant_lists_the_valid_ones(call):
    with pytest.raises(ValueError, match="expected one of 0 'concat', 1 'gate_of_gates'.*8 'grid_only'"):
        call()


@pytest.mark.parametrize("method", METHODS)
def test_parameters_carry_the_original_names(method):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0))
    assert [(n, p.shape) for n, p in m.named_parameters()] == _names(method, 4)
    assert all(p.dtype == np.float32 for p in m.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_init_follows_spec_6_1(method):
    H = 64
    m = make_fusion(FUSION_METHODS[method], H, np.random.default_rng(0))
    for name, p in m.named_parameters():
        if "." in name:                                    # a Linear: PyTorch default U(±1/√fan_in)
            fan_in = m.state_dict()[name.rsplit(".", 1)[0] + ".weight"].shape[1]
        else:                                              # free-standing: reset_parameters U(±1/√H)
            fan_in = H
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(p.data).max() <= bound, name
        if p.data.size >= 64:                              # a uniform's std is bound/√3
            assert abs(p.data.std() - bound / math.sqrt(3)) < 0.15 * bound, name


@pytest.mark.parametrize("method", METHODS)
def test_dropout_modules(method):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0), hidden_dropout_prob=0.2)
    drops = dict((n, d) for n, d in m.named_modules() if isinstance(d, Dropout))
    expected = {} if method >= 5 else {"dropout": 0.2} if method == 3 else {"fus_dropout": 0.5}
    assert {n: d.p for n, d in drops.items()} == expected
    if method == 3:                                        # default: BERT's hidden_dropout_prob 0.1
        assert make_fusion("path_attention", 4, np.random.default_rng(0)).dropout.p == DROPOUT_P[3]
    assert all(d.training for d in drops.values())
    m.eval()
    assert not any(d.training for d in drops.values())


# ----------------------------------------------------------------------------- gradients
def _next_keep(m, shape):
    """The scaled keep mask m's dropout will draw next (ops.dropout: float32 uniforms of the input's shape ≥ p)."""
    (drop,) = _dropouts(m)
    clone = np.random.default_rng()
    clone.bit_generator.state = drop.rng.bit_generator.state
    return (clone.random(shape, dtype=np.float32) >= drop.p) * np.float32(1 / (1 - drop.p))


def _straddle_scores(m, xs):
    """Method 3: shift ``mlp_linear2.bias`` so that about half the path scores s are ReLU-clipped.

    Were every score positive, softmax's shift invariance would make that bias's true gradient
    exactly 0 (or, in float32, a small remainder of cancelling terms), which a relative check cannot
    confirm; mixed signs make it a sizeable gradient. In train mode the next dropout mask is applied.
    """
    if m.method != 3:
        return
    img, imgtxt, obj, objtxt = xs
    x = np.stack([objtxt, img, imgtxt, obj], axis=-2)                                  # (B, T, 4, H)
    h = np.maximum(x @ m.mlp_linear1.weight.data.T + m.mlp_linear1.bias.data, 0)      # (B, T, 4, H)
    if m.training:
        h = h * _next_keep(m, h.shape)
    z = h @ m.mlp_linear2.weight.data.T + m.mlp_linear2.bias.data                     # (B, T, 4, 1)
    m.mlp_linear2.bias.data -= np.median(z).astype(z.dtype)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_eval(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(method)).double().eval()
    xs = _paths(rng)
    _straddle_scores(m, xs)
    errs = check_module(m, m.forward, m.backward, xs, rng, differentiable=[p in m.uses for p in PATHS])
    assert len(errs) == len(m.uses) + len(m.parameters()) and max(errs.values()) < 1e-6


@pytest.mark.parametrize("method", sorted(DROPOUT_P))
def test_gradcheck_train_with_fixed_masks(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(method)).double().train()
    xs = _paths(rng)
    _straddle_scores(m, xs)
    forward = _frozen(m)
    fv_train = forward(*xs)
    np.testing.assert_array_equal(forward(*xs), fv_train)       # the frozen masks repeat
    assert not np.allclose(fv_train, m.eval().forward(*xs))     # and they do drop something
    m.train()
    errs = check_module(m, forward, m.backward, xs, rng)
    assert len(errs) == 4 + len(m.parameters()) and max(errs.values()) < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_unread_paths_get_none_and_do_not_matter(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0)).eval()
    xs = _paths(rng, dtype=np.float32)
    fv = m.forward(*xs)
    grads = m.backward(rng.standard_normal(fv.shape).astype(np.float32))
    assert len(grads) == 4
    for p, x, g in zip(PATHS, xs, grads):
        assert (g is None) == (p not in READS[method]), p
        assert g is None or (g.shape == x.shape and g.dtype == np.float32)
    other = [x if p in m.uses else None for p, x in zip(PATHS, xs)]     # unread paths may be None ...
    np.testing.assert_array_equal(m.forward(*other), fv)
    changed = [x if p in m.uses else x + 1 for p, x in zip(PATHS, xs)]  # ... and do not change Fv
    np.testing.assert_array_equal(m.forward(*changed), fv)


# ----------------------------------------------------------------------------- gates, dtype, errors
GATES = {0: {}, 1: {"image": 4, "object": 4, "final": 4}, 2: {"image": 4, "object": 4}, 3: {"paths": 4},
         4: {}, 5: {"gmf": 1, "filtration": 1}, 6: {"gate": 4}, 7: {"gate": 4}, 8: {"gate": 4}}


@pytest.mark.parametrize("method", METHODS)
def test_gates_dict(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0))
    assert m.gates == {}
    m.forward(*_paths(rng, B=2, T=5, dtype=np.float32))
    assert {k: v.shape for k, v in m.gates.items()} == {k: (2, 5, n) for k, n in GATES[method].items()}
    for k, g in m.gates.items():
        assert g.dtype == np.float32 and ((g > 0) & (g < 1)).all(), k
    if method == 3:
        np.testing.assert_allclose(m.gates["paths"].sum(-1), 1, rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([6, 7, 8]), st.integers(1, 3), st.integers(1, 6), st.integers(1, 16),
       st.floats(0.01, 5.0), st.integers(0, 2**31 - 1))
def test_single_gate_output_lies_between_its_inputs(method, B, T, H, scale, seed):
    r = np.random.default_rng(seed)
    m = make_fusion(FUSION_METHODS[method], H, r)
    u = dict(zip(PATHS, (r.standard_normal((B, T, H)).astype(np.float32) * np.float32(scale) for _ in PATHS)))
    fv = m.forward(u["img"], u["imgtxt"], u["obj"], u["objtxt"])
    a, b = {6: ("img", "obj"), 7: ("objtxt", "obj"), 8: ("img", "imgtxt")}[method]
    lo, hi = np.minimum(u[a], u[b]), np.maximum(u[a], u[b])
    slack = 2 * np.spacing(np.maximum(np.abs(u[a]), np.abs(u[b])))   # float32 rounding of g a + (1 − g) b
    assert fv.dtype == np.float32 and ((fv >= lo - slack) & (fv <= hi + slack)).all()


@pytest.mark.parametrize("method", METHODS)
def test_dtype_is_preserved(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0))
    for dtype in (np.float32, np.float64):
        if dtype == np.float64:
            m.double()
        fv = m.forward(*_paths(rng, dtype=dtype))
        grads = m.backward(rng.standard_normal(fv.shape).astype(dtype))
        assert fv.dtype == dtype and fv.shape == (2, 3, 4)
        assert all(g.dtype == dtype for g in grads if g is not None)
        assert all(p.grad.dtype == dtype for p in m.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_bad_inputs_raise(method, rng):
    m = make_fusion(FUSION_METHODS[method], 4, np.random.default_rng(0))
    i = PATHS.index(m.uses[-1])                            # a path every variant reads
    cases = [((2, 4, 4), np.float32, r"must have shape \(2, 3, 4\); got \(2, 4, 4\)"),
             ((2, 3, 5), np.float32, r"must have shape"),
             ((6, 4), np.float32, r"must have shape"),
             ((2, 3, 4), np.float64, r"parameters' dtype float32; got float64")]
    for shape, dtype, match in cases:
        xs = _paths(rng, dtype=np.float32)
        xs[i] = rng.standard_normal(shape).astype(dtype)
        with pytest.raises(ValueError, match=match):
            m.forward(*xs)
    xs = _paths(rng, dtype=np.float32)
    xs[i] = None
    with pytest.raises(ValueError, match=f"reads u_{PATHS[i]}; got None"):
        m.forward(*xs)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        m.backward(np.zeros((2, 3, 4), np.float32))
    m.forward(*_paths(rng, dtype=np.float32))
    with pytest.raises(ValueError, match=r"dfv must have shape \(2, 3, 4\)"):
        m.backward(np.zeros((2, 3, 5), np.float32))


# ----------------------------------------------------------------------------- torch parity
def _torch_fusion(torch, method, P, u, keep=None):
    """Fv and the gates of one variant, written from docs/model.md §6 with torch ops.

    P: original name -> tensor; u: path -> (B, T, H) tensor; keep: the dropout's scaled keep mask or None.
    """
    img, imgtxt, obj, objtxt = (u[p] for p in PATHS)

    def lin(x, name):                                      # nn.Linear: x Wᵀ + b
        y = x @ P[f"{name}.weight"].T
        return y + P[f"{name}.bias"] if f"{name}.bias" in P else y

    def gate(k, a, b):                                     # a takes g, b takes 1 − g
        g = torch.sigmoid(a @ P[f"fus{k}_w1"].T + b @ P[f"fus{k}_w2"].T + P[f"fus{k}_bias"])
        return g * a + (1 - g) * b, g

    def drop(x):
        return x if keep is None else x * keep.reshape(x.shape)

    if method == 0:
        return torch.relu(lin(drop(torch.cat([objtxt, img, imgtxt, obj], -1)), "fus_cat_linear")), {}
    if method in (1, 2):
        (f1, g1), (f2, g2) = gate(1, img, imgtxt), gate(2, objtxt, obj)
        if method == 1:
            f3, g3 = gate(3, f1, f2)
            return drop(f3), {"image": g1, "object": g2, "final": g3}
        return torch.relu(lin(drop(torch.cat([f1, f2], -1)), "fus3_linear")), {"image": g1, "object": g2}
    if method == 3:
        B, T, H = img.shape
        x = torch.cat([objtxt, img, imgtxt, obj], -1).view(B * T, 4, H)
        s = torch.relu(lin(drop(torch.relu(lin(x, "mlp_linear1"))), "mlp_linear2"))   # (B·T, 4, 1)
        beta = torch.softmax(s, dim=1)
        return (beta * x).sum(1).view(B, T, H), {"paths": beta.view(B, T, 4)}
    if method == 4:
        z = objtxt @ P["seq_w"] + img @ P["ali_w"] + imgtxt @ P["ati_w"] + obj @ P["obj_w"] + P["add_bias"]
        return torch.relu(lin(drop(z), "add_linear")), {}
    if method == 5:
        i, t = torch.tanh(lin(objtxt, "gmf.img_linear")), torch.tanh(lin(imgtxt, "gmf.text_linear"))
        gamma = torch.sigmoid(lin(torch.cat([i, t], -1), "gmf.gate_linear"))
        gm = gamma * i + (1 - gamma) * t
        c = torch.cat([lin(img, "filtration_gate.text_linear"), lin(gm, "filtration_gate.multimodal_linear")], -1)
        phi = torch.sigmoid(lin(c, "filtration_gate.gate_linear"))
        r = phi * torch.tanh(lin(gm, "filtration_gate.resv_linear"))
        return lin(torch.cat([img, r], -1), "gfg"), {"gmf": gamma, "filtration": phi}
    a, b = {6: (img, obj), 7: (objtxt, obj), 8: (img, imgtxt)}[method]
    fv, g = gate(1, a, b)
    return fv, {"gate": g}


def _assert_close(name, ours, ref, atol=0.0, rtol=0.0):
    ref = ref.detach().numpy()
    err = np.abs(ours - ref)
    bound = atol + rtol * np.abs(ref).max()
    assert ours.shape == ref.shape and err.max() <= bound, (
        f"{name}: max abs diff {err.max():.3e} > {bound:.3e} at {np.unravel_index(err.argmax(), err.shape)}")


def _mask_shape(method, B, T, H):
    """The shape of the array each variant drops out (docs/model.md §6)."""
    return {0: (B, T, 4 * H), 1: (B, T, H), 2: (B, T, 2 * H), 3: (B, T, 4, H), 4: (B, T, H)}[method]


@pytest.mark.parity
@pytest.mark.parametrize("method,mode", [(i, "eval") for i in METHODS] + [(i, "train") for i in DROPOUT_P])
def test_parity_with_torch(method, mode, rng):
    """Eval mode, and train mode with the very mask our dropout draws (so its placement is checked too)."""
    torch = pytest.importorskip("torch")
    B, T, H = 2, 5, 16
    m = make_fusion(FUSION_METHODS[method], H, np.random.default_rng(7)).train(mode == "train")
    xs = _paths(rng, B, T, H, np.float32)
    _straddle_scores(m, xs)
    dfv = rng.standard_normal((B, T, H)).astype(np.float32)
    keep = torch.tensor(_next_keep(m, _mask_shape(method, B, T, H))) if mode == "train" else None
    fv = m.forward(*xs)
    gates = {k: v.copy() for k, v in m.gates.items()}
    grads = m.backward(dfv)

    P = {n: torch.tensor(p.data, requires_grad=True) for n, p in m.named_parameters()}   # copied by name
    u = {p: torch.tensor(x, requires_grad=True) for p, x in zip(PATHS, xs)}
    tfv, tgates = _torch_fusion(torch, method, P, u, keep)
    (tfv * torch.tensor(dfv)).sum().backward()

    _assert_close("fv", fv, tfv, atol=1e-6)
    assert set(gates) == set(tgates)
    for k in gates:
        _assert_close(f"gate {k}", gates[k], tgates[k], atol=1e-6)
    for p, g in zip(PATHS, grads):
        assert (g is None) == (u[p].grad is None), p      # torch's None for an unread path
        if g is not None:
            _assert_close(f"d u_{p}", g, u[p].grad, rtol=1e-5)
    for n, prm in m.named_parameters():
        _assert_close(f"d {n}", prm.grad, P[n].grad, rtol=1e-5)
