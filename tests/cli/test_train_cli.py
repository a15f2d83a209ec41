"""`train`, `evaluate`, `predict` and `demo` through the command line (tiny BERT, toy data)."""
from __future__ import annotations

import json

import pytest

from minimner.cli import main
from minimner.data.conll import read_conll
from minimner.data.toy import write_toy_dataset
from tests.test_train import make_tiny_bert


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    bert = make_tiny_bert(root / "bert")
    data = write_toy_dataset(root / "data", n_train=16, n_valid=8, n_test=8)
    run = root / "run"
    rc = main(["train", "--data", str(data), "--out", str(run), "--bert", str(bert), "--epochs", "1",
               "--batch-size", "8", "--no-progress"])
    assert rc == 0
    return {"root": root, "bert": bert, "data": data, "run": run}


def test_train_writes_a_complete_run(trained):
    for name in ("run.json", "best.npz", "last.npz", "metrics.jsonl", "summary.json", "bert/config.json"):
        assert (trained["run"] / name).exists(), name


def test_evaluate_scores_the_test_split_once(trained, capsys):
    assert main(["evaluate", "--run", str(trained["run"]), "--split", "test", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["default"]["micro"]) == {"precision", "recall", "f1"}
    assert 0.0 <= result["default"]["micro"]["f1"] <= 1.0
    pred = read_conll(trained["run"] / "pred-test.txt")
    gold = read_conll(trained["data"] / "test.txt")
    assert [s.words for s in pred] == [s.words for s in gold]


def test_predict_conll_and_plain_text(trained, tmp_path, capsys):
    out = tmp_path / "pred.txt"
    assert main(["predict", "--run", str(trained["run"]), "--input", str(trained["data"] / "valid.txt"),
                 "--output", str(out), "--no-progress"]) == 0
    assert len(read_conll(out)) == 8
    plain = tmp_path / "plain.txt"
    plain.write_text("Elon Musk lands in Paris\n\nso tired today\n", encoding="utf-8")
    assert main(["predict", "--run", str(trained["run"]), "--input", str(plain), "--no-progress"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln]
    assert [ln.split("\t")[0] for ln in lines] == "Elon Musk lands in Paris so tired today".split()
    assert all(ln.split("\t")[1] in ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG",
                                     "B-MISC", "I-MISC") for ln in lines)


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "not a finished minimner run" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "train.txt" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["crf", "attention"])
def test_visualise_writes_a_png(trained, tmp_path, what):
    out = tmp_path / f"{what}.png"
    assert main(["visualise", "--run", str(trained["run"]), "--text", "Elon Musk lands in Paris",
                 "--what", what, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_visualise_bad_index_is_a_clear_error(trained, tmp_path, capsys):
    assert main(["visualise", "--run", str(trained["run"]), "--input", str(trained["data"] / "test.txt"),
                 "--index", "999", "--out", str(tmp_path / "x.png")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_evaluate_limit_scores_only_the_first_tweets(trained, capsys):
    run = trained["run"]
    assert main(["evaluate", "--run", str(run), "--split", "test", "--limit", "3", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tweets"] == 3 and result["limit"] == 3
    gold = read_conll(trained["data"] / "test.txt")
    pred = read_conll(run / "pred-test-first3.txt")
    assert [s.words for s in pred] == [s.words for s in gold[:3]]
    assert json.loads((run / "eval-test-first3.json").read_text())["tweets"] == 3
    assert main(["evaluate", "--run", str(run), "--limit", "-1"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_train_says_what_a_zero_dev_f1_means(trained, tmp_path, monkeypatch, capsys):
    import minimner.train
    from minimner.cli.train import zero_f1_hint

    zero = {"best_dev_f1": 0.0, "best_epoch": 1, "epochs_run": 1, "steps": 9, "seed": 1}
    monkeypatch.setattr(minimner.train, "train", lambda cfg, resume, progress, **kw: dict(zero))
    assert main(["train", "--data", str(trained["data"]), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "dev F1 stayed 0.0 over 1 epoch(s), 9 optimiser step(s)" in err and "all O" in err
    assert zero_f1_hint(dict(zero, best_dev_f1=0.31)) is None
    assert zero_f1_hint(dict(zero, epochs_run=0)) is None
