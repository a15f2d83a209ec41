"""The README's paper ↔ code map names only files, functions, classes and attributes that exist.

The map (README, "Learn" → "Paper ↔ code") is a table whose third column names code: a file
(`minimner/ops/gate.py`), names defined in it (`: gate_forward, gate_backward`), methods of a class in parentheses, bare file names read
in the folder of the last path (`attention.py`), attributes of the model (`MGCMT.self_attention`,
`obj2obj_attention(_v2)`: both spellings), attribute names in parentheses (`(maug_linear, aug_w1, …)`:
set as ``self.name`` in the file named before them, or on ``MGCMT``), and dotted module paths
(`minimner.models.mgcmt.trans_matrix`). Its last column names tutorial numbers, and its second the
steps of docs/model.md §2. Every one of those is checked here, so the map cannot go stale silently.
"""
import importlib
import re

import pytest

from tests.conftest import ROOT

MGCMT_FILES = ("minimner/models/mgcmt.py", "minimner/models/mgcmt_state.py", "minimner/models/mgcmt_inputs.py")


def _map_rows():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### Paper ↔ code" in text, "README: the 'Paper ↔ code' section is gone"
    section = text.split("### Paper ↔ code", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("|")][2:]      # skip header and rule
    assert len(rows) >= 10, f"README map: only {len(rows)} rows found"
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


ROWS = _map_rows()


def _module_of(path: str):
    return importlib.import_module(path[:-3].replace("/", "."))


def _assigned(attr: str, files) -> bool:
    """``attr`` is assigned as ``self.attr`` (or registered by that name) in one of ``files``."""
    pat = re.compile(rf"self\.{re.escape(attr)}\s*=|[\"']{re.escape(attr)}[\"']")
    return any(pat.search((ROOT / f).read_text(encoding="utf-8")) for f in files)


def _expand(token: str) -> list[str]:
    """``obj2obj_attention(_v2)`` -> both spellings."""
    m = re.fullmatch(r"(.*)\((_\w+)\)", token)
    return [m.group(1), m.group(1) + m.group(2)] if m else [token]


def _check_code_cell(cell: str) -> list[str]:
    problems = []
    current_file = None                 # the last file named: bare names are looked up in it
    current_dir = None
    in_mgcmt = False                    # after `MGCMT.x`, bare names are MGCMT's attributes too
    last_class = None                   # the last class named: parenthesised names may be its methods
    # Split into backticked tokens, remembering whether each sits inside parentheses.
    depth, pos = 0, 0
    tokens = []
    for m in re.finditer(r"`([^`]+)`|\(|\)", cell):
        s = m.group(0)
        if s == "(":
            depth += 1
        elif s == ")":
            depth = max(0, depth - 1)
        else:
            after_ops = bool(re.search(r"\bops\s*$", cell[pos:m.start()]))     # "ops `gelu.py`": minimner/ops/
            tokens.append((m.group(1), depth > 0, after_ops))
        pos = m.end()
    for token, in_parens, after_ops in tokens:
        for name in _expand(token):
            if name.endswith(".py"):
                if after_ops:
                    current_dir = "minimner/ops"
                path = name if "/" in name else (f"{current_dir}/{name}" if current_dir else name)
                if not (ROOT / path).is_file():
                    problems.append(f"file {path} (named as {name!r}) does not exist")
                    continue
                current_file, current_dir, in_mgcmt = path, path.rsplit("/", 1)[0], False
            elif name.startswith("minimner."):
                mod, _, attr = name.rpartition(".")
                try:
                    ok = hasattr(importlib.import_module(mod), attr)
                except ImportError:
                    ok = False
                if not ok:
                    problems.append(f"{name} does not exist")
            elif "." in name:                                   # Class.attribute
                cls, attr = name.split(".", 1)
                if cls == "MGCMT":
                    in_mgcmt = True
                    from minimner.models.mgcmt import MGCMT
                    if not (hasattr(MGCMT, attr) or _assigned(attr, MGCMT_FILES)):
                        problems.append(f"{name}: MGCMT has no attribute or sub-module {attr!r}")
                elif current_file and hasattr(_module_of(current_file), cls):
                    if not hasattr(getattr(_module_of(current_file), cls), attr):
                        problems.append(f"{name}: {current_file}'s {cls} has no {attr!r}")
                else:
                    problems.append(f"{name}: no class {cls!r} in {current_file}")
            elif in_parens:                                      # attribute names of the class before
                files = ([current_file] if current_file else []) + list(MGCMT_FILES)
                if not (hasattr(last_class, name) or _assigned(name, files)):
                    problems.append(f"{name!r} is not an attribute set in {current_file or 'MGCMT'}")
            elif in_mgcmt:                                       # `MGCMT.a`, `b`, `c`: attributes of MGCMT
                from minimner.models.mgcmt import MGCMT
                if not (hasattr(MGCMT, name) or _assigned(name, MGCMT_FILES)):
                    problems.append(f"{name}: MGCMT has no attribute or sub-module {name!r}")
            else:                                                # a name defined in the current file
                if current_file is None:
                    problems.append(f"{name!r} is named before any file")
                    continue
                if not hasattr(_module_of(current_file), name):
                    problems.append(f"{current_file} defines no {name!r}")
                elif isinstance(getattr(_module_of(current_file), name), type):
                    last_class = getattr(_module_of(current_file), name)
    return problems


