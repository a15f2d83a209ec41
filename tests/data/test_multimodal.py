"""Image features and objects of a split: every feature file is checked before use; coverage is counted."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minimner.data.conll import Sentence
from minimner.data.multimodal import ImageFeatures, MultimodalSource

SHAPE = (49, 512)                                       # resnet18 at 224: R × C_img


@pytest.fixture
def feats(tmp_path):
    settings = {"format_version": 1, "arch": "resnet18", "size": 224, "dtype": "float32",
                "weights_sha256": "a" * 64}
    (tmp_path / "features.json").write_text(json.dumps(settings))
    (tmp_path / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in ("1", "2", "3"):
        np.save(tmp_path / "train" / f"{i}.npy", rng.random(SHAPE).astype(np.float32))
    return ImageFeatures(tmp_path)


def test_good_files_are_read(feats):
    grid, present = feats.lookup("train", ["1", None, "missing", "3"])
    assert grid.shape == (4,) + SHAPE and present.tolist() == [True, False, False, True]


@pytest.mark.parametrize("bad,problem", [
    (np.full(SHAPE, "x"), "feature grid has dtype <U1, expected float32 or float16; delete it and rerun "
                          "`python -m minimner features` to recompute it"),
    (np.zeros(SHAPE, dtype=np.int64), "feature grid has dtype int64, expected float32 or float16; delete it and "
                                      "rerun `python -m minimner features` to recompute it"),
    (np.zeros((7, 7), dtype=np.float32), "feature grid has shape (7, 7), expected (R, C_img) = (49, 512) "
                                         "(features.json: resnet18, size 224)"),
])
def test_bad_feature_files_are_named(feats, bad, problem):
    path = feats.path("train", "2")
    np.save(path, bad)
    with pytest.raises(ValueError) as e:
        feats.lookup("train", ["1", "2"])
    assert str(e.value) == f"{path}: {problem}"


def test_a_nan_in_one_feature_file_names_that_file(feats):
    path = feats.path("train", "3")
    g = np.load(path)
    g[10, 20] = np.nan
    g[0, 0] = np.inf
    np.save(path, g.astype(np.float16))
    with pytest.raises(ValueError) as e:
        feats.lookup("train", ["1", "3"])
    assert str(e.value) == (f"{path}: feature grid holds 2 NaN/inf values; delete it and rerun "
                            "`python -m minimner features` to recompute it")


@pytest.mark.parametrize("text,problem", [
    ('{"arch": "resnet18", ', "malformed features settings (Expecting property name enclosed in double quotes: "
                             "line 1 column 22 (char 21))"),
    ('{"arch": "resnet18"}', "malformed features settings (no key 'size')"),
])
def test_a_corrupt_features_json_is_named(tmp_path, text, problem):
    (tmp_path / "features.json").write_text(text)
    with pytest.raises(ValueError) as e:
        ImageFeatures(tmp_path)
    assert str(e.value) == f"{tmp_path / 'features.json'}: {problem}"


def test_same_extractor_compares_the_recorded_settings(feats):
    assert feats.same_extractor(dict(feats.settings)) == []
    assert feats.same_extractor(None) == []
    assert feats.same_extractor({"arch": "resnet18", "weights_sha256": "b" * 64}) == ["weights_sha256"]
    assert feats.same_extractor({"arch": "resnet50", "size": 256}) == ["arch", "size"]


def test_coverage_counts_features_and_objects(feats):
    sents = [Sentence(["a"], image_id=i) for i in ("1", "2", "9", None)]
    src = MultimodalSource("train", feats, {"1": [1], "9": []})
    assert src.coverage(sents) == {"tweets": 4, "with_image_id": 3, "with_features": 2, "with_objects": 2}
    assert MultimodalSource("train").coverage(sents) == {"tweets": 4, "with_image_id": 3, "with_features": None,
                                                         "with_objects": None}
    assert MultimodalSource("valid", feats).coverage(sents)["with_features"] == 0   # no valid/ folder


def test_standardise_features_records_train_statistics_and_readers_apply_them(feats, tmp_path):
    """The train split's per-channel mean/std go into features.json; ImageFeatures and ImageGrids standardise."""
    from minimner.data.multimodal import ImageGrids, standardise_features

    raw = {i: np.load(feats.root / "train" / f"{i}.npy") for i in ("1", "2", "3")}
    entry = standardise_features(feats.root, "train")
    stacked = np.concatenate(list(raw.values())).astype(np.float64)                 # (3R, C_img)
    np.testing.assert_allclose(entry["mean"], stacked.mean(0), rtol=1e-6)
    np.testing.assert_allclose(entry["std"], stacked.std(0) + 1e-3, rtol=1e-6)
    again = ImageFeatures(feats.root)
    grid, present = again.lookup("train", ["1", None, "3"])
    assert present.tolist() == [True, False, True] and not grid[1].any()            # a missing image stays zero
    mean, std = np.asarray(entry["mean"], np.float32), np.asarray(entry["std"], np.float32)
    np.testing.assert_allclose(grid[0], (raw["1"] - mean) / std, rtol=1e-5, atol=1e-6)
    z, _ = again.lookup("train", ["1", "2", "3"])
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-2         # standardised over train
    grids = ImageGrids({"x": raw["2"]}, again.grid, again.channels, settings=again.settings)
    np.testing.assert_allclose(grids.lookup(None, ["x"])[0][0], z[1], rtol=1e-5, atol=1e-6)
    assert standardise_features(feats.root, "train") == entry                       # idempotent: raw files unchanged


def test_malformed_standardise_entry_is_refused(feats):
    settings = json.loads((feats.root / "features.json").read_text())
    settings["standardise"] = {"mean": [0.0] * 3, "std": [1.0] * 3}
    (feats.root / "features.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="malformed standardise entry"):
        ImageFeatures(feats.root)
