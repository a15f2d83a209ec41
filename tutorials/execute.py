"""Re-execute the tutorials from a clean kernel and write them back with their outputs, or check them.

    python tutorials/execute.py                  # every tutorial, written back with outputs
    python tutorials/execute.py 05_crf.ipynb     # some of them (names or paths)
    python tutorials/execute.py --check          # execute into memory and fail if a committed output is stale

Each notebook runs in a fresh ``python3`` kernel whose working directory is ``tutorials/`` (so
``from exercises import checks`` works), with ``MPLBACKEND=Agg`` and ``PYTHONHASHSEED=0``; set
``PYTHONPATH`` to the checkout you want the kernel to import. Outputs are kept deterministic: the
tutorials seed every generator and print at a sensible precision, and the cells whose output depends on the
machine (timings, paths) carry the cell tag ``volatile``.

What is compared (``--check`` and tests/test_tutorials.py), cell by cell:

* the text of every output (stdout, stderr, results, errors) must equal the fresh run's, except in cells
  tagged ``volatile``;
* an image output is compared by presence only (PNG bytes differ between matplotlib builds): a cell that
  draws must have an image committed, and a committed image must still be drawn;
* no output may be a bare ``<Figure size …>`` text (a figure that was not rendered).

Figures are rendered inline at 72 dpi (set in each drawing tutorial's first cell); the ``text/plain``
twin of an image output is dropped when writing, since a reader sees the image.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL = "python3"
TIMEOUT = 600
FIGURE_TEXT = re.compile(r"<Figure size [^>]*>")


def notebooks(names=()) -> list[Path]:
    """The tutorial notebooks, all of them or those named (file names or paths)."""
    if not names:
        return sorted(HERE.glob("*.ipynb"))
    out = []
    for n in names:
        p = Path(n)
        p = p if p.exists() else HERE / p.name
        if not p.exists():
            raise SystemExit(f"execute.py: no such notebook: {n}")
        out.append(p.resolve())
    return out


def _clean(nb) -> None:
    """Drop what varies between runs and is not content: timing metadata, image text twins."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and any(k.startswith("image/") for k in data):
                data.pop("text/plain", None)
                if "image/png" in data:
                    data.pop("image/jpeg", None)          # a PIL image comes in both: keep one
            out.get("metadata", {}).pop("execution", None)


def execute(path: Path):
    """Execute one notebook in a fresh kernel; return the executed notebook node (not written)."""
    import nbclient
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name=KERNEL, record_timing=False,
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute()        # raises CellExecutionError, naming the cell, on any error or failed assert
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _clean(nb)
    return nb


def _texts(cell) -> list[str]:
    """The text of a cell's outputs, one string per output; an image counts as '<image>'."""
    out = []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            out.append(f"{o.get('name')}: {o.get('text', '')}")
        elif kind == "error":
            out.append(f"error: {o.get('ename')}: {o.get('evalue')}")
        else:
            data = o.get("data", {})
            if any(k.startswith("image/") for k in data):
                out.append("<image>")
            else:
                out.append(data.get("text/markdown") or data.get("text/html") or data.get("text/plain", ""))
    return out


def _merge_streams(texts: list[str]) -> list[str]:
    """Consecutive stream outputs of one name joined (the kernel may split a print at any point)."""
    merged: list[str] = []
    for t in texts:
        for name in ("stdout: ", "stderr: "):
            if t.startswith(name) and merged and merged[-1].startswith(name):
                merged[-1] += t[len(name):]
                break
        else:
            merged.append(t)
    return merged


def has_image(cell) -> bool:
    return any(any(k.startswith("image/") for k in o.get("data", {})) for o in cell.get("outputs", []))


def problems(committed, fresh, name: str = "") -> list[str]:
    """Every difference that makes ``committed`` stale against ``fresh`` (an empty list: up to date)."""
    out = []
    cc = [c for c in committed.cells if c.cell_type == "code"]
    fc = [c for c in fresh.cells if c.cell_type == "code"]
    if [c.source for c in cc] != [c.source for c in fc]:
        return [f"{name}: the code cells differ from the executed copy"]
    for i, (c, f) in enumerate(zip(cc, fc)):
        where = f"{name} code cell {i} ({c.source.strip().splitlines()[0][:50] if c.source.strip() else ''!r})"
        for t in _texts(c):
            if FIGURE_TEXT.search(t):
                out.append(f"{where}: a figure printed as text {FIGURE_TEXT.search(t).group(0)!r}: display it inline")
        if has_image(f) and not has_image(c):
            out.append(f"{where}: draws a figure, but no image is committed")
        if has_image(c) and not has_image(f):
            out.append(f"{where}: an image is committed, but the cell no longer draws one")
        if "volatile" in c.metadata.get("tags", []):
            continue
        a, b = _merge_streams(_texts(c)), _merge_streams(_texts(f))
        if a != b:
            out.append(f"{where}: committed output differs from a fresh run:\n    committed {a!r}\n    fresh     {b!r}")
    return out


def main(argv=None) -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="tutorial notebooks (default: all of tutorials/*.ipynb)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when a committed output is stale")
    args = ap.parse_args(argv)
    failed = False
    for path in notebooks(args.notebooks):
        t0 = time.perf_counter()
        fresh = execute(path)
        seconds = time.perf_counter() - t0
        if args.check:
            found = problems(nbformat.read(str(path), as_version=4), fresh, path.name)
            failed |= bool(found)
            print(f"{path.name}: {'STALE' if found else 'up to date'} ({seconds:.1f} s)")
            for p in found:
                print("  " + p)
        else:
            nbformat.write(fresh, str(path))
            print(f"{path.name}: executed and written ({seconds:.1f} s, {path.stat().st_size / 1024:.0f} KiB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
