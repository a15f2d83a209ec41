"""Semantic augmentation in the BERT-CRF tagger and its training pipeline (docs/augmentation.md §2-3).

Gradient checks use a tiny random BERT and a hand-made tokenizer; the training
tests use the tiny BERT of :mod:`tests.test_train` and a tiny generated lexicon,
so every run takes seconds and nothing is written outside ``tmp_path``.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from minimner.checkpoint import load_checkpoint
from minimner.cli import main
from minimner.data.batching import augment_input, encode_sentences
from minimner.data.inputs import Collator
from minimner.data.conll import Sentence, read_conll
from minimner.data.labels import NUM_TAGS
from minimner.data.toy import write_toy_dataset
from minimner.gradcheck import directional_check
from minimner.lexicon.augment import AugmentationTable, build_table, collect_vocabulary
from minimner.lexicon.io import Lexicon, save_npz
from minimner.models.bert import BertConfig, BertModel
from minimner.models.text_crf import TextCRFTagger
from minimner.nn.crf import CRF
from minimner.train import TrainConfig, evaluate_examples, load_run, run_text_collator, train
from tests.test_train import make_tiny_bert

TINY = dict(vocab_size=23, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16, type_vocab_size=2, initializer_range=0.5, pad_token_id=0,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
E = 5  # augmentation vector size of the tiny tables


# ----------------------------------------------------------------------------- tiny fixtures
class _PieceTokenizer:
    """Words of more than 4 characters get two pieces; ids 3..22 from the characters; [CLS] 1, [SEP] 2."""

    def encode_words(self, words):
        ids, first = [1], []
        for w in words:
            first.append(len(ids))
            code = 3 + sum(map(ord, w)) % 20
            ids += [code, 3 + (code * 7) % 20] if len(w) > 4 else [code]
        return SimpleNamespace(input_ids=ids + [2], first_piece=first)


SENTENCES = [Sentence(["Obama", "visits", "Paris", "today"], ["B-PER", "O", "B-LOC", "O"]),
             Sentence(["NASA", "in", "Texas"], ["B-ORG", "O", "B-LOC"]),
             Sentence(["zzqx", "Berlin"], ["O", "B-LOC"])]


def _lexicon(words, dim=E, seed=0):
    g = np.random.default_rng(seed)
    return Lexicon(words, g.standard_normal((len(words), dim)).astype(np.float32), source="tiny.txt")


def _tiny_table():
    """Table for every word of SENTENCES but 'Berlin' (so it is looked up as out-of-table); 'zzqx' is OOV."""
    lex = _lexicon(["obama", "paris", "visits", "today", "nasa", "in", "texas", "city", "news", "the"])
    vocab = sorted({w for s in SENTENCES for w in s.words} - {"Berlin"})
    return build_table(vocab, lex, k=2)


def _tagger(mode, seed=1):
    bert = BertModel(BertConfig.from_dict(TINY), rng=np.random.default_rng(0))
    return TextCRFTagger(bert, num_tags=NUM_TAGS, dropout=0.0, rng=np.random.default_rng(seed), aug_mode=mode,
                         aug_dim=None if mode == "none" else E)


def _collator(mode):
    """The data side of a tagger of ``mode``: the tiny table unless the mode is ``none``."""
    return Collator(aug_table=None if mode == "none" else _tiny_table())


def _batch(mode="none"):
    return _collator(mode)(encode_sentences(_PieceTokenizer(), SENTENCES))


# ----------------------------------------------------------------------------- the augmentation input
def test_augment_input_puts_table_rows_at_first_pieces_only():
    table, batch = _tiny_table(), _batch()
    a = augment_input(batch, table)                                          # (B, T, E)
    B, T = batch.input_ids.shape
    assert a.shape == (B, T, E) and a.dtype == np.float32
    expected = np.zeros((B, T, E), dtype=np.float32)
    for b, s in enumerate(SENTENCES):
        for j, w in enumerate(s.words):
            expected[b, batch.first_piece[b, j]] = table.vector(w)
    np.testing.assert_array_equal(a, expected)
    # [CLS], [SEP], later pieces and padding are zero; out-of-table words get the seeded OOV vector.
    assert not a[:, 0].any() and not a[0, 2].any() and not a[2, -1].any()
    berlin = a[2, batch.first_piece[2, 1]]
    assert berlin.any() and np.array_equal(berlin, table.vector("Berlin"))


@pytest.mark.parametrize("mode", ["add", "embed"])
def test_numpy_and_cupy_agree(mode, xp_name):
    """The input is built on the batch's backend, and the fused tagger runs forward and backward there."""
    from minimner import backend

    ref_model = _tagger(mode).to("numpy").eval()   # on the host whatever the default backend
    examples = encode_sentences(_PieceTokenizer(), SENTENCES)
    ref = ref_model.batch_emissions(_collator(mode)(examples, backend_name="numpy"))
    model = _tagger(mode).eval().to(xp_name)
    batch = _collator(mode)(examples, backend_name=xp_name)
    a = batch.aug
    assert backend.device_of(a) == xp_name and a.dtype == np.float32
    em = model.batch_emissions(batch)
    assert backend.device_of(em) == xp_name and em.dtype == np.float32
    np.testing.assert_allclose(backend.asnumpy(em), ref, rtol=0, atol=1e-5)
    model.batch_loss(batch)
    assert backend.device_of(model.backward()) == xp_name


