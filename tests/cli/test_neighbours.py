"""Tests for ``python -m minimner neighbours``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from minimner.cli import main
from minimner.lexicon.io import Lexicon, save_npz
from minimner.lexicon.neighbours import find_neighbours


@pytest.fixture
def lexicon_file(tmp_path):
    r = np.random.default_rng(0)
    words = ["paris", "london", "berlin", "cat", "dog", "café", "rome", "madrid"]
    lex = Lexicon(words, r.standard_normal((len(words), 5)).astype(np.float32))
    return save_npz(tmp_path / "lex.npz", lex), lex


def test_json_output(lexicon_file, capsys):
    path, lex = lexicon_file
    assert main(["neighbours", "Paris", "café", "zzz", "--lexicon", str(path), "-k", "3", "--json"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert list(data) == ["Paris", "café", "zzz"] and data["zzz"] == []
    ref = find_neighbours(lex, [0], 3)
    assert [d["word"] for d in data["Paris"]] == ref.words(lex)[0]
    assert [set(d) for d in data["Paris"]] == [{"word", "similarity", "weight"}] * 3
    np.testing.assert_allclose([d["similarity"] for d in data["Paris"]], ref.similarities[0], rtol=1e-6)
    np.testing.assert_allclose([d["weight"] for d in data["Paris"]], ref.weights[0], rtol=1e-6)
    assert "zzz" in out.err  # the missing word is reported on stderr, stdout stays valid JSON


def test_table_output(lexicon_file, capsys):
    path, lex = lexicon_file
    assert main(["neighbours", "Paris", "dog", "zzz", "--lexicon", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Paris (as 'paris'):" and "similarity" in out[1] and "weight" in out[1]
    assert len([line for line in out if line.strip()[:1].isdigit()]) == 8  # k = 4 rows for each found word
    assert "zzz: not in the lexicon" in out


def test_case_exact(lexicon_file, capsys):
    path, _ = lexicon_file
    assert main(["neighbours", "Paris", "--lexicon", str(path), "--case", "exact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Paris": []}


@pytest.mark.parametrize("argv, message", [
    (["-k", "0"], "-k must be at least 1"),
    (["-k", "8"], "-k 8 is too large for a lexicon of 8 words"),
])
def test_bad_k(lexicon_file, capsys, argv, message):
    path, _ = lexicon_file
    assert main(["neighbours", "paris", "--lexicon", str(path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_lexicon_file(tmp_path, capsys):
    assert main(["neighbours", "paris", "--lexicon", str(tmp_path / "nope.npz")]) == 2
    assert "lexicon file not found" in capsys.readouterr().err


def test_default_lexicon_missing_names_the_command(tmp_path, monkeypatch, capsys):
    from minimner.lexicon import glove

    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path))
    monkeypatch.setattr(glove, "kumo_available", lambda: False)
    assert main(["neighbours", "paris"]) == 2
    err = capsys.readouterr().err
    assert "python -m minimner convert glove" in err and str(tmp_path / "glove-6b-50d.npz") in err


def test_default_lexicon_is_used(tmp_path, monkeypatch, lexicon_file, capsys):
    path, _ = lexicon_file
    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path))
    path.rename(tmp_path / "glove-6b-50d.npz")
    assert main(["neighbours", "paris", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["paris"]) == 2


def test_module_entry_point(lexicon_file):
    path, _ = lexicon_file
    res = subprocess.run([sys.executable, "-m", "minimner", "neighbours", "rome", "--lexicon", str(path), "-k", "2",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["rome"]) == 2
