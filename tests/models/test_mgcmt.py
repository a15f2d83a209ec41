"""MGCMT: whole-model and per-branch float64 gradient checks, properties, missing inputs, API errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner.gradcheck import check_grads, directional_check
from minimner.models.fusion import FUSION_METHODS
from minimner.models.mgcmt import MGCMT, MGCMTConfig, trans_matrix
from tests.models.mgcmt_helpers import FLAG_GRID, TINY, spread_weights, tiny_inputs, tiny_model

FLOAT_INPUTS = ("aug", "image")


def _double(model, kw):
    model.double()
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in kw.items()}


def _gen(model):
    return model.dropout.rng                      # the one generator every dropout of the model draws from


def _loss_fn(model, kw, labels, aux):
    """The loss as a function of the current parameter/input values, with the dropout masks replayed."""
    gen = _gen(model)
    state = gen.bit_generator.state

    def f():
        gen.bit_generator.state = state
        return float(model.loss(**kw, labels=labels, aux_labels=aux))
    return f


def _analytic_loss(model, kw, labels, aux):
    f = _loss_fn(model, kw, labels, aux)
    model.zero_grad()
    f()
    dins = model.backward(input_grads=True)
    return f, dins


def _arrays(model, kw, dins, names=None):
    arrays, analytic = {}, {}
    for n, p in model.named_parameters():
        if names is None or n in names:
            arrays[n], analytic[n] = p.data, p.grad.copy()
    for k in FLOAT_INPUTS:
        if dins.get(k) is not None and (names is None or k in names):
            arrays[k], analytic[k] = kw[k], dins[k]
    return arrays, analytic


@pytest.mark.parametrize("fusion", FUSION_METHODS)
def test_whole_model_directional_every_flag_combination(fusion):
    """Loss gradient along a random direction of every parameter and float input, all 64 flag sets × this fusion."""
    for i, flags in enumerate(FLAG_GRID):
        model = tiny_model(seed=i, fusion=fusion, **flags)
        kw, labels, aux = tiny_inputs(model, seed=100 + i, no_image_rows=(2,))
        kw = _double(model, kw)
        model.eval()
        f, dins = _analytic_loss(model, kw, labels, aux)
        arrays, analytic = _arrays(model, kw, dins)
        err = directional_check(f, arrays, analytic, rng=np.random.default_rng(i), tol=1e-6)
        assert err <= 1e-6, (fusion, flags, err)


@pytest.mark.parametrize("fusion", FUSION_METHODS)
def test_emissions_directional_random_upstream(fusion):
    """Σ R ⊙ main + Σ R_aux ⊙ aux with random R, R_aux, in training mode (dropout replayed), two flag sets."""
    for flags in (dict(), dict(aug="gate", merge="bert", aux_mix=True, aux_loss=False)):
        model = tiny_model(seed=3, fusion=fusion, **flags)
        kw, _, _ = tiny_inputs(model, seed=4)
        kw = _double(model, kw)
        model.train()
        rng = np.random.default_rng(5)
        B, T = kw["input_ids"].shape
        # Padded positions' emissions are never read (CRF mask); their upstream is 0, because the word
        # embedding's padding row, which only they use, gets no gradient by design (padding_idx = 0).
        real = kw["input_mask"][:, :, None]
        r_main = rng.standard_normal((B, T, 13)) * real
        r_aux = rng.standard_normal((B, T, 7)) * real
        gen = _gen(model)
        state = gen.bit_generator.state

        def f():
            gen.bit_generator.state = state
            e, ea = model.emissions(**kw)
            return float((e * r_main).sum() + (ea * r_aux).sum())

        model.zero_grad()
        f()
        dins = model._backward_emissions(r_main, r_aux, input_grads=True)
        arrays, analytic = _arrays(model, kw, dins)
        assert directional_check(f, arrays, analytic, rng=rng, tol=1e-6) <= 1e-6


#: One small tensor (or input) per branch of the default model, checked entry by entry.
BRANCHES = {
    "bert": ["bert.embeddings.LayerNorm.bias", "bert.encoder.layer.0.attention.self.query.bias"],
    "augmentation": ["augment.maug_linear.bias", "aug"],
    "aux text": ["self_attention.layer.0.output.dense.bias", "aux_classifier.bias", "aux_crf.transitions"],
    "main text": ["self_attention_v2.layer.0.attention.self.query.bias"],
    "image path 1": ["vismap2text.bias", "img2img_attention.layer.0.attention.self.value.bias",
                     "txt2img_attention.layer.0.attention.self.query.bias", "image"],
    "image path 2": ["vismap2text_v2.bias", "img2txt_attention.layer.0.attention.self.query.bias",
                     "txt2txt_attention.layer.0.output.LayerNorm.weight"],
    "object path 1": ["obj2obj_attention.layer.0.intermediate.dense.bias",
                      "txt2obj_attention.layer.0.attention.self.value.bias"],
    "object path 2": ["obj2obj_attention_v2.layer.0.attention.output.dense.bias",
                      "obj2txt_attention.layer.0.attention.self.value.bias",
                      "txt2obj_attention_v2.layer.0.attention.self.query.bias"],
    "fusion": ["fusion.fus1_bias", "fusion.fus2_bias", "fusion.fus3_linear.bias"],
    "merge and CRF": ["fusion_bias", "classifier.bias", "crf.start_transitions", "crf.transitions"],
}


@pytest.mark.parametrize("branch", list(BRANCHES))
def test_per_branch_entrywise(branch):
    model = spread_weights(tiny_model(seed=7), seed=7)
    kw, labels, aux = tiny_inputs(model, seed=8)
    kw = _double(model, kw)
    model.eval()
    f, dins = _analytic_loss(model, kw, labels, aux)
    arrays, analytic = _arrays(model, kw, dins, names=set(BRANCHES[branch]))
    assert set(arrays) == set(BRANCHES[branch])
    errors = check_grads(f, arrays, analytic, tol=1e-6)
    assert max(errors.values()) <= 1e-6


def test_object_rows_get_gradient_only_where_indexed():
    model = tiny_model(seed=9)
    kw, labels, aux = tiny_inputs(model, seed=10)
    model.eval()
    model.zero_grad()
    model.loss(**kw, labels=labels, aux_labels=aux)
    model.backward()
    g = model.object_embeddings.weight.grad
    used = np.unique(kw["objects"])
    assert 0 in used                                          # the "no object" row is trained
    unused = np.setdiff1d(np.arange(g.shape[0]), used)
    assert np.all(g[unused] == 0) and np.all(np.abs(g[used]).sum(1) > 0)


def test_unread_paths_get_no_gradient():
    """grid_only reads only the image paths: the object encoders keep zero gradients, like torch's None."""
    model = tiny_model(seed=11, fusion="grid_only")
    kw, labels, aux = tiny_inputs(model, seed=12)
    model.eval()
    model.zero_grad()
    model.loss(**kw, labels=labels, aux_labels=aux)
    model.backward()
    grads = {n: float(np.abs(p.grad).sum()) for n, p in model.named_parameters()}
    for prefix in ("obj2obj_attention.", "obj2obj_attention_v2.", "txt2obj_attention.", "obj2txt_attention.",
                   "txt2obj_attention_v2.", "object_embeddings."):
        assert all(v == 0 for n, v in grads.items() if n.startswith(prefix)), prefix
    assert grads["txt2img_attention.layer.0.attention.self.key.weight"] > 0
    assert grads["txt2txt_attention.layer.0.attention.self.key.weight"] > 0


