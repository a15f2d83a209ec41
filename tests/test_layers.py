"""The house plan holds: the layer contracts (lint-imports) and the shape of the code.

* ``lint-imports`` checks the ``[importlinter]`` contracts of setup.cfg (docs/style.md §3);
  skipped when import-linter is not installed.
* An ast walk over ``minimner/`` fails on a minimner import inside a function body (a module's
  dependencies stand at its top), a function longer than 80 lines or a class longer than 450.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "minimner"
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 450


# ----------------------------------------------------------------------------- the checker
def _is_internal(node: ast.AST) -> bool:
    """Whether an import statement imports minimner (absolutely or relatively)."""
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "minimner"
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "minimner" for a in node.names)
    return False


def house_faults(source: str, where: str) -> dict[str, list[str]]:
    """The faults of one module's source: ``{"imports": [...], "functions": [...], "classes": [...]}``.

    Each fault is ``"<where>:<line> <what>"``. A function's length counts its decorators-free
    span ``def`` … last line; a nested function is judged on its own and inside its parent.
    """
    tree = ast.parse(source, filename=where)
    faults: dict[str, list[str]] = {"imports": [], "functions": [], "classes": []}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                faults["functions"].append(f"{where}:{node.lineno} {node.name} ({n} lines)")
            for sub in ast.walk(node):
                if _is_internal(sub):
                    line = ast.get_source_segment(source, sub) or type(sub).__name__
                    faults["imports"].append(f"{where}:{sub.lineno} in {node.name}(): {line}")
        elif isinstance(node, ast.ClassDef):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_CLASS_LINES:
                faults["classes"].append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    faults["imports"] = sorted(set(faults["imports"]))     # a nested function's import is seen twice
    return faults


def _package_faults() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"imports": [], "functions": [], "classes": []}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for kind, found in house_faults(path.read_text(encoding="utf-8"), rel).items():
            out[kind] += found
    return out


# ----------------------------------------------------------------------------- the checker catches faults
SAMPLE = '''
import numpy as np
from minimner import backend


def lazy():
    from minimner.ops import linear
    import minimner.nn
    from . import sibling
    import json                     # third-party / stdlib: allowed
    return linear, sibling


def long_one():
''' + "    x = 1\n" * MAX_FUNCTION_LINES + '''

class Big:
''' + "    a = 1\n" * MAX_CLASS_LINES


def test_checker_finds_each_kind_of_fault():
    faults = house_faults(SAMPLE, "sample.py")
    assert [f.split(" in ")[0] for f in faults["imports"]] == ["sample.py:7", "sample.py:8", "sample.py:9"]
    assert faults["functions"] == [f"sample.py:14 long_one ({MAX_FUNCTION_LINES + 1} lines)"]
    assert faults["classes"] == [f"sample.py:{17 + MAX_FUNCTION_LINES} Big ({MAX_CLASS_LINES + 1} lines)"]


def test_checker_passes_clean_code():
    clean = "from minimner import backend\n\n\ndef f(x):\n    import matplotlib\n    return x\n"
    assert house_faults(clean, "clean.py") == {"imports": [], "functions": [], "classes": []}


# ----------------------------------------------------------------------------- the package
@pytest.fixture(scope="module")
def package_faults():
    return _package_faults()


def test_no_minimner_import_inside_a_function(package_faults):
    found = package_faults["imports"]
    assert not found, (f"{len(found)} minimner import(s) inside function bodies (move them to the top of the "
                       "module; lazy imports are for optional third-party packages only):\n  " + "\n  ".join(found))


def test_no_function_over_80_lines(package_faults):
    found = package_faults["functions"]
    assert not found, (f"{len(found)} function(s) over {MAX_FUNCTION_LINES} lines (split them into named "
                       "helpers):\n  " + "\n  ".join(found))


def test_no_class_over_450_lines(package_faults):
    found = package_faults["classes"]
    assert not found, (f"{len(found)} class(es) over {MAX_CLASS_LINES} lines (split them by job):\n  "
                       + "\n  ".join(found))


# ----------------------------------------------------------------------------- the layer contracts
def _lint_imports() -> str | None:
    exe = shutil.which("lint-imports")
    if exe is None:                     # the console script may sit beside this interpreter only
        cand = Path(sys.executable).with_name("lint-imports")
        exe = str(cand) if cand.is_file() else None
    return exe


def test_layer_contracts_hold():
    exe = _lint_imports()
    if exe is None:
        pytest.skip("lint-imports (pip install import-linter) is not installed")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lint-imports found broken layer contracts (setup.cfg [importlinter]):\n{report}"
    assert "broken" not in report.split("Contracts:", 1)[-1].split("\n", 1)[0].replace("0 broken", "")