# ----------------------------------------------------------------------------- gradients (float64)
@pytest.mark.parametrize("mode", ["add", "gate", "embed"])
def test_gradcheck_whole_tagger(mode, rng):
    """Directional check of the CRF loss over every parameter and the augmentation input (train mode, p = 0)."""
    model = _tagger(mode).double().train()
    batch = _batch(mode)
    a = batch.aug.astype(np.float64)                                         # (B, T, E)
    a += 0.1 * rng.standard_normal(a.shape)                                  # non-zero everywhere: every path used
    batch.aug = a
    model.zero_grad()
    loss = model.batch_loss(batch)
    assert loss.dtype == np.float64
    da = model.backward()
    assert da.shape == a.shape and da.dtype == np.float64
    params = dict(model.named_parameters())
    arrays = {n: p.data for n, p in params.items()}
    analytic = {n: p.grad.copy() for n, p in params.items()}
    arrays["aug"], analytic["aug"] = a, da
    aug_names = {"add": ["augment.maug_linear.weight"], "gate": ["augment.aug_w1", "augment.aug_w2"],
                 "embed": ["bert.embeddings.aug_linear.weight"]}[mode]
    for n in aug_names:
        assert np.abs(analytic[n]).max() > 1e-8, n                             # the fusion really is trained
    err = directional_check(lambda: float(model.batch_loss(batch)), arrays, analytic, rng=rng, tol=1e-6)
    assert err < 1e-6


# ----------------------------------------------------------------------------- structure
def test_parameter_names_per_mode():
    bert_keys = [f"bert.{k}" for k in BertModel(BertConfig.from_dict(TINY), rng=np.random.default_rng(0)).state_dict()]
    base = bert_keys + ["classifier.weight", "classifier.bias"] + [f"crf.{k}" for k in CRF(NUM_TAGS).state_dict()]
    none = _tagger("none")
    assert list(none.state_dict()) == base                                   # --aug none: exactly the baseline
    assert none.augment is None and none.bert.embeddings.aug_linear is None
    assert set(_tagger("add").state_dict()) - set(base) == {"augment.maug_linear.weight", "augment.maug_linear.bias"}
    assert set(_tagger("gate").state_dict()) - set(base) == {
        "augment.aug_w1", "augment.aug_w2", "augment.aug_bias", "augment.maug_linear.weight",
        "augment.maug_linear.bias"}
    embed = _tagger("embed")
    assert set(embed.state_dict()) - set(base) == {"bert.embeddings.aug_linear.weight",
                                                    "bert.embeddings.aug_linear.bias"}
    assert embed.state_dict()["bert.embeddings.aug_linear.weight"].shape == (TINY["hidden_size"], E)
    # The fusion is initialised after the CRF: one seed gives the same classifier and CRF in every mode.
    for mode in ("add", "gate", "embed"):
        other = _tagger(mode).state_dict()
        for k in ("classifier.weight", "crf.transitions"):
            np.testing.assert_array_equal(none.state_dict()[k], other[k])


