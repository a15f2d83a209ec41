"""Training, evaluating and predicting with the cross-modal model (--model mgcmt) through the CLI and the API.

A tiny random BERT (tests.test_train), the embedded toy tweets, and a fake ``features`` folder
(random (49, 512) grids, as a ResNet-18 would give) so each run takes seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from minimner.atomic import write_json_atomic
from minimner.data.conll import read_conll
from minimner.data.toy import write_toy_dataset
from minimner.train import TrainConfig, load_run, run_collator, run_source, train
from tests.test_train import make_tiny_bert


def _quiet(*a):
    pass


def fake_features(data, out, skip=(), arch="resnet18", seed=0):
    """A `features`-style folder: features.json + <split>/<id>.npy (49, C) for every image but ``skip``."""
    from minimner.cli.features import read_image_ids
    from minimner.data.multimodal import feature_channels

    rng = np.random.default_rng(seed)
    C = feature_channels(arch)
    write_json_atomic(out / "features.json", {"format_version": 1, "arch": arch, "size": 224, "dtype": "float32"})
    for split in ("train", "valid", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for image_id in read_image_ids(data / f"{split}.txt"):
            if image_id not in skip:
                np.save(out / split / f"{image_id}.npy", rng.random((49, C)).astype(np.float32))
    return out


def make_tiny_multimodal(root, n_train: int, n_valid: int, n_test: int) -> dict:
    """Toy tweets, fake (49, 512) features (the first train image left out) and an objects file under root."""
    data = write_toy_dataset(root / "data", n_train=n_train, n_valid=n_valid, n_test=n_test)
    first_train = read_conll(data / "train.txt")[0].image_id
    feats = fake_features(data, root / "features", skip={first_train})
    objects = root / "objects.json"
    ids = [s.image_id for split in ("train", "valid", "test") for s in read_conll(data / f"{split}.txt")]
    write_json_atomic(objects, {f"{i}.jpg": (["person", "car"] if k % 3 else []) for k, i in enumerate(ids)})
    return {"bert": make_tiny_bert(root / "bert"), "data": data, "features": feats, "objects": objects}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_multimodal(tmp_path_factory.mktemp("tiny_mgcmt"), n_train=24, n_valid=8, n_test=8)


def _cfg(tiny, out, **kw):
    base = dict(data_dir=str(tiny["data"]), out=str(out), bert=str(tiny["bert"]), epochs=2, batch_size=8,
                eval_batch_size=8, lr=1e-3, seed=3, model="mgcmt", aug="none")
    base.update(kw)
    return TrainConfig(**base)


def test_images_missing_run_trains_and_loads(tiny, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(tiny, out), progress=False, log=_quiet)
    assert summary["epochs_run"] == 2 and np.isfinite(summary["best_dev_f1"])
    info = json.loads((out / "run.json").read_text())
    assert info["mgcmt_config"]["fusion"] == "gate_concat" and info["config"]["features"] is None
    assert info["original_flags"] == dict(use_char_cnn=1, aug_before=2, aug_gate=1, ffusion_method=2, main_cat=0,
                                          alpha_seg=1, seg_task=0)
    model, tok, info = load_run(out)
    assert type(model).__name__ == "MGCMT" and not model.training
    assert run_source(info, "test").features is None


def test_the_runs_dropout_reaches_mgcmt(tiny, tmp_path):
    """--dropout is MGCMT's dropout on S too (it used to be read by the text-only tagger alone)."""
    out = tmp_path / "drop"
    train(_cfg(tiny, out, dropout=0.3, max_steps=1, epochs=1), progress=False, log=_quiet)
    assert json.loads((out / "run.json").read_text())["mgcmt_config"]["dropout"] == 0.3
    model, _, _ = load_run(out)
    assert model.dropout.p == 0.3
    same = tmp_path / "same"
    train(_cfg(tiny, same, mgcmt={"dropout": 0.2}, max_steps=1, epochs=1), progress=False, log=_quiet)
    assert json.loads((same / "run.json").read_text())["mgcmt_config"]["dropout"] == 0.2
    with pytest.raises(ValueError, match="two dropouts"):
        train(_cfg(tiny, tmp_path / "both", dropout=0.3, mgcmt={"dropout": 0.2}), progress=False, log=_quiet)


