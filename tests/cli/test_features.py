"""``python -m minimner features``: outputs, missing images, settings guard, and resume after a crash."""
import json

import numpy as np
import pytest
from PIL import Image

from minimner.cli import main
from minimner.cli.features import read_image_ids
from minimner import files
from minimner.models import resnet as R
from minimner.vision.images import load_image

SIZE = 64                                          # 2×2 grid: cheap on CPU, same code path as 224


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    model = R.build(18, rng=np.random.default_rng(0))
    weights = root / "resnet18.npz"
    files.write_npz_atomic(weights, {k: np.asarray(v) for k, v in model.state_dict().items()})
    images, data = root / "images", root / "data"
    images.mkdir()
    data.mkdir()
    r = np.random.default_rng(0)
    train_ids = [f"17_06_{i}" for i in range(7)]
    for i in train_ids + ["900", "901"]:
        a = r.integers(0, 256, (int(r.integers(40, 120)), int(r.integers(40, 120)), 3), dtype=np.uint8)
        Image.fromarray(a, "RGB").save(images / f"{i}.jpg", quality=90)
    (images / "17_06_3.jpg").write_bytes(b"")                                   # empty file
    (images / "17_06_5.jpg").unlink()                                          # missing file
    conll = "".join(f"IMGID:{i}\nRT\tO\n@x\tB-PER\n\n" for i in train_ids + ["17_06_0"])  # a repeated id
    (data / "train.txt").write_text(conll, encoding="utf-8")
    (data / "test.txt").write_text("IMGID:900\nhello\tO\n\nIMGID:901\nworld\tO\n", encoding="utf-8")
    return {"root": root, "weights": weights, "images": images, "data": data, "ids": train_ids, "model": model}


def _args(s, out, *extra):
    return ["features", "--images", str(s["images"]), "--ids", str(s["data"]), "--arch", "resnet18",
            "--weights", str(s["weights"]), "--out", str(out), "--size", str(SIZE), "--batch-size", "2",
            "--no-progress", *extra]


def test_read_image_ids(setup):
    assert read_image_ids(setup["data"] / "train.txt") == setup["ids"]