def test_aux_branch_without_aux_loss_gets_no_gradient():
    model = tiny_model(seed=13, aux_loss=False)
    kw, labels, aux = tiny_inputs(model, seed=14)
    model.eval()
    model.zero_grad()
    model.loss(**kw, labels=labels, aux_labels=None)
    model.backward()
    for n, p in model.named_parameters():
        if n.startswith(("self_attention.", "aux_classifier.", "aux_crf.")):
            assert np.all(p.grad == 0), n
    assert np.abs(model.self_attention_v2.layer[0].attention.self.query.weight.grad).sum() > 0


# ------------------------------------------------------------------------------ properties
def _emissions(model, kw):
    e, ea = model.emissions(**kw)
    return np.asarray(e), np.asarray(ea)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), extra=st.integers(1, 3), fusion=st.sampled_from(FUSION_METHODS))
def test_padding_tokens_never_change_real_positions(seed, extra, fusion):
    model = tiny_model(seed=seed % 7, fusion=fusion).eval()
    kw, labels, aux = tiny_inputs(model, seed=seed)
    e, ea = _emissions(model, kw)
    loss = float(model.loss(**kw, labels=labels, aux_labels=aux))
    rng = np.random.default_rng(seed)
    B, T = kw["input_ids"].shape
    pad = dict(kw)
    pad["input_ids"] = np.concatenate([kw["input_ids"], rng.integers(0, 30, (B, extra))], 1)  # junk ids …
    pad["input_mask"] = np.concatenate([kw["input_mask"], np.zeros((B, extra), np.int64)], 1)  # … masked
    pad["aug"] = np.concatenate([kw["aug"], rng.standard_normal((B, extra, kw["aug"].shape[2])).astype(np.float32)], 1)
    pad["char_ids"] = np.concatenate([kw["char_ids"], np.zeros((B, extra, kw["char_ids"].shape[2]), np.int64)], 1)
    e2, ea2 = _emissions(model, pad)
    m = kw["input_mask"].astype(bool)
    np.testing.assert_allclose(e2[:, :T][m], e[m], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ea2[:, :T][m], ea[m], rtol=1e-4, atol=1e-5)
    lab2 = np.concatenate([labels, np.zeros((B, extra), np.int64)], 1)
    aux2 = np.concatenate([aux, np.zeros((B, extra), np.int64)], 1)
    assert float(model.loss(**pad, labels=lab2, aux_labels=aux2)) == pytest.approx(loss, rel=1e-5, abs=1e-5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fusion=st.sampled_from(FUSION_METHODS))