def test_model_errors():
    bert = BertModel(BertConfig.from_dict(TINY), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs aug_dim"):
        TextCRFTagger(bert, aug_mode="add")
    with pytest.raises(ValueError, match="unknown augmentation mode 'concat'"):
        TextCRFTagger(bert, aug_mode="concat", aug_dim=E)
    batch = _batch()
    with pytest.raises(ValueError, match="has no aug_table"):
        TextCRFTagger(bert, aug_mode="add", aug_dim=E).batch_emissions(batch)
    with pytest.raises(ValueError, match="size 5, the model expects 7"):
        TextCRFTagger(bert, aug_mode="gate", aug_dim=7).batch_emissions(_batch("gate"))
    with pytest.raises(ValueError, match="no aug_linear"):
        bert.forward(batch.input_ids, batch.attention_mask, aug=np.zeros((3, 7, E), np.float32))
    embed = _tagger("embed")
    with pytest.raises(ValueError, match="pass the augmentation input"):
        embed.bert.forward(batch.input_ids, batch.attention_mask)
    with pytest.raises(ValueError, match=r"aug must have shape \(B, T, E\)"):
        embed.bert.forward(batch.input_ids, batch.attention_mask, aug=np.zeros((3, 7, E + 1), np.float32))
    with pytest.raises(ValueError, match="already hold aug_linear"):
        embed.bert.embeddings.attach_augment(E)


# ----------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_aug")
    data = write_toy_dataset(root / "data", n_train=24, n_valid=8, n_test=8)
    vocab = collect_vocabulary([data / f"{s}.txt" for s in ("train", "valid", "test")])
    # About half the toy words (lower-cased, so case="auto" finds capitalised ones) plus some extra words.
    words = sorted({w.lower() for w in vocab[::2]} | {"city", "music", "sports", "weather", "zebra"})
    lexicon = root / "lexicon.npz"
    save_npz(lexicon, _lexicon(words, dim=6, seed=4))
    return {"bert": make_tiny_bert(root / "bert"), "data": data, "lexicon": lexicon, "cache": root / "cache"}


def _cfg(tiny, out, **kw):
    base = dict(data_dir=str(tiny["data"]), out=str(out), bert=str(tiny["bert"]), epochs=2, batch_size=8,
                eval_batch_size=8, lr=1e-3, seed=3, lexicon=str(tiny["lexicon"]), aug_cache=str(tiny["cache"]))
    base.update(kw)
    return TrainConfig(**base)


def _quiet(*a):
    return None


def test_resumed_augmented_run_reaches_the_same_weights(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full"
    train(_cfg(tiny, full, aug="gate"), progress=False, log=_quiet)

    from minimner.models import text_crf

    calls = {"n": 0}
    real_backward = text_crf.TextCRFTagger.backward

    def crashing_backward(self):
        calls["n"] += 1
        if calls["n"] == 5:                                                  # in the middle of epoch 2
            raise KeyboardInterrupt
        return real_backward(self)

    part = tmp_path / "part"
    monkeypatch.setattr(text_crf.TextCRFTagger, "backward", crashing_backward)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny, part, aug="gate"), progress=False, log=_quiet)
    monkeypatch.setattr(text_crf.TextCRFTagger, "backward", real_backward)
    train(_cfg(tiny, part, aug="gate", aug_cache=str(tmp_path / "elsewhere")), resume=True, progress=False,
          log=_quiet)

    a, _, ma = load_checkpoint(full / "last.npz")
    b, _, mb = load_checkpoint(part / "last.npz")
    assert a.keys() == b.keys() and "augment.aug_w1" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert ma["train_state"]["history"][-1]["dev_f1"] == mb["train_state"]["history"][-1]["dev_f1"]
    with pytest.raises(ValueError, match="different configuration.*aug"):
        train(_cfg(tiny, part, aug="add"), resume=True, progress=False, log=_quiet)

    # The run folder alone rebuilds the model, its fusion and its table, and reproduces the best dev score.
    info = json.loads((full / "run.json").read_text())
    assert info["config"]["aug"] == "gate" and info["augment"]["mode"] == "gate" and info["augment"]["dim"] == 6
    assert 0 < info["augment"]["in_lexicon"] < info["augment"]["words"]
    model, tok, info = load_run(full)
    inputs = run_text_collator(info)
    assert model.aug_mode == "gate" and inputs.aug_table.dim == 6
    assert inputs.aug_table.words == AugmentationTable.load(full / "augment.npz").words
    dev = read_conll(tiny["data"] / "valid.txt")
    _, scores = evaluate_examples(model, dev, encode_sentences(tok, dev), batch_size=8, progress=False,
                                  collator=inputs)
    _, best_meta = load_checkpoint(full / "best.npz")[1:]
    assert scores["default"]["micro"]["f1"] == best_meta["dev"]["default"]["micro"]["f1"]