def test_features_written_and_missing_reported(setup, tmp_path):
    out = tmp_path / "out"
    assert main(_args(setup, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"]
    tr = summary["splits"]["train"]
    assert tr["images"] == 7 and tr["done"] == 5 and tr["written"] == 5
    assert tr["missing"] == {"17_06_3": "empty file (0 bytes)", "17_06_5": "file not found"}
    assert summary["splits"]["test"]["done"] == 2
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        f"{i}.npy" for i in setup["ids"] if i not in ("17_06_3", "17_06_5"))
    assert "17_06_5" in (out / "features.log").read_text()
    settings = json.loads((out / "features.json").read_text())
    assert settings["arch"] == "resnet18" and settings["transforms"]["test"] == "resize + centre crop"
    # a stored grid equals the model applied to the same preprocessed image (region r = 2·row + col)
    g = np.load(out / "test" / "900.npy")
    assert g.shape == (4, 512) and g.dtype == np.float32
    x = load_image(setup["images"] / "900.jpg", size=SIZE).array[None]
    ref = R.ResNet.regions(setup["model"].features(x))[0]
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # the train split used the seeded random crop: same seed, same features
    t = np.load(out / "train" / "17_06_1.npy")
    x = load_image(setup["images"] / "17_06_1.jpg", train=True, seed=0, image_id="17_06_1", size=SIZE).array[None]
    np.testing.assert_allclose(t, R.ResNet.regions(setup["model"].features(x))[0], rtol=1e-4, atol=1e-4)


def test_resume_after_a_crash_redoes_only_the_rest(setup, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    real = R.ResNet.features

    def crashing(self, images):
        calls.append(images.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt                     # Ctrl-C in the middle of the second batch
        return real(self, images)

    monkeypatch.setattr(R.ResNet, "features", crashing)
    assert main(_args(setup, out)) == 130
    done = {p.name: p.read_bytes() for p in (out / "train").iterdir()}
    assert sorted(done) == ["17_06_0.npy", "17_06_1.npy"]                     # the first batch, intact
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]              # no half-written files
    for name in done:
        assert np.load(out / "train" / name).shape == (4, 512)
    assert json.loads((out / "summary.json").read_text())["complete"] is False

    seen = []

    def counting(self, images):
        seen.append(images.shape[0])
        return real(self, images)

    monkeypatch.setattr(R.ResNet, "features", counting)
    assert main(_args(setup, out)) == 0
    assert sum(seen) == 3 + 2                        # train: 5 usable − 2 done; test: 2
    for name, data in done.items():
        assert (out / "train" / name).read_bytes() == data                    # untouched by the rerun
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["splits"]["train"]["already_done"] == 2
    assert summary["splits"]["train"]["done"] == 5 and len(summary["splits"]["train"]["missing"]) == 2
    seen.clear()
    assert main(_args(setup, out)) == 0 and seen == []                       # nothing left to do


def test_float16_and_settings_guard(setup, tmp_path, capsys):
    out = tmp_path / "out16"
    assert main(_args(setup, out, "--dtype", "float16", "--splits", "test")) == 0
    assert np.load(out / "test" / "901.npy").dtype == np.float16
    assert main(_args(setup, out, "--dtype", "float32", "--splits", "test")) == 2
    assert "other settings (dtype)" in capsys.readouterr().err


def test_bad_arguments(setup, tmp_path, capsys):
    args = _args(setup, tmp_path / "o")
    args[args.index("--ids") + 1] = str(tmp_path)
    assert main(args) == 2 and "none of train.txt" in capsys.readouterr().err
    args = _args(setup, tmp_path / "o")
    args[args.index("--weights") + 1] = str(tmp_path / "nope.npz")
    assert main(args) == 2 and "not found" in capsys.readouterr().err


def _data_with(tmp_path, train_text):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_bytes(train_text if isinstance(train_text, bytes) else train_text.encode())
    return data


@pytest.mark.parametrize("image_id,problem", [("../escape", "it contains a path separator"),
                                              ("/tmp/escape", "it is an absolute path")])
def test_an_image_id_outside_the_folders_is_refused(setup, tmp_path, capsys, image_id, problem):
    """``IMGID:../x``: no image read outside --images, nothing written outside (or inside) --out."""
    data = _data_with(tmp_path, f"IMGID:17_06_0\nRT\tO\n\nIMGID:{image_id}\nx\tO\n")
    out = tmp_path / "nest" / "out"
    args = _args(setup, out)
    args[args.index("--ids") + 1] = str(data)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"minimner features: error: {data / 'train.txt'}:4: IMGID {image_id!r} is "
                                       f"not a plain image name ({problem}); an image id names a file inside "
                                       "the images folder\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "train.txt"]


def test_a_non_utf8_ids_file_names_file_and_line(setup, tmp_path, capsys):
    data = _data_with(tmp_path, b"IMGID:1\nRT\tO\n\nIMGID:2\ncaf\xe9\tO\n")
    args = _args(setup, tmp_path / "out")
    args[args.index("--ids") + 1] = str(data)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"minimner features: error: {data / 'train.txt'}:5: invalid UTF-8 (byte "
                                       "0xe9 at column 4): invalid continuation byte\n")


def test_a_corrupt_features_json_and_stale_temporaries(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(setup, out, "--splits", "test")) == 0
    stale = [out / ".summary.json.tmp-999999999-a1b2c3d4", out / "test" / ".900.npy.tmp-999999999-x9y8z7w6"]
    for p in stale:
        p.write_bytes(b"half")                                               # as kill -9 leaves them
    assert main(_args(setup, out, "--splits", "test")) == 0
    assert not any(p.exists() for p in stale)
    (out / "features.json").write_text('{"arch": "resnet18",')
    assert main(_args(setup, out, "--splits", "test")) == 2
    assert capsys.readouterr().err.endswith(
        f"minimner features: error: {out / 'features.json'}: not valid UTF-8 JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 21 (char 20)); delete it or use a new --out folder\n")


def test_nan_weights_write_no_features(setup, tmp_path, capsys):
    state = {k: np.asarray(v).copy() for k, v in setup["model"].state_dict().items()}
    state["conv1.weight"][0, 0, 0, 0] = np.nan
    weights = tmp_path / "nan.npz"
    files.write_npz_atomic(weights, state)
    args = _args(setup, tmp_path / "out")
    args[args.index("--weights") + 1] = str(weights)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"minimner features: error: {weights}: tensor 'conv1.weight' holds 1 NaN/inf "
                                       "value\n")
    assert not list((tmp_path / "out").rglob("*.npy"))


def test_a_nan_grid_is_never_written(setup, tmp_path, capsys, monkeypatch):
    real = R.ResNet.features

    def nan_for_the_second(self, images):                      # as overflowing activations would
        out = real(self, images)
        out[1, 0, 0, 0] = np.nan
        return out

    monkeypatch.setattr(R.ResNet, "features", nan_for_the_second)
    out = tmp_path / "out"
    assert main(_args(setup, out, "--splits", "test")) == 2
    assert capsys.readouterr().err == (f"minimner features: error: {setup['images'] / '901.jpg'}: the ResNet "
                                       f"({setup['weights']}) gave 1 NaN/inf feature value for this image; nothing "
                                       "was written for it\n")
    assert not list(out.rglob("*.npy"))
