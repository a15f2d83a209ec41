"""The authors' MSCMT layout (docs/parameters.md) ↔ MGCMT: every key, every transpose (none), round trips, errors, the CLI."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from minimner.models import mgcmt_state as keys
from minimner.convert.mgcmt import convert_file, load_mgcmt, manifest_path
from minimner.models.mgcmt import MGCMT, MGCMTConfig
from tests.models.mgcmt_helpers import ONE_FLAG_AWAY, TINY, tiny_inputs, tiny_model

SIZES = dict(hidden=TINY["H"], intermediate=2 * TINY["H"], num_layers=2, vocab_size=TINY["vocab"], max_positions=32,
             type_vocab=2, char_vocab=TINY["char_vocab"], image_dim=TINY["image_dim"], aug_dim=TINY["aug_dim"])
BERT = {"num_attention_heads": TINY["heads"]}
RAW = ("main_aux_w", "main_aux_bias", "seq_aux_w", "seq_aux_bias", "img_aux_w", "img_aux_bias", "obj_aux_w",
       "obj_aux_bias")


def test_full_layout_matches_spec_section_5():
    layout = keys.original_layout(768, 3072, 12, 28996, char_vocab=15)
    assert len(layout) == 509
    assert sum(int(np.prod(s)) for s in layout.values()) == 222_453_661 + 128 * 15
    used = keys.used_keys(layout, aug="add", fusion_method=2, char_cnn=False)
    unused = [k for k in layout if k not in used]
    assert len(unused) == 93 and sum(int(np.prod(layout[k])) for k in unused) == 21_577_223
    assert list(layout)[:3] == ["aug_w1", "aug_w2", "aug_bias"]           # free parameters first …
    assert list(layout)[-1] == "obj_aux_crf.transitions"                   # … then modules in registration order
    assert layout["fusion_w"] == (1536, 768) and layout["seq_w"] == (768, 768)
    small = keys.original_layout(384, 1536, 6, 30522)                   # the original at MiniLM size:
    assert small["gmf.text_linear.weight"] == (768, 768)                   # GMF stays 768 wide
    assert small["gfg.weight"] == (384, 768)


def _flags(plain: dict) -> dict:
    """Original flags of a plain-flag dict (sizes are inferred from the tensors)."""
    return MGCMTConfig(char_vocab=TINY["char_vocab"], **plain).original_flags()


def random_original(seed=0, nan_raw=True, plain=None):
    """A random original state dict at the tiny sizes, with NaN in the never-initialised tensors.

    GMF / FiltrationGate are 768 wide as in the original, or H wide for minimner's generalised
    ``gmf_filtration`` fusion.
    """
    rng = np.random.default_rng(seed)
    gmf = SIZES["hidden"] if (plain or {}).get("fusion") == "gmf_filtration" else 768
    layout = keys.original_layout(**SIZES, gmf_hidden=gmf)
    sd = {k: rng.standard_normal(s).astype(np.float32) * 0.3 for k, s in layout.items()}
    for k in sd:
        if k.endswith("LayerNorm.weight"):
            sd[k] = 1 + sd[k] / 3
    if nan_raw:
        for k in RAW:
            sd[k][...] = np.nan
    return sd


def _outputs(model, kw, labels, aux):
    e, ea = model.emissions(**kw)
    loss = model.loss(**kw, labels=labels, aux_labels=aux if model.config.aux_loss else None)
    model._pop_cache()
    return np.asarray(e), np.asarray(ea), float(loss)


#: Paths each fusion variant reads, as the encoders feeding them (a key of an unread path changes nothing).
UNREAD = {"grid_vs_objects": ("txt2txt_attention.", "img2txt_attention.", "img2img_attention_v2.",
                              "vismap2text_v2.", "obj2txt_attention.", "txt2obj_attention_v2.",
                              "obj2obj_attention_v2."),
          "objects_only": ("txt2img_attention.", "img2img_attention.", "vismap2text.", "txt2txt_attention.",
                           "img2txt_attention.", "img2img_attention_v2.", "vismap2text_v2."),
          "grid_only": ("obj2obj_attention.", "txt2obj_attention.", "obj2txt_attention.", "txt2obj_attention_v2.",
                        "obj2obj_attention_v2.", "object_embeddings.")}


@pytest.mark.parametrize("plain", ONE_FLAG_AWAY, ids=[str(p) or "default" for p in ONE_FLAG_AWAY])
def test_every_used_key_lands_and_round_trips(plain):
    sd = random_original(seed=1, plain=plain)
    model = MGCMT.from_original(sd, bert_config=BERT, **_flags(plain))
    used = model.used_original_keys()
    state = model.state_dict()
    assert len(state) == len(used)                                        # every parameter came from a key
    for k in used:                                                         # … its own, untransposed
        np.testing.assert_array_equal(np.asarray(state[keys.minimner_name(k)]), sd[k], err_msg=k)
    assert set(model.load_report["unused"]) == set(sd) - set(used)
    assert set(model.load_report["nonfinite_unused"]) == set(RAW)
    back = model.to_original()
    assert list(back) == list(sd)                                          # file order, every key
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)             # NaN == NaN for the raw tensors
    grads = model.to_original(grads=True)
    assert list(grads) == used


@pytest.mark.parametrize("plain", [dict(), dict(fusion="grid_only"), dict(aux_mix=True, aux_loss=False),
                                   dict(char_cnn=True, aug="embed")], ids=str)
def test_perturbing_any_used_tensor_changes_the_outputs(plain):
    """Each used tensor on its own moves the emissions, the aux emissions or the loss.

    Two exact exceptions, both checked: an attention layer's ``key.bias`` adds q·b_k to every
    key's score of a query alike, which the softmax cancels; and the encoders of a path the
    fusion variant does not read are computed but change nothing (docs/model.md §6).
    """
    sd = random_original(seed=2, plain=plain)
    model = MGCMT.from_original(sd, bert_config=BERT, **_flags(plain))
    kw, labels, aux = tiny_inputs(model, seed=3)
    base = _outputs(model, kw, labels, aux)
    rng = np.random.default_rng(4)
    params = dict(model.named_parameters())
    for k in model.used_original_keys():
        p = params[keys.minimner_name(k)]
        old = p.data.copy()
        p.data += rng.standard_normal(p.data.shape).astype(np.float32)
        out = _outputs(model, kw, labels, aux)
        p.data[...] = old
        # A real dependence moves some output by ≫ 1e-3 under an N(0, 1) perturbation; an exact
        # invariance only by float32 rounding (≲ 1e-5 here).
        diff = max(np.abs(out[0] - base[0]).max(), np.abs(out[1] - base[1]).max(), abs(out[2] - base[2]))
        changed = diff > 1e-3
        invariant = k.endswith("attention.self.key.bias") or k.startswith(UNREAD.get(plain.get("fusion"), ()))
        assert changed != invariant, k


def test_from_original_errors_name_the_key():
    sd = random_original(seed=5)
    missing = dict(sd)
    del missing["txt2obj_attention_v2.layer.0.attention.self.query.weight"]
    with pytest.raises(KeyError, match="txt2obj_attention_v2.layer.0.attention.self.query.weight"):
        MGCMT.from_original(missing, bert_config=BERT)
    bad = dict(sd, fusion_w=sd["fusion_w"].T.copy())
    with pytest.raises(ValueError, match="fusion_w.*shape"):
        MGCMT.from_original(bad, bert_config=BERT)
    extra = dict(sd, **{"classifier.extra": np.zeros(3, np.float32)})
    with pytest.raises(KeyError, match="classifier.extra"):
        MGCMT.from_original(extra, bert_config=BERT)
    nan = dict(sd, fus1_bias=np.full_like(sd["fus1_bias"], np.nan))
    with pytest.raises(ValueError, match="fus1_bias.*NaN"):
        MGCMT.from_original(nan, bert_config=BERT)
    MGCMT.from_original(nan, bert_config=BERT, ffusion_method=0)           # unused there: tolerated
    with pytest.raises(ValueError, match="unknown original flag"):
        MGCMT.from_original(sd, bert_config=BERT, fusion_method=2)
    ints = dict(sd, classifier_bias=None)
    ints.pop("classifier_bias")
    ints["classifier.bias"] = sd["classifier.bias"].astype(np.int64)
    with pytest.raises(ValueError, match="classifier.bias.*dtype"):
        MGCMT.from_original(ints, bert_config=BERT)


def test_model_without_original_writes_zeros_for_unused_keys():
    model = tiny_model(seed=6)
    out = model.to_original()
    assert np.all(out["gate.weight"] == 0) and np.all(out["bert.pooler.dense.weight"] == 0)
    again = MGCMT.from_original(out, bert_config=BERT)
    for name, arr in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(again.state_dict()[name]), np.asarray(arr), err_msg=name)


# ------------------------------------------------------------------------------ the file converter
def _write_torch(sd, path):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)


@pytest.mark.parity
def test_convert_cli_round_trip(tmp_path, capsys):
    from minimner.cli import main

    sd = random_original(seed=7)
    src = tmp_path / "pytorch_model.bin"
    _write_torch(sd, src)
    cfg = tmp_path / "config.json"
    cfg.write_text('{"num_attention_heads": %d, "hidden_size": 16, "vocab_size": 30, "num_hidden_layers": 2, '
                   '"intermediate_size": 32}' % TINY["heads"])
    dst = tmp_path / "mgcmt.npz"
    assert main(["convert", "mgcmt", str(src), str(dst), "--config", str(cfg), "--ffusion-method", "7"]) == 0
    assert "kept aside unused" in capsys.readouterr().out
    assert manifest_path(dst).is_file()
    model = load_mgcmt(dst)
    assert model.config.fusion == "objects_only" and model.bert.config.num_attention_heads == TINY["heads"]
    back = model.to_original()
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    ref = MGCMT.from_original(sd, bert_config=BERT, ffusion_method=7)
    kw, labels, aux = tiny_inputs(model, seed=8)
    for a, b in zip(model.emissions(**kw), ref.emissions(**kw)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parity
def test_convert_rejects_truncated_malformed_and_wrong_files(tmp_path):
    sd = random_original(seed=9)
    src = tmp_path / "pytorch_model.bin"
    _write_torch(sd, src)
    data = src.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.bin"):
        convert_file(cut, tmp_path / "a.npz", bert_config=None)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.bin"):
        convert_file(junk, tmp_path / "b.npz")
    short = dict(sd)
    del short["crf.transitions"]
    s2 = tmp_path / "short.bin"
    _write_torch(short, s2)
    with pytest.raises(KeyError, match="short.bin.*crf.transitions"):
        convert_file(s2, tmp_path / "c.npz")
    wrong = dict(sd, **{"vismap2text.weight": sd["vismap2text.weight"][:, :-1].copy()})
    s3 = tmp_path / "wrong.bin"
    _write_torch(wrong, s3)
    with pytest.raises(ValueError, match="wrong.bin.*'vismap2text_v2.weight' has shape .*C_img=7 from 'vismap2text.weight'"):
        convert_file(s3, tmp_path / "d.npz")
    with pytest.raises(ValueError, match="must end in .npz"):
        convert_file(src, tmp_path / "e.bin")
    assert not any(tmp_path.glob("[abcd].npz"))                            # nothing half-written


def test_load_mgcmt_refuses_other_checkpoints(tmp_path):
    from minimner.checkpoint import save_checkpoint

    p = tmp_path / "other.npz"
    save_checkpoint(p, {"w": np.zeros(2, np.float32)}, {"model": "text-crf"})
    with pytest.raises(ValueError, match="not an MGCMT file"):
        load_mgcmt(p)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.writestr("x.npy", b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        load_mgcmt(tmp_path / "bad.npz")