@pytest.mark.parametrize("row", ROWS, ids=[r[0][:40] for r in ROWS])
def test_map_row_names_existing_code(row):
    assert len(row) == 4, f"README map row has {len(row)} columns: {row}"
    problems = _check_code_cell(row[2])
    assert not problems, f"README map, row {row[0]!r}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("row", ROWS, ids=[r[0][:40] for r in ROWS])
def test_map_row_names_existing_tutorials_and_steps(row):
    tutorials = {p.name[:2]: p for p in (ROOT / "tutorials").glob("*.ipynb")}
    for num in re.findall(r"\b(\d\d)\b", row[3]):
        assert num in tutorials, f"README map, row {row[0]!r}: no tutorial {num}"
    model_md = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    steps = re.findall(r"step(?:s)? (\d+)(?:[–-](\d+))?(?:, (\d+))?", row[1])
    for groups in steps:
        for s in filter(None, groups):
            assert re.search(rf"^\s*{s}\. ", model_md, re.M), f"README map, row {row[0]!r}: docs/model.md has no step {s}"
    for doc, sec in re.findall(r"docs/(\w+\.md) §(\d+)", row[1]):
        assert (ROOT / "docs" / doc).is_file(), f"README map, row {row[0]!r}: docs/{doc} does not exist"
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        assert re.search(rf"^#+ {sec}[. ]", text, re.M), f"README map, row {row[0]!r}: docs/{doc} has no §{sec}"


def test_the_map_check_has_teeth():
    assert _check_code_cell("`minimner/ops/gate.py`: `gate_forward`") == []
    assert _check_code_cell("`minimner/ops/gate.py`: `no_such_function`")
    assert _check_code_cell("`minimner/ops/no_such_file.py`: `gate_forward`")
    assert _check_code_cell("`MGCMT.no_such_branch`")
    assert _check_code_cell("`minimner.models.mgcmt.no_such_thing`")
    assert _check_code_cell("`minimner/nn/augment.py`: `AugmentAdd` (`no_such_attr`)")
    assert _check_code_cell("`MGCMT.obj2obj_attention(_v9)`")
    assert _check_code_cell("`MGCMT.vismap2text`, `no_such_encoder`")
    assert _check_code_cell("`minimner/data/inputs.py`: `Collator` (`add_inputs`)") == []
    assert _check_code_cell("`minimner/data/inputs.py`: `Collator` (`no_such_method`)")
    assert _check_code_cell("`minimner/models/resnet.py`: `ResNet.no_such_method`")
    assert _check_code_cell("`minimner/vision/images.py`; ops `no_such_op.py`")
    assert _check_code_cell("`minimner/vision/images.py`; ops `conv2d.py`") == []
