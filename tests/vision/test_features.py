"""minimner.vision.features: image files → region grids, the code `features`, `predict --images` and
`explain --image` share."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from minimner.cli import main
from minimner import files
from minimner.models import resnet as R
from minimner.vision.features import FeatureExtractor, load_resnet
from minimner.vision.images import load_image

SIZE = 64                                          # 2×2 grid: cheap on CPU, same code path as 224


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision_features")
    model = R.build(18, rng=np.random.default_rng(0))
    weights = root / "resnet18.npz"
    files.write_npz_atomic(weights, {k: np.asarray(v) for k, v in model.state_dict().items()})
    r = np.random.default_rng(1)
    paths = []
    for i in range(3):
        a = r.integers(0, 256, (int(r.integers(50, 120)), int(r.integers(50, 120)), 3), dtype=np.uint8)
        paths.append(root / f"{i}.jpg")
        Image.fromarray(a, "RGB").save(paths[-1], quality=90)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return {"root": root, "model": model, "weights": weights, "paths": paths}


def test_grids_equal_the_unfolded_resnet_per_image(setup):
    ex = FeatureExtractor(load_resnet(setup["weights"], "resnet18"), size=SIZE)
    paths = [setup["paths"][0], setup["root"] / "absent.jpg", setup["paths"][1], setup["root"] / "broken.jpg"]
    grids, results = ex.grids(paths)
    assert grids[1] is None and results[1].reason == "file not found"
    assert grids[3] is None and ("corrupt" in results[3].reason or "recognised" in results[3].reason)
    for b in (0, 2):
        x = load_image(paths[b], size=SIZE).array[None]                     # (1, 3, S, S)
        ref = R.ResNet.regions(setup["model"].features(x))[0]             # (R, C): BN not folded
        assert grids[b].shape == (4, 512) and grids[b].dtype == np.float32
        np.testing.assert_allclose(grids[b], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        one, _ = ex.grid(paths[b])                                        # batched = one at a time
        np.testing.assert_allclose(one, grids[b], rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_features_command_stores_what_the_extractor_computes(setup, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.txt").write_text("IMGID:0\nhello\tO\n\nIMGID:2\nworld\tO\n", encoding="utf-8")
    out = tmp_path / "feats"
    assert main(["features", "--images", str(setup["root"]), "--ids", str(data), "--arch", "resnet18", "--weights",
                 str(setup["weights"]), "--out", str(out), "--size", str(SIZE), "--no-progress"]) == 0
    settings = json.loads((out / "features.json").read_text())
    ex = FeatureExtractor.from_settings(settings)                            # the recorded path and SHA-256
    grids, _ = ex.grids([setup["paths"][0], setup["paths"][2]])              # the command's batch of two
    for i, g in zip((0, 2), grids):
        np.testing.assert_array_equal(np.load(out / "test" / f"{i}.npy"), g)


def test_from_settings_refuses_other_weights_and_names_missing_ones(setup, tmp_path):
    other = tmp_path / "other.npz"
    m = R.build(18, rng=np.random.default_rng(5))
    files.write_npz_atomic(other, {k: np.asarray(v) for k, v in m.state_dict().items()})
    settings = {"arch": "resnet18", "size": SIZE, "weights": "resnet18.npz", "weights_path": str(setup["weights"]),
                "weights_sha256": files.sha256_file(setup["weights"])}
    with pytest.raises(ValueError, match="SHA-256"):
        FeatureExtractor.from_settings(settings, weights=other)
    with pytest.raises(FileNotFoundError, match="--resnet"):
        FeatureExtractor.from_settings(dict(settings, weights_path=str(tmp_path / "moved.npz")))
    assert FeatureExtractor.from_settings(settings).size == SIZE