def test_masked_regions_and_empty_slots_never_change_outputs(seed, fusion):
    model = tiny_model(seed=seed % 5, fusion=fusion).eval()
    kw, _, _ = tiny_inputs(model, seed=seed)
    rng = np.random.default_rng(seed)
    B, R = kw["region_mask"].shape
    rmask = rng.random((B, R)) < 0.6
    rmask[:, 0] = True                                         # at least one real region per image
    kw["region_mask"] = rmask
    e, ea = _emissions(model, kw)
    other = dict(kw)
    img = kw["image"].reshape(B, kw["image"].shape[1], R).copy()
    img[~np.repeat(rmask[:, None, :], img.shape[1], axis=1)] = rng.standard_normal(int((~rmask).sum()) * img.shape[1])
    other["image"] = img.reshape(kw["image"].shape).astype(np.float32)   # new pixels in every masked region
    other["objects"] = np.concatenate([kw["objects"], np.zeros((B, 2), np.int64)], 1)  # two more empty slots
    e2, ea2 = _emissions(model, other)
    np.testing.assert_allclose(e2, e, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ea2, ea, rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fusion=st.sampled_from(FUSION_METHODS))
def test_missing_image_equals_every_region_masked(seed, fusion):
    model = tiny_model(seed=seed % 5, fusion=fusion).eval()
    kw, labels, aux = tiny_inputs(model, seed=seed)
    masked = dict(kw, region_mask=np.zeros_like(kw["region_mask"]))
    missing = dict(kw, image=None, region_mask=None)
    for a, b in zip(_emissions(model, masked), _emissions(model, missing)):
        np.testing.assert_array_equal(a, b)
    assert model.decode(**masked) == model.decode(**missing)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_batched_equals_per_example(seed):
    model = tiny_model(seed=seed % 3).eval()
    kw, _, _ = tiny_inputs(model, seed=seed, no_image_rows=(0,))
    e, ea = _emissions(model, kw)
    for b in range(e.shape[0]):
        one = {k: (v[b:b + 1] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        e1, ea1 = _emissions(model, one)
        n = int(kw["input_mask"][b].sum())
        np.testing.assert_allclose(e1[0, :n], e[b, :n], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ea1[0, :n], ea[b, :n], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ missing data: no NaN / inf
@pytest.mark.parametrize("fusion", FUSION_METHODS)
@pytest.mark.parametrize("case", ["no objects", "no image", "neither"])
def test_finite_without_objects_or_image(fusion, case):
    model = tiny_model(seed=15, fusion=fusion)
    kw, labels, aux = tiny_inputs(model, seed=16)
    if case in ("no objects", "neither"):
        kw["objects"] = np.zeros_like(kw["objects"])
    if case in ("no image", "neither"):
        kw["image"], kw["region_mask"] = None, None
    model.train()
    model.zero_grad()
    loss = model.loss(**kw, labels=labels, aux_labels=aux)
    dins = model.backward(input_grads=True)
    assert np.isfinite(loss)
    for n, p in model.named_parameters():
        assert np.isfinite(p.grad).all(), n
    assert dins["image"] is None if kw["image"] is None else (dins["image"] is None) == (fusion == "objects_only")
    assert dins["image"] is None or np.isfinite(dins["image"]).all()
    model.eval()
    for a in _emissions(model, kw):
        assert np.isfinite(a).all()
    paths = model.decode(**kw)
    assert [len(p) for p in paths] == kw["input_mask"].sum(1).tolist()


def test_decode_constrained_and_plain():
    model = tiny_model(seed=17).eval()
    kw, _, _ = tiny_inputs(model, seed=18)
    plain = model.decode(**kw, constrained=False)
    e, _ = model.emissions(**kw)
    assert plain == model.crf.decode(e, kw["input_mask"].astype(bool))
    word_mask = np.zeros(kw["input_mask"].shape, bool)
    for b, n in enumerate(kw["input_mask"].sum(1)):
        word_mask[b, 1:n - 1] = True
    for path in model.decode(**kw, constrained=True, word_mask=word_mask):
        assert path[0] == 11 and path[-1] == 12 and all(1 <= t <= 9 for t in path[1:-1])


# ------------------------------------------------------------------------------ configuration and errors
def test_flags_round_trip_and_defaults():
    assert MGCMTConfig.from_original_flags().original_flags() == dict(
        use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0, alpha_seg=1, seg_task=0)
    cfg = MGCMTConfig()
    assert (cfg.aug, cfg.fusion, cfg.merge, cfg.aux_mix, cfg.aux_loss, cfg.char_cnn) == (
        "add", "gate_concat", "main", False, True, False)
    for flags in (dict(use_char_cnn=0, char_vocab=9), dict(aug_before=0), dict(aug_before=2), dict(aug_gate=0),
                  dict(ffusion_method=7), dict(main_cat=1), dict(alpha_seg=0), dict(seg_task=1)):
        cfg = MGCMTConfig.from_original_flags(**flags)
        back = cfg.original_flags()
        for k, v in flags.items():
            if k in back:
                assert back[k] == v, (k, back)
    assert MGCMTConfig.from_original_flags(aug_before=2).aug == "none"
    assert MGCMTConfig.from_original_flags(aug_before=1, aug_gate=0).aug == "gate"
    assert MGCMTConfig.from_original_flags(use_char_cnn=0, char_vocab=9).char_cnn


@pytest.mark.parametrize("flags, match", [
    (dict(ffusion_method=9), "0..8|0–8|ffusion"), (dict(aug_gate=2), "aug_gate"), (dict(main_cat=2), "main_cat"),
    (dict(seg_task=True), "integer"), (dict(alpha_seg="1"), "integer")])
def test_bad_original_flags(flags, match):
    with pytest.raises(ValueError, match=match):
        MGCMTConfig.from_original_flags(**flags)


def test_trans_matrix_is_spec_3_4():
    t = trans_matrix(np.float64)
    assert t.shape == (7, 13)
    np.testing.assert_allclose(t.sum(1), 1.0)
    assert t[2, [2, 4, 6, 8]].tolist() == [0.25] * 4 and t[3, [3, 5, 7, 9]].tolist() == [0.25] * 4
    assert t[0, 0] == t[1, 1] == t[4, 10] == t[5, 11] == t[6, 12] == 1.0
    assert np.count_nonzero(t) == 1 + 1 + 4 + 4 + 1 + 1 + 1


@pytest.mark.parametrize("change, match", [
    (lambda kw: kw.update(input_ids=kw["input_ids"].astype(np.float32)), "input_ids"),
    (lambda kw: kw.update(input_mask=kw["input_mask"][:, :-1]), "input_mask"),
    (lambda kw: kw.update(aug=None), "aug"),
    (lambda kw: kw.update(aug=kw["aug"][..., :-1]), "aug"),
    (lambda kw: kw.update(image=kw["image"][:, :-1]), "image"),
    (lambda kw: kw.update(image=kw["image"].astype(np.float64)), "image"),
    (lambda kw: kw.update(region_mask=kw["region_mask"][:, :-1]), "region_mask"),
    (lambda kw: kw.update(objects=kw["objects"].astype(np.float32)), "objects"),
    (lambda kw: kw.update(trans_matrix=np.zeros((13, 7), np.float32)), "trans_matrix"),
])
def test_bad_inputs_name_the_input(change, match):
    model = tiny_model(seed=19).eval()
    kw, _, _ = tiny_inputs(model, seed=20)
    change(kw)
    with pytest.raises(ValueError, match=match):
        model.emissions(**kw)


def test_backward_without_loss_raises():
    model = tiny_model(seed=21)
    with pytest.raises(RuntimeError, match="pending loss"):
        model.backward()
    kw, labels, aux = tiny_inputs(model, seed=22)
    model.loss(**kw, labels=labels, aux_labels=aux)
    model.backward()
    with pytest.raises(RuntimeError):
        model.backward()


def test_attention_and_gates_are_real_probabilities():
    model = tiny_model(seed=23).eval()
    kw, _, _ = tiny_inputs(model, seed=24, no_objects_rows=(1,), no_image_rows=(2,))
    model.emissions(**kw)
    B, T = kw["input_ids"].shape
    h, R, O = TINY["heads"], TINY["R"], TINY["O"]
    shapes = {"txt2img": (B, h, T, R), "img2txt": (B, h, R, T), "txt2txt": (B, h, T, R), "txt2obj": (B, h, T, O),
              "obj2txt": (B, h, O, T), "txt2obj_v2": (B, h, T, O), "img2img": (B, h, R, R),
              "img2img_v2": (B, h, R, R), "obj2obj": (B, h, O, O), "obj2obj_v2": (B, h, O, O),
              "self_aux": (B, h, T, T), "self_main": (B, h, T, T)}
    assert set(model.attention) == set(shapes)
    for name, shape in shapes.items():
        p = np.asarray(model.attention[name])
        assert p.shape == shape, name
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    obj = np.asarray(model.attention["txt2obj"])
    real = kw["objects"][0] != 0
    assert np.all(obj[0][..., ~real] < 1e-3)                   # row 0 has objects: empty slots get ~0
    np.testing.assert_allclose(obj[1], 1.0 / O, rtol=1e-5)     # row 1 has none: uniform over null copies
    np.testing.assert_allclose(np.asarray(model.attention["txt2img"])[2], 1.0 / R, rtol=1e-5)  # no image
    assert set(model.gates) >= {"image", "object"}
    for g in model.gates.values():
        assert np.all((np.asarray(g) > 0) & (np.asarray(g) < 1))


def test_float32_outputs_and_grads():
    model = tiny_model(seed=25)
    kw, labels, aux = tiny_inputs(model, seed=26)
    e, ea = model.emissions(**kw)
    assert e.dtype == ea.dtype == np.float32
    loss = model.loss(**kw, labels=labels, aux_labels=aux)
    assert loss.dtype == np.float32
    model.backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_input_gradients_only_on_request():
    """Training skips the image-feature gradient (a constant input); asking for it gives the same parameter grads."""
    model = tiny_model(seed=27).eval()
    kw, labels, aux = tiny_inputs(model, seed=28)
    grads = []
    for want in (False, True):
        model.zero_grad()
        model.loss(**kw, labels=labels, aux_labels=aux)
        dins = model.backward(input_grads=want)
        assert (dins["image"] is not None) == want and (dins["aug"] is not None) == want
        grads.append({n: p.grad.copy() for n, p in model.named_parameters()})
    for n in grads[0]:
        np.testing.assert_array_equal(grads[0][n], grads[1][n], err_msg=n)