def test_resumed_mgcmt_run_reaches_the_same_weights(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full"
    kw = dict(features=str(tiny["features"]), objects=str(tiny["objects"]), mgcmt={"char_cnn": True})
    train(_cfg(tiny, full, **kw), progress=False, log=_quiet)
    from minimner.models import mgcmt

    part = tmp_path / "part"
    calls = {"n": 0}
    original = mgcmt.MGCMT.backward

    def crashing_backward(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(mgcmt.MGCMT, "backward", crashing_backward)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny, part, **kw), progress=False, log=_quiet)
    monkeypatch.setattr(mgcmt.MGCMT, "backward", original)
    train(_cfg(tiny, part, **kw), resume=True, progress=False, log=_quiet)
    from minimner.checkpoint import load_checkpoint

    a, _, ma = load_checkpoint(full / "last.npz")
    b, _, mb = load_checkpoint(part / "last.npz")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (part / "chars.json").is_file()
    assert ma["train_state"]["history"][-1]["dev_f1"] == mb["train_state"]["history"][-1]["dev_f1"]


def test_cli_train_evaluate_predict_with_features(tiny, tmp_path, capsys):
    from minimner.cli import main

    out = tmp_path / "cli"
    assert main(["train", "--data", str(tiny["data"]), "--out", str(out), "--bert", str(tiny["bert"]),
                 "--model", "mgcmt", "--aug", "none", "--features", str(tiny["features"]), "--objects",
                 str(tiny["objects"]), "--fusion", "grid_vs_objects", "--no-aux-loss", "--epochs", "1",
                 "--batch-size", "8", "--no-progress"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["mgcmt_config"]["fusion"] == "grid_vs_objects" and info["mgcmt_config"]["aux_loss"] is False
    assert info["mgcmt_config"]["image_dim"] == 512
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out), "--split", "test", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["default"]["micro"]["f1"] <= 1.0
    pred = tmp_path / "pred.txt"
    assert main(["predict", "--run", str(out), "--input", str(tiny["data"] / "test.txt"), "--output", str(pred),
                 "--no-progress"]) == 0
    assert len(read_conll(pred)) == len(read_conll(tiny["data"] / "test.txt"))


def test_missing_image_file_equals_missing_image_in_data(tiny, tmp_path):
    """A tweet whose image has no features gets the same prediction as the same tweet without an IMGID."""
    out = tmp_path / "same"
    train(_cfg(tiny, out, features=str(tiny["features"]), epochs=1), progress=False, log=_quiet)
    model, tok, info = load_run(out)
    from minimner.data.batching import encode_sentences
    from minimner.data.conll import Sentence

    s = read_conll(tiny["data"] / "train.txt")[0]               # its image has no .npy (the fixture skipped it)
    no_file = Sentence(words=s.words, tags=s.tags, image_id=s.image_id)
    no_id = Sentence(words=s.words, tags=s.tags, image_id=None)
    inputs = run_collator(info, "train")
    b1, b2 = (inputs(encode_sentences(tok, [x])) for x in (no_file, no_id))
    e1 = model.batch_emissions(b1)
    e2 = model.batch_emissions(b2)
    for a, b in zip(e1, e2):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mgcmt_options_are_checked(tiny, tmp_path, capsys):
    from minimner.cli import main

    assert main(["train", "--data", str(tiny["data"]), "--out", str(tmp_path / "x"), "--features", "F"]) == 2
    assert "options of --model mgcmt" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="features.json"):
        train(_cfg(tiny, tmp_path / "y", features=str(tmp_path / "nowhere")), progress=False, log=_quiet)
    with pytest.raises(ValueError, match="come from the run"):
        train(_cfg(tiny, tmp_path / "z", mgcmt={"aug_dim": 3}), progress=False, log=_quiet)
    with pytest.raises(ValueError, match="text-crf reads no images"):
        train(_cfg(tiny, tmp_path / "w", model="text-crf", features=str(tiny["features"])), progress=False,
              log=_quiet)


