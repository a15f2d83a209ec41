"""Every tutorial is committed executed, with its outputs and figures, and the outputs are not stale.

``python tutorials/execute.py`` re-executes the tutorials from a clean kernel and writes them back;
``tutorials/execute.py`` also holds the comparison used here (see its docstring for what is compared:
text outputs exactly, cells tagged ``volatile`` excepted; images by presence).
"""
import importlib.util

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def _execute_module():
    spec = importlib.util.spec_from_file_location("tutorials_execute", ROOT / "tutorials" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_tutorials():
    assert NOTEBOOKS, "tutorials/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_executed_in_order(path):
    """Committed with outputs, run top to bottom in one clean kernel, with no error and no unrendered figure."""
    nbformat = pytest.importorskip("nbformat")
    ex = _execute_module()
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        f"{path.name}: not executed top to bottom from a clean kernel (run `python tutorials/execute.py {path.name}`)"
    assert any(c.get("outputs") for c in code), f"{path.name}: committed without outputs"
    for i, c in enumerate(code):
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error", f"{path.name}: code cell {i} has an error output"
        for t in ex._texts(c):
            assert not ex.FIGURE_TEXT.search(t), f"{path.name}: code cell {i} shows a figure as text: {t[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_drawing_tutorial_has_an_image(path):
    nbformat = pytest.importorskip("nbformat")
    ex = _execute_module()
    nb = nbformat.read(str(path), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if "plt." in code or "display(" in code or "plot_" in code:
        assert any(ex.has_image(c) for c in nb.cells if c.cell_type == "code"), \
            f"{path.name} draws, but no image is committed (run `python tutorials/execute.py {path.name}`)"


def test_staleness_check_has_teeth():
    """The comparison flags a changed text output, a missing image and a figure printed as text."""
    nbformat = pytest.importorskip("nbformat")
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    ex = _execute_module()

    def nb(text, image, tags=()):
        cell = new_code_cell("x = 1", execution_count=1, metadata={"tags": list(tags)})
        cell.outputs = [new_output("stream", name="stdout", text=text)]
        if image:
            cell.outputs.append(new_output("display_data", data={"image/png": "iVBORw0KGgo="}))
        return new_notebook(cells=[cell])

    assert ex.problems(nb("a\n", True), nb("a\n", True)) == []
    assert ex.problems(nb("a\n", True), nb("b\n", True))                      # stale text
    assert ex.problems(nb("a\n", True, ["volatile"]), nb("b\n", True)) == []  # volatile: text not compared
    assert ex.problems(nb("a\n", False), nb("a\n", True))                     # the figure is missing
    assert ex.problems(nb("a\n", True), nb("a\n", False))                     # the cell no longer draws
    shown_as_text = nb("a\n", False)
    shown_as_text.cells[0].outputs = [new_output("execute_result", execution_count=1,
                                                 data={"text/plain": "<Figure size 640x480 with 1 Axes>"})]
    assert ex.problems(shown_as_text, shown_as_text)                          # a figure printed as text


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_outputs_are_up_to_date(path):
    """Re-execute from a clean kernel (MPLBACKEND=Agg) and compare with the committed outputs."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    ex = _execute_module()
    fresh = ex.execute(path)          # raises CellExecutionError (with the failing cell) on any error/assert
    found = ex.problems(nbformat.read(str(path), as_version=4), fresh, path.name)
    assert not found, ("stale tutorial outputs (run `python tutorials/execute.py " + path.name + "`):\n"
                       + "\n".join(found))
