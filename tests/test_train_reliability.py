"""Training refuses what would silently go wrong: NaN/inf, bad numbers, empty splits, unmatched images.

Tiny random BERT (tests.test_train) and the toy tweets, so each run takes seconds. Every
error is asserted word for word: it is what a user reads.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from minimner.checkpoint import load_checkpoint
from minimner.cli import main
from minimner.data.conll import read_conll
from minimner.data.toy import write_toy_dataset
from minimner.finite import NonFiniteError
from minimner.train import TrainConfig, load_run, train
from tests.test_train import make_tiny_bert
from tests.test_train_mgcmt import fake_features


def _quiet(*a):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliable")
    data = write_toy_dataset(root / "data", n_train=24, n_valid=8, n_test=8)
    return {"root": root, "bert": make_tiny_bert(root / "bert"), "data": data}


def _cfg(tiny, out, **kw):
    base = dict(data_dir=str(tiny["data"]), out=str(out), bert=str(tiny["bert"]), epochs=2, batch_size=8,
                eval_batch_size=8, lr=1e-3, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _train_args(tiny, out, *extra, data=None):
    return ["train", "--data", str(data or tiny["data"]), "--out", str(out), "--bert", str(tiny["bert"]),
            "--epochs", "1", "--batch-size", "8", "--no-progress", *extra]


def _all_checkpoints_finite(out):
    """Every checkpoint in ``out`` loads (load_checkpoint refuses a NaN/inf model or optimiser tensor)."""
    for path in sorted(out.glob("*.npz")):
        load_checkpoint(path)


# --------------------------------------------------------------------------- numeric options
@pytest.mark.parametrize("flag,value,message", [
    ("--lr", "nan", "--lr must be a finite number in (0, 1], got nan"),
    ("--lr", "inf", "--lr must be a finite number in (0, 1], got inf"),
    ("--lr", "1e3", "--lr must be a finite number in (0, 1], got 1000.0"),
    ("--lr", "0", "--lr must be a finite number in (0, 1], got 0.0"),
    ("--weight-decay", "-1", "--weight-decay must be a finite number in [0, 1], got -1.0"),
    ("--warmup", "1.5", "--warmup must be a fraction in [0, 1], got 1.5"),
    ("--max-grad-norm", "nan", "--max-grad-norm must be a finite number ≥ 0 (0 disables), got nan"),
    ("--epochs", "0", "--epochs must be an integer ≥ 1, got 0"),
    ("--batch-size", "0", "--batch-size must be an integer ≥ 1, got 0"),
    ("--seed", "-1", "--seed must be an integer ≥ 0, got -1"),
    ("--max-steps", "-2", "--max-steps must be an integer ≥ 0, got -2"),
])
def test_numeric_options_are_refused(tiny, tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    assert main(_train_args(tiny, out, flag, value)) == 2
    assert capsys.readouterr().err == f"minimner train: error: {message}\n"
    assert not out.exists()


def test_dropout_is_checked():
    with pytest.raises(ValueError) as e:
        TrainConfig(data_dir="d", out="o", dropout=1.0).validate_numbers()
    assert str(e.value) == "dropout must be a probability in [0, 1), got 1.0"


# --------------------------------------------------------------------------- empty data
@pytest.mark.parametrize("empty", ["train.txt", "valid.txt"])
def test_an_empty_split_is_refused(tiny, tmp_path, capsys, empty):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    (data / empty).write_text("\n\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(_train_args(tiny, out, data=data)) == 2
    assert capsys.readouterr().err == (f"minimner train: error: {data / empty}: no tweets; training needs a "
                                       "non-empty train file and a non-empty dev file to select the checkpoint on\n")
    assert not out.exists()                                             # nothing written, no untrained best.npz


# --------------------------------------------------------------------------- divergence
def _batch_lines(sentences):
    where = [s.where for s in sentences[:5]]
    return ", ".join(where) + (", …" if len(sentences) > 5 else "")


def test_a_nan_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    from minimner.models import text_crf

    real = text_crf.TextCRFTagger.batch_loss
    seen = []

    def batch_loss(self, batch, **kw):               # the 5th step (epoch 2, step 2 of 3) turns NaN
        loss = real(self, batch, **kw)
        seen.append(batch.sentences)
        return loss * np.float32("nan") if len(seen) == 5 else loss

    monkeypatch.setattr(text_crf.TextCRFTagger, "batch_loss", batch_loss)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as e:
        train(_cfg(tiny, out), progress=False, log=_quiet)
    assert str(e.value) == (f"training diverged: the loss is nan on the tweets at {_batch_lines(seen[4])}; step 5 "
                            f"was not applied and the run stopped; {out / 'last.npz'} keeps the state after epoch 1")
    _all_checkpoints_finite(out)
    _, _, meta = load_checkpoint(out / "last.npz")
    assert meta["train_state"]["epoch"] == 1 and meta["train_state"]["step"] == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1


@pytest.mark.parametrize("clip", [1.0, 0.0])
def test_a_nan_gradient_is_named_and_not_applied(tiny, tmp_path, monkeypatch, clip):
    from minimner.models import text_crf

    real = text_crf.TextCRFTagger.backward
    calls = []                                        # (model, every weight before the step)
    name = "bert.encoder.layer.1.output.dense.weight"

    def backward(self):
        real(self)
        calls.append((self, {k: p.data.copy() for k, p in self.named_parameters()}))
        if len(calls) == 2:
            dict(self.named_parameters())[name].grad[0, :3] = np.inf

    monkeypatch.setattr(text_crf.TextCRFTagger, "backward", backward)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as e:
        train(_cfg(tiny, out, max_grad_norm=clip), progress=False, log=_quiet)
    message = str(e.value)
    assert message.startswith(f"training diverged: the gradient of {name!r} holds 3 NaN/inf values (tweets at ")
    assert message.endswith("); step 2 was not applied and the run stopped; no checkpoint was written (the first "
                            "epoch did not finish)")
    assert not list(out.glob("*.npz"))                                  # nothing saved after the NaN
    model, before = calls[-1]
    for k, p in model.named_parameters():                               # the step was not applied
        np.testing.assert_array_equal(p.data, before[k], err_msg=k)


def test_a_nan_bert_weight_is_refused_before_training(tiny, tmp_path):
    from safetensors.numpy import load_file, save_file

    bert = tmp_path / "bert"
    shutil.copytree(tiny["bert"], bert)
    state = load_file(str(bert / "model.safetensors"))
    state["encoder.layer.0.attention.self.key.bias"][1] = np.nan
    save_file(state, str(bert / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        train(_cfg(tiny, tmp_path / "run", bert=str(bert)), progress=False, log=_quiet)
    assert str(e.value) == f"{bert / 'model.safetensors'}: tensor 'encoder.layer.0.attention.self.key.bias' holds " \
                           "1 NaN/inf value"


# --------------------------------------------------------------------------- run folder
def test_metrics_are_strict_json_and_resume_removes_stale_temporaries(tiny, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny, out, epochs=1), progress=False, log=_quiet)
    stale = [out / ".last.npz.tmp-999999999-k2j3h4g5", out / ".best.npz.tmp-a1b2c3d4",
             out / "bert" / ".config.json.tmp-999999999-z0y9x8w7"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")                           # what kill -9 leaves behind
    train(_cfg(tiny, out, epochs=2), resume=True, progress=False, log=_quiet)
    assert not any(p.exists() for p in stale)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    records = [json.loads(line, parse_constant=refuse) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) for r in records)


def test_a_corrupt_run_json_is_named(tiny, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny, out, epochs=1), progress=False, log=_quiet)
    (out / "run.json").write_text("{\n  \"config\": {,\n")
    message = f"{out / 'run.json'}:2: not valid JSON (Expecting property name enclosed in double quotes, column 14)"
    with pytest.raises(ValueError) as e:
        train(_cfg(tiny, out, epochs=2), resume=True, progress=False, log=_quiet)
    assert str(e.value) == message
    with pytest.raises(ValueError) as e:
        load_run(out)
    assert str(e.value) == message


def test_an_out_folder_that_cannot_be_created_is_one_line(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(_train_args(tiny, blocker / "run")) == 2
    err = capsys.readouterr().err
    assert err == f"minimner train: error: {blocker / 'run' / 'bert'}: Not a directory\n"


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tiny, tmp_path, capsys, monkeypatch):
    from minimner import atomic

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    out = tmp_path / "run"
    assert main(_train_args(tiny, out)) == 2
    assert capsys.readouterr().err == (f"minimner train: error: {out / 'bert' / 'tokenizer.json'}: No space left "
                                       "on device\n")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


# --------------------------------------------------------------------------- the cross-modal inputs
@pytest.fixture(scope="module")
def mm(tiny):
    root = tiny["root"] / "mm"
    feats = fake_features(tiny["data"], root / "features")
    settings = json.loads((feats / "features.json").read_text())
    settings["weights_sha256"] = "a" * 64                                 # as `features` records it
    (feats / "features.json").write_text(json.dumps(settings))
    ids = [s.image_id for split in ("train", "valid", "test") for s in read_conll(tiny["data"] / f"{split}.txt")]
    objects = root / "objects.json"
    objects.write_text(json.dumps({f"{i}.jpg": ["person"] for i in ids}))
    return {"features": feats, "objects": objects}


def _mm_cfg(tiny, mm, out, **kw):
    return _cfg(tiny, out, **{"model": "mgcmt", "aug": "none", "features": str(mm["features"]),
                               "objects": str(mm["objects"]), **kw})


def _copy_features(mm, tmp_path):
    dst = tmp_path / "features"
    shutil.copytree(mm["features"], dst)
    return dst


def test_a_nan_in_one_feature_file_names_that_file(tiny, mm, tmp_path, capsys):
    feats = _copy_features(mm, tmp_path)
    bad = sorted((feats / "train").iterdir())[3]
    g = np.load(bad)
    g[7, 7] = np.nan
    np.save(bad, g)
    out = tmp_path / "run"
    assert main(_train_args(tiny, out, "--model", "mgcmt", "--aug", "none", "--features", str(feats))) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"minimner train: error: {bad}: feature grid holds 1 NaN/inf value; delete it and rerun "
        "`python -m minimner features` to recompute it")
    _all_checkpoints_finite(out)


def test_coverage_is_logged_and_recorded(tiny, mm, tmp_path):
    feats = _copy_features(mm, tmp_path)
    first = read_conll(tiny["data"] / "train.txt")[0].image_id
    (feats / "train" / f"{first}.npy").unlink()
    out = tmp_path / "run"
    logged = []
    train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=1), progress=False, log=logged.append)
    assert "train.txt: 24 tweets, 24 with an IMGID, 23 with image features, 24 with objects" in logged
    assert (f"warning: 1 of the 24 tweets of train.txt have no image features in {feats}; the model sees them as "
            "missing") in logged
    coverage = json.loads((out / "run.json").read_text())["coverage"]
    assert coverage == {name: {"tweets": n, "with_image_id": n, "with_features": n - (name == "train.txt"),
                               "with_objects": n} for name, n in (("train.txt", 24), ("valid.txt", 8),
                                                                   ("test.txt", 8))}


def test_objects_matching_no_image_are_an_error(tiny, mm, tmp_path):
    objects = tmp_path / "objects.pt"                                    # JSON whatever the suffix
    objects.write_text(json.dumps({"not_an_image.jpg": ["car"]}))
    out = tmp_path / "run"
    with pytest.raises(ValueError) as e:
        train(_mm_cfg(tiny, mm, out, objects=str(objects)), progress=False, log=_quiet)
    assert str(e.value) == (f"{objects}: none of the 24 tweets of train.txt has objects (a wrong folder or file, "
                            "or keys that match no image id?)")
    assert not out.exists()                                             # refused before anything was written


def test_a_features_folder_without_files_is_an_error(tiny, mm, tmp_path):
    feats = tmp_path / "features"
    feats.mkdir()
    shutil.copy(mm["features"] / "features.json", feats)
    with pytest.raises(ValueError) as e:
        train(_mm_cfg(tiny, mm, tmp_path / "run", features=str(feats)), progress=False, log=_quiet)
    assert str(e.value) == (f"{feats}: none of the 24 tweets of train.txt has image features (a wrong folder or "
                            "file, or keys that match no image id?)")


def _set_setting(feats, **kw):
    path = feats / "features.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), **kw)))


def test_features_from_other_weights_are_refused_unless_accepted(tiny, mm, tmp_path, capsys):
    feats = _copy_features(mm, tmp_path)
    out = tmp_path / "run"
    train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=1), progress=False, log=_quiet)
    _set_setting(feats, weights_sha256="b" * 64)                          # re-extracted with other weights
    message = (f"{feats / 'features.json'}: these features were extracted with other settings than the ones "
               f"{out / 'run.json'} was trained with (weights_sha256 {'a' * 64!r} -> {'b' * 64!r})")
    with pytest.raises(ValueError) as e:
        train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=2), resume=True, progress=False, log=_quiet)
    assert str(e.value) == (f"{message}; re-extract them with the run's weights, or pass --accept-new-features to "
                            "use them anyway")
    assert main(["evaluate", "--run", str(out), "--split", "test", "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"minimner evaluate: error: {message.replace(str(out / 'run.json'), str(out))}"
                                       "; re-extract them with the run's weights, or pass --accept-new-features to "
                                       "use them anyway\n")
    assert main(["evaluate", "--run", str(out), "--split", "test", "--no-progress", "--accept-new-features"]) == 0
    predict = ["predict", "--run", str(out), "--input", str(tiny["data"] / "test.txt"), "--output",
               str(tmp_path / "pred.txt"), "--no-progress"]
    capsys.readouterr()
    assert main(predict) == 2
    assert "pass --accept-new-features to use them anyway" in capsys.readouterr().err
    assert main(predict + ["--accept-new-features"]) == 0
    assert f"warning: {message.replace(str(out / 'run.json'), str(out))}" in capsys.readouterr().err
    logged = []
    train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=2), resume=True, progress=False, log=logged.append,
          accept_new_features=True)
    assert f"warning: {message}; used anyway (--accept-new-features)" in logged


def test_a_resume_with_features_of_another_architecture_names_the_features(tiny, mm, tmp_path):
    feats = _copy_features(mm, tmp_path)
    out = tmp_path / "run"
    train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=1), progress=False, log=_quiet)
    _set_setting(feats, arch="resnet50")
    with pytest.raises(ValueError) as e:
        train(_mm_cfg(tiny, mm, out, features=str(feats), epochs=2), resume=True, progress=False, log=_quiet,
              accept_new_features=True)
    assert str(e.value) == (f"{feats / 'features.json'}: these features were extracted with other settings than the "
                            f"ones {out / 'run.json'} was trained with (arch 'resnet18' -> 'resnet50'); re-extract "
                            "them with the run's settings")
