"""``python -m minimner predict`` with pictures, on a demo-style multimodal run at tiny size.

The synthetic tweets of :mod:`minimner.data.synthetic` (real on-disk layout: CoNLL with IMGID, a
folder of JPEGs, an object file), features from a random ResNet-18 at a 64-pixel crop (2×2 grid)
through the real ``features`` command, a tiny BERT, one epoch of MGCMT.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from minimner.cli import main
from minimner import files
from minimner.data.conll import read_conll
from minimner.data.synthetic import generate
from minimner.models import resnet as R
from tests.test_train import make_tiny_bert

SIZE = 64


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_mm")
    data = root / "data"
    generate(data, seed=0, sizes={"train": 24, "valid": 12, "test": 16})
    weights = root / "resnet18.npz"
    model = R.build(18, rng=np.random.default_rng(0))
    files.write_npz_atomic(weights, {k: np.asarray(v) for k, v in model.state_dict().items()})
    feats = root / "features"
    assert main(["features", "--images", str(data / "images"), "--ids", str(data), "--arch", "resnet18",
                 "--weights", str(weights), "--out", str(feats), "--size", str(SIZE), "--no-progress"]) == 0
    run = root / "run"
    assert main(["train", "--model", "mgcmt", "--data", str(data), "--out", str(run), "--bert",
                 str(make_tiny_bert(root / "bert")), "--aug", "none", "--features", str(feats), "--objects",
                 str(data / "objects.json"), "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    return {"root": root, "data": data, "images": data / "images", "features": feats, "run": run,
            "weights": weights}


def _predict(mm, *args):
    return main(["predict", "--run", str(mm["run"]), "--no-progress", *map(str, args)])


def _plain(sentences, path, with_ids=True):
    lines = [(f"IMGID:{s.image_id}\n" if with_ids and s.image_id else "") + " ".join(s.words) + "\n"
             for s in sentences]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_images_on_the_fly_equal_the_precomputed_features(mm, tmp_path, capsys):
    test = mm["data"] / "test.txt"
    assert _predict(mm, "--input", test, "--images", mm["images"], "--output", tmp_path / "files.txt") == 0
    err = capsys.readouterr().err
    assert _predict(mm, "--input", test, "--output", tmp_path / "folder.txt") == 0   # the run's features folder
    files, folder = read_conll(tmp_path / "files.txt"), read_conll(tmp_path / "folder.txt")
    gold = read_conll(test)
    assert [s.words for s in files] == [s.words for s in gold] and [s.image_id for s in files] == [
        s.image_id for s in gold]
    assert [s.tags for s in files] == [s.tags for s in folder]
    # every tweet's status: a picture used, or a synthetic "no image" tweet whose file does not exist
    for s in gold:
        line = next(ln for ln in err.splitlines() if ln.startswith(f"{test}:{s.line_no}: image {s.image_id}:"))
        if (mm["images"] / f"{s.image_id}.jpg").is_file():
            assert line.endswith(f"used ({mm['images'] / (s.image_id + '.jpg')})"), line
        else:
            assert f"missing (no file {mm['images'] / (s.image_id + '.jpg')})" in line, line
    n_used = sum((mm["images"] / f"{s.image_id}.jpg").is_file() for s in gold)
    assert f"tagged {len(gold)} tweets; images: {n_used} used, {len(gold) - n_used} missing" in err
    assert n_used > 0


def test_pictures_reach_the_model(mm, tmp_path):
    """The grids computed from the files change the emissions; with no picture they equal a tweet without IMGID."""
    from minimner.cli.predict import _pictures
    from minimner.data.batching import encode_sentences
    from minimner.data.inputs import Collator
    from minimner.data.conll import Sentence
    from minimner.train import load_run

    model, tok, info = load_run(mm["run"])

    class Args:
        run, images, features, objects, resnet = str(mm["run"]), str(mm["images"]), None, None, None

    pictures = _pictures(Args, info, model)
    s = next(s for s in read_conll(mm["data"] / "test.txt") if (mm["images"] / f"{s.image_id}.jpg").is_file())
    with_pic = Sentence(s.words, None, s.image_id, s.line_no)
    without = Sentence(s.words, None, None, s.line_no)
    nowhere = Sentence(s.words, None, "no-such-picture", s.line_no)
    emissions = []
    for sent in (with_pic, without, nowhere):
        source, [status] = pictures.for_chunk([sent])
        batch = Collator(source=source)(encode_sentences(tok, [sent]))
        emissions.append(np.asarray(model.batch_emissions(batch)))
    assert status == (False, f"no file {mm['images'] / 'no-such-picture.jpg'}")
    assert np.abs(emissions[0] - emissions[1]).max() > 1e-4          # the picture changes the scores
    np.testing.assert_array_equal(emissions[1], emissions[2])         # a missing file is "no image", nothing else


def test_valid_tweets_get_their_pictures_from_the_features_folder(mm, tmp_path, capsys):
    valid = mm["data"] / "valid.txt"
    assert _predict(mm, "--input", valid, "--output", tmp_path / "pred.txt") == 0
    err = capsys.readouterr().err
    gold = read_conll(valid)
    used = [s for s in gold if (mm["features"] / "valid" / f"{s.image_id}.npy").is_file()]
    assert used and len(used) < len(gold) + 1
    for s in used:
        assert f"image {s.image_id}: used ({mm['features'] / 'valid' / (s.image_id + '.npy')})" in err
    # the same tags as `evaluate --split valid`, which reads the valid sub-folder
    assert main(["evaluate", "--run", str(mm["run"]), "--split", "valid", "--no-progress"]) == 0
    assert [s.tags for s in read_conll(tmp_path / "pred.txt")] == [
        s.tags for s in read_conll(mm["run"] / "pred-valid.txt")]
    images = json.loads((mm["run"] / "eval-valid.json").read_text())["images"]
    missing = len(gold) - len(used)
    assert images == {"used": len(used), "missing": {"not in the features folder": missing} if missing else {}}
    assert f"images: {len(used)} of {len(gold)} tweets read their picture" in capsys.readouterr().err


def test_unknown_image_ids_and_plain_text_are_reported(mm, tmp_path, capsys):
    sents = read_conll(mm["data"] / "test.txt")[:3]
    plain = tmp_path / "plain.txt"
    plain.write_text(f"IMGID:nosuch\n{' '.join(sents[0].words)}\n{' '.join(sents[1].words)}\n", encoding="utf-8")
    assert _predict(mm, "--input", plain) == 0
    err = capsys.readouterr().err
    assert f"{plain}:2: image nosuch: missing (nosuch is not in the features folder {mm['features']})" in err
    assert f"{plain}:3: image None: missing (no IMGID)" in err
    assert "images: 0 used, 2 missing" in err and "Every image is missing" in err
    # an IMGID naming a file, relative to --images, and an unreadable picture
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "broken.jpg").write_bytes(b"not an image at all")
    src = mm["images"] / f"{sents[2].image_id}.jpg"
    (tmp_path / "pics" / "mine.jpg").write_bytes(src.read_bytes())
    plain.write_text(f"IMGID:mine.jpg\n{' '.join(sents[0].words)}\nIMGID:broken\n{' '.join(sents[1].words)}\n",
                     encoding="utf-8")
    assert _predict(mm, "--input", plain, "--images", tmp_path / "pics") == 0
    err = capsys.readouterr().err
    assert f"image mine.jpg: used ({tmp_path / 'pics' / 'mine.jpg'})" in err
    assert f"image broken: missing (unreadable {tmp_path / 'pics' / 'broken.jpg'}: " in err


def test_output_streams_and_an_interrupted_run_keeps_what_is_done(mm, tmp_path, monkeypatch, capsys):
    import minimner.train

    real = minimner.train.predict_sentences
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(minimner.train, "predict_sentences", interrupted)
    out = tmp_path / "pred.txt"
    assert _predict(mm, "--input", mm["data"] / "test.txt", "--batch-size", "4", "--output", out) == 130
    assert not out.exists()
    done = read_conll(tmp_path / "pred.txt.part")
    assert [s.words for s in done] == [s.words for s in read_conll(mm["data"] / "test.txt")[:8]]
    assert "interrupted after 8 tweets" in capsys.readouterr().err


def test_bad_tweets_are_skipped_or_stop_the_run(mm, tmp_path, capsys):
    good = read_conll(mm["data"] / "test.txt")[:3]
    text = "".join(f"IMGID:{s.image_id}\n" + "".join(f"{w}\tO\n" for w in s.words) + "\n" for s in good)
    blocks = text.split("\n\n")
    blocks[1] = blocks[1].replace("\tO\n", " no tab here\n", 1)    # the second tweet's first token line
    path = tmp_path / "in.txt"
    path.write_text("\n\n".join(blocks), encoding="utf-8")
    bad_line = path.read_text().splitlines().index(f"{good[1].words[0]} no tab here") + 1
    out = tmp_path / "out.txt"
    assert _predict(mm, "--input", path, "--output", out) == 1                # default: skip, exit 1
    err = capsys.readouterr().err
    assert f"{path}:{bad_line}: skipped: expected 'token<TAB>tag', found no tab" in err
    assert "skipped 1 bad ones" in err
    assert [s.words for s in read_conll(out)] == [good[0].words, good[2].words]
    assert _predict(mm, "--input", path, "--output", tmp_path / "stop.txt", "--on-error", "stop") == 2
    err = capsys.readouterr().err
    assert f"{path}:{bad_line}: expected 'token<TAB>tag'" in err and "stop.txt.part" in err
    assert [s.words for s in read_conll(tmp_path / "stop.txt.part")] == [good[0].words]


def test_picture_options_are_checked(mm, tmp_path, capsys):
    test = mm["data"] / "test.txt"
    assert _predict(mm, "--input", test, "--images", mm["images"], "--features", mm["features"]) == 2
    assert "not both" in capsys.readouterr().err
    assert _predict(mm, "--input", test, "--images", tmp_path / "nowhere") == 2
    assert "--images: folder not found" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    files.write_npz_atomic(other, {k: np.asarray(v) for k, v in R.build(18, rng=np.random.default_rng(9))
                                .state_dict().items()})
    assert _predict(mm, "--input", test, "--images", mm["images"], "--resnet", other) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_explain_takes_a_picture_file(mm, tmp_path, capsys):
    s = next(s for s in read_conll(mm["data"] / "test.txt") if (mm["images"] / f"{s.image_id}.jpg").is_file())
    png = tmp_path / "x.png"
    assert main(["explain", "--run", str(mm["run"]), "--tweet", " ".join(s.words), "--image",
                 str(mm["images"] / f"{s.image_id}.jpg"), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"image {mm['images'] / (s.image_id + '.jpg')}: used (resnet18 features, 4 regions)" in out
    assert png.stat().st_size > 10_000
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    assert main(["explain", "--run", str(mm["run"]), "--tweet", " ".join(s.words), "--image",
                 str(tmp_path / "bad.jpg"), "--out", str(png)]) == 0
    assert "missing (unreadable" in capsys.readouterr().out


def test_the_readme_own_tweet_commands_work(mm, tmp_path, monkeypatch, capsys):
    """The README's "Your own tweet and picture" commands, on this run and a picture of the synthetic set."""
    import shlex
    import subprocess

    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Your own tweet and picture", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.startswith("    ")]
    assert [ln.split()[0] for ln in lines] == ["printf", "python", "python"], lines
    pics = tmp_path / "pics"
    pics.mkdir()
    picture = next(p for p in sorted(mm["images"].glob("test_*.jpg")))
    (pics / "mine.jpg").write_bytes(picture.read_bytes())
    monkeypatch.chdir(tmp_path)
    subprocess.run(lines[0], shell=True, check=True, cwd=tmp_path)
    for line in lines[1:]:
        argv = shlex.split(line.replace("DEMO/runs/multimodal", str(mm["run"])).replace("PICS", str(pics)))
        assert main(argv[3:]) == 0, line
    captured = capsys.readouterr()
    assert f"mine.txt:2: image mine.jpg: used ({pics / 'mine.jpg'})" in captured.err
    assert "cannot/" in captured.out and (tmp_path / "varno.png").is_file()
    assert (tmp_path / "varno_crf.png").is_file() and (tmp_path / "varno_training.png").is_file()


