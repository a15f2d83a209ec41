"""Tests of the training-curve figure and the metrics.jsonl loader (minimner/plots/training.py)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from minimner.plots.training import load_metrics, plot_training_curves  # noqa: E402


def _records(f1s, losses=None, strict=True):
    """Records shaped like those minimner.train writes (one per epoch)."""
    losses = losses if losses is not None else [2.0 / (e + 1) for e in range(len(f1s))]
    out = []
    for e, (f1, loss) in enumerate(zip(f1s, losses), 1):
        r = {"epoch": e, "step": 10 * e, "train_loss": loss, "dev_f1": f1, "dev_p": f1, "dev_r": f1,
             "train_seconds": 1.0, "eval_seconds": 0.5}
        if strict:
            r["dev_f1_strict"] = f1 - 0.05
        out.append(r)
    return out


def _write_run(path, records, extra_lines=()):
    path.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, sort_keys=True) for r in records] + list(extra_lines)
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


# -------------------------------------------------------------------------- loader
def test_load_metrics_reads_run_folder_and_file(tmp_path):
    recs = _records([0.5, 0.6, 0.55])
    run = _write_run(tmp_path / "run", recs)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write("\n   \n")                                        # blank lines are skipped
    assert load_metrics(run) == recs
    assert load_metrics(run / "metrics.jsonl") == recs
    assert load_metrics(str(run)) == recs


def test_load_metrics_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        load_metrics(tmp_path / "nothing")
    run = _write_run(tmp_path / "bad", _records([0.5, 0.6]), ['{"epoch": 3, "dev_f1": 0.'])
    path = run / "metrics.jsonl"
    with pytest.raises(ValueError, match=rf"^{path}:3: not valid JSON"):
        load_metrics(run)
    run = _write_run(tmp_path / "list", _records([0.5]), ["[1, 2]"])
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: expected a JSON object per line, got list"):
        load_metrics(run)
    run = _write_run(tmp_path / "noepoch", [{"dev_f1": 0.1}])
    with pytest.raises(ValueError, match=r"metrics.jsonl:1: record has no integer 'epoch' \(got None\)"):
        load_metrics(run)


# ------------------------------------------------------------------------ curves
def test_one_run_two_panels_marks_the_best_epoch():
    from matplotlib.figure import Figure
    f1 = [0.50, 0.62, 0.70, 0.70, 0.65]                            # a tie: the first best epoch is kept
    loss = [3.0, 2.0, 1.5, 1.2, 1.1]
    ax_loss, ax_f1 = plot_training_curves(_records(f1, loss))
    assert isinstance(ax_loss.figure, Figure) and ax_loss.figure is ax_f1.figure
    x, y = ax_loss.lines[0].get_data()
    assert list(x) == [1, 2, 3, 4, 5] and list(y) == loss
    np.testing.assert_allclose(ax_f1.lines[0].get_data()[1], f1)
    np.testing.assert_allclose(ax_f1.lines[1].get_data()[1], np.array(f1) - 0.05)   # strict, dashed
    assert ax_f1.lines[1].get_linestyle() == "--"
    (best,) = [ln for ln in ax_f1.lines if ln.get_gid() == "best:"]
    assert list(best.get_data()[0]) == [3] and list(best.get_data()[1]) == [0.70]
    assert "best 0.7000 @ epoch 3" in [t.get_text() for t in ax_f1.get_legend().get_texts()]
    vlines = [ln for ln in ax_loss.lines if ln.get_linestyle() == ":"]
    assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [3, 3]
    assert _png(ax_loss.figure)[:4] == b"\x89PNG"


def test_several_runs_are_labelled(tmp_path):
    text = _write_run(tmp_path / "text-only", _records([0.5, 0.6, 0.58]))
    mm = _write_run(tmp_path / "multimodal", _records([0.55, 0.63, 0.66]))
    ax_loss, ax_f1 = plot_training_curves({"text-only": text, "multimodal": load_metrics(mm)})
    f1_lines = [ln for ln in ax_f1.lines if ln.get_label() in ("text-only", "multimodal")]
    assert [ln.get_label() for ln in f1_lines] == ["text-only", "multimodal"]
    assert f1_lines[0].get_color() != f1_lines[1].get_color()
    bests = {ln.get_gid(): list(ln.get_data()[0]) for ln in ax_f1.lines if (ln.get_gid() or "").startswith("best:")}
    assert bests == {"best:text-only": [2], "best:multimodal": [3]}
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["text-only train loss",
                                                                        "multimodal train loss"]
    # a list of run folders is labelled by folder name
    _, ax_f1 = plot_training_curves([text, mm], strict=False)
    assert {ln.get_gid() for ln in ax_f1.lines if ln.get_gid()} == {"best:text-only", "best:multimodal"}
    assert not [ln for ln in ax_f1.lines if ln.get_linestyle() == "--"]
    assert _png(ax_f1.figure)[:4] == b"\x89PNG"


def test_given_axes_twin_and_steps():
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    recs = _records([0.4, 0.5], strict=False)
    ax_loss, ax_f1 = plot_training_curves(recs, ax=ax, x="step")
    assert ax_loss is ax and ax_f1 is not ax and ax_f1.get_shared_x_axes().joined(ax, ax_f1)
    assert list(ax_loss.lines[0].get_xdata()) == [10, 20]
    assert ax_f1.get_ylabel() == "dev micro-F1" and ax_loss.get_xlabel() == "optimiser step"
    fig = Figure()
    pair = tuple(fig.subplots(1, 2))
    assert plot_training_curves(recs, ax=pair) == pair
    assert _png(fig)[:4] == b"\x89PNG"


def test_null_loss_is_a_gap():
    recs = _records([0.4, 0.5])
    recs[0]["train_loss"] = None                                   # an epoch without batches
    ax_loss, _ = plot_training_curves(recs)
    assert np.isnan(ax_loss.lines[0].get_ydata()[0])


def test_curves_bad_arguments():
    with pytest.raises(ValueError, match="run 'a' has no epochs"):
        plot_training_curves({"a": []})
    recs = _records([0.4, 0.5])
    del recs[1]["dev_f1"]
    with pytest.raises(ValueError, match=r"run 'b': record 1 \(epoch 2\) has no 'dev_f1'"):
        plot_training_curves({"b": recs})
    with pytest.raises(ValueError, match="x must be 'epoch' or 'step', got 'time'"):
        plot_training_curves(_records([0.4]), x="time")
    with pytest.raises(ValueError, match="no runs to plot"):
        plot_training_curves({})