def test_explain_and_visualise_an_mgcmt_run(tiny, tmp_path, capsys):
    from minimner.cli import main

    out = tmp_path / "run"
    train(_cfg(tiny, out, features=str(tiny["features"]), objects=str(tiny["objects"]), epochs=1), progress=False,
          log=_quiet)
    png = tmp_path / "explain.png"
    assert main(["explain", "--run", str(out), "--tweet", "Obama visits Paris today", "--objects", "person,car",
                 "--word", "Paris", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "Obama/" in printed and png.stat().st_size > 10_000
    for side in ("crf", "training"):                             # the other figures of one tweet
        assert (tmp_path / f"explain_{side}.png").stat().st_size > 10_000, side
    assert not (tmp_path / "explain_augment.png").exists()         # an aug="none" run has no neighbours to draw
    assert main(["explain", "--run", str(out), "--tweet", "Obama", "--word", "Paris"]) == 2
    assert "not a word of the tweet" in capsys.readouterr().err
    assert main(["explain", "--run", str(out), "--tweet", "x", "--image", str(tmp_path / "none.jpg")]) == 2
    crf = tmp_path / "crf.png"
    assert main(["visualise", "--run", str(out), "--input", str(tiny["data"] / "test.txt"), "--index", "1",
                 "--what", "crf", "--out", str(crf)]) == 0
    assert crf.stat().st_size > 10_000


def test_explain_augment_figure_draws_the_tables_neighbours():
    from minimner.cli.explain import _augment_figure

    class Table:                                                   # the one method the figure reads
        def describe(self, word):
            if word != "Paris":
                raise KeyError(word)
            return {"neighbours": [{"word": "London", "weight": 0.7, "similarity": 0.9},
                                   {"word": "Rome", "weight": 0.3, "similarity": 0.8}]}

    ax = _augment_figure(Table(), "Paris").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["London", "Rome"]
    assert [round(p.get_width(), 6) for p in ax.patches] == [0.7, 0.3]
    ax = _augment_figure(Table(), "Varno").axes[0]                 # unknown word: a note, no bars
    assert not ax.patches and "not in the lexicon" in ax.texts[0].get_text()


def test_explanation_follows_the_model(tiny, tmp_path):
    """The per-word maps are the model's own attention rows at the words' first pieces."""
    from minimner.explain import SingleImageSource, explain_tweet

    out = tmp_path / "run"
    train(_cfg(tiny, out, features=str(tiny["features"]), epochs=1), progress=False, log=_quiet)
    model, tok, info = load_run(out)
    grid = np.random.default_rng(0).random((49, 512)).astype(np.float32)
    ex = explain_tweet(model, tok, ["Obama", "visits", "Paris"], SingleImageSource(grid, objects=["person"]))
    h = model.bert.config.num_attention_heads
    assert ex.txt2img.shape == (h, 3, 49) and ex.txt2obj.shape == (h, 3, 5) and ex.has_image
    np.testing.assert_allclose(ex.txt2img.sum(-1), 1.0, rtol=1e-5)
    assert ex.objects.tolist() == [1, 0, 0, 0, 0] and set(ex.gates) == {"image", "object"}
    none = explain_tweet(model, tok, ["Obama", "visits", "Paris"], None)
    np.testing.assert_allclose(none.txt2img, 1 / 49, rtol=1e-5)        # no image: uniform over the null grid
    assert not none.has_image
    # the CRF figure's marginals come from the model's own emissions, its path is the printed tags
    from minimner.data.batching import encode_sentences
    from minimner.data.conll import Sentence
    from minimner.data.inputs import Collator

    batch = Collator(source=SingleImageSource(grid, objects=["person"]))(
        encode_sentences(tok, [Sentence(words=["Obama", "visits", "Paris"])]))
    main = model.batch_emissions(batch)
    np.testing.assert_array_equal(ex.emissions, np.asarray(main)[0])
    assert ex.pieces[0] == "[CLS]" and ex.pieces[-1] == "[SEP]" and ex.word_mask.sum() == 3
    fig = ex.crf_figure(model.crf)
    marg = fig.axes[1].images[0].get_array()                       # (n, K), see plot_crf
    assert marg.shape == (len(ex.pieces), model.crf.num_tags)
    from minimner.models.mgcmt import MAIN_TAGS

    path = [int(round(x)) for x in fig.axes[1].lines[0].get_xdata()]
    assert [MAIN_TAGS[path[j]] for j in np.flatnonzero(ex.word_mask)] == ex.tags
