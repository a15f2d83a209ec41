"""The README's set-up commands are the ones CI runs (keep the README true)."""
import re

from tests.conftest import ROOT


def _readme_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # Indented code lines under "## Set-up: two commands" that start with pip.
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [ln.strip() for ln in section.splitlines() if ln.startswith("    pip install")]


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].endswith("python -m minimner demo")
    assert "python -m pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = _readme_commands()[1]
    ci_lines = [ln.strip() for ln in ci.splitlines() if not ln.strip().startswith("#")]
    assert test_cmd in ci_lines, f"{test_cmd!r} not found as a line of .ci/run"
    assert re.search(r"python3? -m venv", ci), ".ci/run must install into a fresh virtual environment"