def test_embed_run_loads_back(tiny, tmp_path):
    out = tmp_path / "embed"
    train(_cfg(tiny, out, aug="embed", epochs=1, max_steps=2), progress=False, log=_quiet)
    state, _, _ = load_checkpoint(out / "best.npz")
    assert "bert.embeddings.aug_linear.weight" in state and not any(k.startswith("augment.") for k in state)
    model, _, info = load_run(out)
    assert model.bert.embeddings.aug_linear is not None and info["augment"]["mode"] == "embed"
    (out / "augment.npz").unlink()
    with pytest.raises(FileNotFoundError, match="needs its augmentation table"):
        load_run(out)


def test_runs_without_augmentation_settings_still_load_and_resume(tiny, tmp_path):
    """A run folder written before augmentation existed (no aug keys in run.json) is a plain BERT-CRF run."""
    out = tmp_path / "old"
    train(_cfg(tiny, out, aug="none", lexicon=None, epochs=1), progress=False, log=_quiet)
    assert not (out / "augment.npz").exists()
    info = json.loads((out / "run.json").read_text())
    assert info["augment"] == {"mode": "none"}
    del info["augment"]
    for k in [k for k in info["config"] if k.startswith("aug") or k == "lexicon"]:
        del info["config"][k]
    (out / "run.json").write_text(json.dumps(info))
    model, _, _ = load_run(out)
    assert model.aug_mode == "none"
    summary = train(_cfg(tiny, out, aug="none", lexicon=None, epochs=2), resume=True, progress=False, log=_quiet)
    assert summary["epochs_run"] == 2


def test_bad_augmentation_options_are_clear_errors(tiny, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="lexicon file not found: .*missing.npz"):
        train(_cfg(tiny, tmp_path / "a", aug="add", lexicon=str(tmp_path / "missing.npz")), progress=False)
    assert not (tmp_path / "a").exists()                                     # nothing half-written
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        train(_cfg(tiny, tmp_path / "b", aug="add", lexicon=str(bad)), progress=False)
    with pytest.raises(ValueError, match="only used with --aug add"):
        train(_cfg(tiny, tmp_path / "c", aug="none"), progress=False)
    with pytest.raises(ValueError, match="unknown --aug 'concat'"):
        train(_cfg(tiny, tmp_path / "d", aug="concat"), progress=False)
    with pytest.raises(ValueError, match="--aug-k must be a positive integer"):
        train(_cfg(tiny, tmp_path / "e", aug="add", aug_k=0), progress=False)
    # No --lexicon, and the default one neither exists nor can be converted here.
    import minimner.lexicon.glove as glove

    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(glove, "kumo_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="pass --lexicon FILE"):
        train(_cfg(tiny, tmp_path / "f", aug="add", lexicon=None), progress=False)


def test_cli_train_evaluate_predict_with_augmentation(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny["data"]), "--out", str(run), "--bert", str(tiny["bert"]),
                 "--epochs", "1", "--batch-size", "8", "--no-progress", "--aug", "add", "--lexicon",
                 str(tiny["lexicon"]), "--aug-k", "2", "--aug-cache", str(tiny["cache"])]) == 0
    capsys.readouterr()
    info = json.loads((run / "run.json").read_text())
    assert (info["config"]["aug"], info["config"]["aug_k"], info["augment"]["k"]) == ("add", 2, 2)
    assert AugmentationTable.load(run / "augment.npz").k == 2
    assert "augment.maug_linear.weight" in load_checkpoint(run / "best.npz")[0]

    assert main(["evaluate", "--run", str(run), "--split", "test", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["default"]["micro"]["f1"] <= 1.0

    plain = tmp_path / "plain.txt"
    plain.write_text("Elon Musk lands in Zanzibar\n", encoding="utf-8")            # Zanzibar: not in the table
    assert main(["predict", "--run", str(run), "--input", str(plain), "--no-progress"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln]
    assert [ln.split("\t")[0] for ln in lines] == "Elon Musk lands in Zanzibar".split()

    assert main(["train", "--data", str(tiny["data"]), "--out", str(tmp_path / "r2"), "--bert", str(tiny["bert"]),
                 "--aug", "gate", "--lexicon", str(tmp_path / "nope.npz"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "lexicon file not found" in err and "Traceback" not in err
