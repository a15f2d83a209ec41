"""``python -m minimner demo`` end to end at a tiny size (the full-size run is timed in the README)."""
from __future__ import annotations

import json

import pytest

from minimner.cli import main
from minimner.data.conll import read_conll
from tests.test_train import make_tiny_bert


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    bert = make_tiny_bert(root / "bert")
    out = root / "out"
    rc = main(["demo", "--out", str(out), "--bert", str(bert), "--sizes", "40", "16", "24", "--epochs", "1",
               "--figures", "1", "--no-progress"])
    return {"rc": rc, "out": out, "bert": bert}


def test_demo_writes_results_predictions_and_figures(demo, capsys):
    assert demo["rc"] == 0
    out = demo["out"]
    res = json.loads((out / "results.json").read_text())
    for arm in ("text", "multimodal", "multimodal_shuffled_images"):
        assert 0.0 <= res[arm]["test_f1"] <= 1.0, arm
        assert res[arm]["image_decided"]["entities"] > 0
        pred = read_conll(out / f"pred-test-{arm}.txt")
        assert [s.words for s in pred] == [s.words for s in read_conll(out / "data" / "test.txt")]
    assert res["multimodal"]["dev_f1"] == res["multimodal_shuffled_images"]["dev_f1"]   # same trained model
    assert 0.0 <= res["attention"]["chance"] <= 1.0
    assert (out / "figures" / "training.png").is_file()
    tweets = sorted(p.name for p in (out / "figures").glob("tweet-*.png"))
    assert len(tweets) in (0, 2) and all(n.endswith("_crf.png") for n in tweets[1::2])
    assert res["seconds"]["total"] > 0 and "features" in res["seconds"]
    settings = json.loads((out / "features" / "features.json").read_text())
    assert settings["arch"] == "resnet18" and (out / "resnet18-seed0.npz").is_file()


def test_demo_refuses_to_overwrite_its_models(demo, capsys):
    assert main(["demo", "--out", str(demo["out"]), "--bert", str(demo["bert"]), "--sizes", "40", "16", "24",
                 "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err


def test_shuffled_source_is_a_permutation_of_pictures(demo):
    from minimner.cli.demo import shuffled_source
    from minimner.train import load_run, run_source

    _, _, info = load_run(demo["out"] / "runs" / "multimodal")
    sents = read_conll(demo["out"] / "data" / "test.txt")
    src = shuffled_source(run_source(info, "test"), sents, seed=1)
    assert sorted(src.remap) == sorted(src.remap.values())
    assert sum(a != b for a, b in src.remap.items()) >= len(src.remap) // 2