def test_explain_prints_the_counterfactuals_the_dataset_path_gives(mm, tmp_path, capsys):
    """explain's counterfactual tags (pictures read from the files) equal the demo's (the features folder)."""
    from minimner.cli.demo import _counterfactuals
    from minimner.train import load_run, run_collator

    objects = json.loads((mm["data"] / "objects.json").read_text())
    sents = [s for s in read_conll(mm["data"] / "test.txt") if (mm["images"] / f"{s.image_id}.jpg").is_file()]
    s = next(s for s in sents if objects.get(f"{s.image_id}.jpg"))
    other = next(o for o in sents if o.image_id != s.image_id)
    assert main(["explain", "--run", str(mm["run"]), "--tweet", " ".join(s.words),
                 "--image", str(mm["images"] / f"{s.image_id}.jpg"), "--objects", ",".join(objects[f"{s.image_id}.jpg"]),
                 "--other-image", str(mm["images"] / f"{other.image_id}.jpg"), "--out", str(tmp_path / "x.png")]) == 0
    printed = capsys.readouterr().out.splitlines()
    model, tok, info = load_run(mm["run"])
    want = _counterfactuals(model, tok, s, run_collator(info, "test"), other.image_id)
    assert list(want) == ["MGCMT", "without the picture", "without the objects", "with another tweet's picture"]
    tagged = {label: " ".join(f"{w}/{t}" for w, t in zip(s.words, tags)) for label, tags in want.items()}
    assert tagged["MGCMT"] in printed
    for label, cli_label in (("without the picture", "without the picture (the learned 'no image' input)"),
                             ("without the objects", "without the objects"),
                             ("with another tweet's picture",
                              f"with another picture ({mm['images'] / (other.image_id + '.jpg')})")):
        assert f"{cli_label}: {tagged[label]}" in printed, (label, printed)
    assert main(["explain", "--run", str(mm["run"]), "--tweet", "x", "--image", str(mm["images"] / f"{s.image_id}.jpg"),
                 "--other-image", str(tmp_path / "nowhere.jpg")]) == 2
    assert "--other-image: file not found" in capsys.readouterr().err
