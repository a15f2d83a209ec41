"""``python -m minimner demo`` end to end at a tiny size (the full-size run is measured in the README)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minimner.cli import main
from minimner.cli.demo import ARMS, calibrated_resnet, entity_groups, group_recall, verdict
from minimner.data.conll import Sentence, read_conll
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
    assert set(res["arms"]) == set(ARMS) and res["seconds"] > 0
    for arm in ARMS:
        assert 0.0 <= res["arms"][arm]["test_f1"] <= 1.0, arm
        r = res["arms"][arm]["image_decided_recall"]
        assert r is None or 0.0 <= r <= 1.0
        assert "dev_f1" not in res["arms"][arm]                 # no arm repeats a dev score it did not measure
        pred = read_conll(out / f"pred-test-{arm}.txt")
        assert [s.words for s in pred] == [s.words for s in read_conll(out / "data" / "test.txt")]
    att = res["attention"]
    assert set(att) >= {"entity_peak_on_key_object", "non_entity_peak_on_key_object", "chance"}
    assert 0.0 < att["chance"] < 1.0
    assert set(res["crf_transitions"]) == {"O_to_I", "B_to_same_I", "B_to_other_I"}
    assert res["verdict"][-1].startswith("Verdict:")
    assert (out / "figures" / "training.png").is_file()
    tweets = sorted(p.name for p in (out / "figures").glob("tweet-*.png"))
    assert len(tweets) in (0, 2) and all(n.endswith("_crf.png") for n in tweets[1::2])
    settings = json.loads((out / "features" / "features.json").read_text())
    assert settings["arch"] == "resnet18" and (out / "resnet18-seed0.npz").is_file()
    assert len(settings["standardise"]["mean"]) == 512                    # the readers standardise the grids
    for arm in ("text", "multimodal"):
        assert not (out / "runs" / arm / "last.npz").exists()             # no optimiser state kept
        assert json.loads((out / "runs" / arm / "run.json").read_text())["lr_groups"]["crf"]["lr"] == 1e-2


def test_demo_refuses_to_overwrite_its_models(demo, capsys):
    assert main(["demo", "--out", str(demo["out"]), "--bert", str(demo["bert"]), "--sizes", "40", "16", "24",
                 "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err


def test_entity_groups_and_their_recall():
    sents = [Sentence(words=["see", "Velova", "!"], tags=["O", "B-PER", "O"], image_id="a"),
             Sentence(words=["see", "Yadux", "!"], tags=["O", "B-LOC", "O"], image_id="b"),
             Sentence(words=["Mirira", "rocks"], tags=["B-ORG", "O"], image_id="c")]
    meta = {"images": {"a": {"image": True, "misleading": False, "image_spans": [[1, 2]]},
                       "b": {"image": True, "misleading": True, "image_spans": [[1, 2]]},
                       "c": {"image": False, "misleading": False, "image_spans": [[0, 1]]}}}
    groups = entity_groups(sents, meta)
    assert groups == {"image_decided": [(0, 1, 2)], "misleading": [(1, 1, 2)], "no_picture": [(2, 0, 1)]}
    pred = [["O", "B-PER", "O"], ["O", "B-PER", "O"], ["B-ORG", "O"]]
    assert group_recall(sents, pred, groups["image_decided"]) == 1.0
    assert group_recall(sents, pred, groups["misleading"]) == 0.0             # right span, wrong type
    assert group_recall(sents, pred, []) is None


def test_verdict_reads_the_arms():
    def arms(mm, no_pix, shuf_pix, no_obj, shuf_obj, text=0.25):
        vals = dict(zip(ARMS, (text, mm, no_pix, no_obj, shuf_pix, shuf_obj)))
        return {k: {"image_decided_recall": v} for k, v in vals.items()}

    lines = verdict(arms(0.6, 0.2, 0.25, 0.6, 0.58))
    assert "relies on its pixels" in lines[1] and "no clear use of its object labels" in lines[2]
    assert lines[-1] == "Verdict: the model relies on its pixels."
    assert verdict(arms(0.3, 0.3, 0.29, 0.3, 0.3))[-1] == "Verdict: no channel of the picture is clearly relied on."
    att = {"entity_peak_on_key_object": 0.7, "non_entity_peak_on_key_object": 0.3, "chance": 0.25}
    assert "more than the other words" in verdict(arms(0.6, 0.2, 0.2, 0.6, 0.6), att)[3]


def test_calibrated_resnet_measures_batchnorm_statistics(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k in range(4):
        p = tmp_path / f"{k}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    plain, calibrated = calibrated_resnet(0, []), calibrated_resnet(0, paths, batch_size=2)
    assert not calibrated.training
    a, b = plain.state_dict(), calibrated.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)  # weights
    assert not np.allclose(a["bn1.running_mean"], b["bn1.running_mean"])                                # stats
    assert float(np.asarray(b["layer4.1.bn2.running_var"]).min()) > 0
