"""``python -m minimner score``: table, JSON, strict mode, alignment errors, released files."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

from minimner.cli import main

GOLD = ("IMGID:1\nObama\tB-PER\nin\tO\nNew\tB-LOC\nYork\tI-LOC\n\n"
        "IMGID:2\nWorld\tB-OTHER\nCup\tI-OTHER\nnow\tO\n")
PRED = ("IMGID:1\nObama\tB-PER\nin\tO\nNew\tB-LOC\nYork\tX\n\n"
        "IMGID:2\nWorld\tO\nCup\tI-MISC\nnow\tO\n")


def _files(tmp_path, gold=GOLD, pred=PRED):
    g, p = tmp_path / "gold.txt", tmp_path / "pred.txt"
    g.write_text(gold, encoding="utf-8")
    p.write_text(pred, encoding="utf-8")
    return str(g), str(p)


def test_table(tmp_path, capsys):
    g, p = _files(tmp_path)
    assert main(["score", "--gold", g, "--pred", p]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["precision", "recall", "f1-score", "support"]
    # gold: PER, LOC(New York), MISC(World Cup); pred: PER, LOC(New), MISC(Cup) -> 1 of 3
    assert "micro avg     0.3333     0.3333     0.3333          3" in out
    assert "1 word(s) predicted as a word-piece tag (X: 1), scored as O." in out


def test_json_structure(tmp_path, capsys):
    g, p = _files(tmp_path)
    assert main(["score", "--gold", g, "--pred", p, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["micro"]) == {"precision", "recall", "f1"}
    assert set(r["per_type"]) == {"LOC", "MISC", "PER"}
    for m in list(r["per_type"].values()) + [r["micro"]]:
        assert all(0.0 <= m[k] <= 1.0 for k in ("precision", "recall", "f1"))
    assert {k: set(v) for k, v in r["per_type"].items()} == {
        k: {"precision", "recall", "f1", "support"} for k in r["per_type"]}
    assert r["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["special_predictions"] == {"X": 1} and r["mode"] == "default"


def test_strict_and_specials_flags(tmp_path, capsys):
    g, p = _files(tmp_path)
    main(["score", "--gold", g, "--pred", p, "--json", "--strict"])
    strict = json.loads(capsys.readouterr().out)
    assert strict["mode"] == "strict"
    # strict: the predicted "O I-MISC" is no entity, so only PER and LOC(New) are predicted
    assert strict["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert strict["counts"]["predicted"] == 2 and strict["micro"]["precision"] == 0.5
    # --specials seqeval: X goes through seqeval's chunker (here X directly before an
    # entity closes a spurious "_" entity, as in the original repo's reports)
    g, p = _files(tmp_path, pred=PRED.replace("World\tO", "World\tX"))
    main(["score", "--gold", g, "--pred", p, "--json", "--specials", "seqeval"])
    r = json.loads(capsys.readouterr().out)
    assert r["per_type"]["_"]["support"] == 0 and r["special_predictions"] == {"X": 2}
    seqeval = pytest.importorskip("seqeval.metrics")
    gold = [["B-PER", "O", "B-LOC", "I-LOC"], ["B-MISC", "I-MISC", "O"]]
    pred = [["B-PER", "O", "B-LOC", "X"], ["X", "I-MISC", "O"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns that X "seems not to be NE tag"
        assert r["micro"]["f1"] == seqeval.f1_score(gold, pred)


@pytest.mark.parametrize("pred,problem", [
    (PRED.replace("New\t", "Old\t"), "pred.txt:4: word 'Old' does not match {g}:4 word 'New' (tweet 1, word 3)"),
    (PRED.replace("now\tO\n", ""), "gold.txt:10: tweet 2 has 3 words in {g} (line 8) but 2 in"),
    (PRED.replace("now\tO\n", "now\tO\nmore\tO\n"), "pred.txt:11: tweet 2 has 3 words"),
    (PRED.split("\n\n")[0] + "\n", "has 1 tweets but {g} has 2; the first one missing from the predictions "
                                   "starts at {g}:8"),
    (PRED + "\nextra\tO\n", "has 3 tweets but {g} has 2; the first extra prediction starts at"),
    (PRED.replace("IMGID:2", "IMGID:3"), "pred.txt:8: tweet 2 has IMGID '3' but {g}:8 has '2'"),
    (PRED.replace("now\tO", "now\tB-FOO"), "pred.txt:10: unknown tag 'B-FOO'"),
    (PRED.replace("now\tO", "now O"), "pred.txt:10: expected 'token<TAB>tag', found no tab"),
])
def test_errors_name_the_first_mismatching_line(tmp_path, capsys, pred, problem):
    g, p = _files(tmp_path, pred=pred)
    assert main(["score", "--gold", g, "--pred", p]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minimner score: error: ") and problem.format(g=g) in err, err
    assert len(err.strip().splitlines()) == 1


def test_files_without_imgid_lines_are_accepted(tmp_path, capsys):
    strip = lambda s: "\n".join(ln for ln in s.split("\n") if not ln.startswith("IMGID:"))  # noqa: E731
    g, p = _files(tmp_path, strip(GOLD), strip(PRED))
    assert main(["score", "--gold", g, "--pred", p, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["gold"] == 3


def test_usage_errors(tmp_path, capsys):
    g, p = _files(tmp_path)
    assert main(["score", "--gold", g]) == 2
    assert "give both --gold FILE and --pred FILE" in capsys.readouterr().err
    assert main(["score", "--gold", g, "--pred", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err
    assert main(["score", "--released", g, "--gold", g]) == 2
    assert "do not combine" in capsys.readouterr().err
    gold_with_x = GOLD.replace("in\tO", "in\tX")
    g2, _ = _files(tmp_path, gold=gold_with_x)
    assert main(["score", "--gold", g2, "--pred", p]) == 2
    assert "gold.txt:3: unknown tag 'X'" in capsys.readouterr().err


def test_released_format(tmp_path, capsys):
    f = tmp_path / "pre_output.txt"
    f.write_text("1.jpg\nObama in Paris\nB-PER O X\nB-PER O B-OTHER\n\n2.jpg\nhi there\nO B-LOC\nO B-LOC\n")
    assert main(["score", "--released", str(f), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["counts"] == {"gold": 3, "predicted": 2, "correct": 2, "sentences": 2, "words": 5}
    assert r["special_predictions"] == {"X": 1}


def test_help_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "minimner", "score", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--gold FILE" in out and "--strict" in out and "--json" in out and "Examples:" in out


@pytest.mark.data
def test_real_gold_against_itself(shared_data, capsys):
    g = str(shared_data / "twitter2015" / "test.txt")
    assert main(["score", "--gold", g, "--pred", g, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert sum(m["support"] for m in r["per_type"].values()) == 5207
