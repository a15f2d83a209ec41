"""Training-curve figures from a run's ``metrics.jsonl`` (written by :mod:`minimner.train`).

* :func:`load_metrics`: read ``RUN/metrics.jsonl`` (one JSON object per epoch:
  ``epoch, step, train_loss, dev_f1, dev_p, dev_r, dev_f1_strict, train_seconds,
  eval_seconds``), with errors naming ``file:line`` for a malformed line;
* :func:`plot_training_curves`: train loss and dev micro-F1 per epoch (two panels,
  or two y axes on one Axes), the best-on-dev epoch marked; several runs can be
  drawn together, each labelled (e.g. text-only vs multimodal).

matplotlib is imported inside the functions; no pyplot state is used (a new
:class:`matplotlib.figure.Figure` is created when no Axes is given), so it works
under Agg.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["load_metrics", "plot_training_curves"]


def load_metrics(run_dir) -> list[dict]:
    """The per-epoch records of one run, in file order.

    Parameters
    ----------
    run_dir : a run folder (reads ``run_dir/metrics.jsonl``) or the path of a
        ``metrics.jsonl`` file itself

    Returns
    -------
    list of dicts, one per epoch (blank lines are skipped)

    Raises
    ------
    FileNotFoundError
        when there is no metrics file.
    ValueError
        ``"<file>:<line>: ..."`` for a line that is not JSON, not a JSON object, or
        lacks an integer ``epoch``.
    """
    p = Path(run_dir)
    path = p / "metrics.jsonl" if p.is_dir() else p
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (is {run_dir} a run folder written by `train`?)")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}): "
                                 f"{line.strip()[:80]!r}") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
            ep = rec.get("epoch")
            if not isinstance(ep, int) or isinstance(ep, bool):
                raise ValueError(f"{path}:{lineno}: record has no integer 'epoch' (got {ep!r})")
            records.append(rec)
    return records


def _runs(history) -> dict[str, list[dict]]:
    """history (one run, or label -> run, or a list of run folders) -> {label: records}."""
    def one(h):
        return load_metrics(h) if isinstance(h, (str, os.PathLike)) else list(h)

    if isinstance(history, Mapping):
        return {str(k): one(v) for k, v in history.items()}
    if isinstance(history, (str, os.PathLike)):
        return {Path(history).name: load_metrics(history)}
    history = list(history)
    if history and all(isinstance(h, (str, os.PathLike)) for h in history):
        return {Path(h).name: load_metrics(h) for h in history}
    return {"": history}


def _column(records: Sequence[dict], key: str, label: str) -> np.ndarray:
    """records[i][key] as float64 (None -> NaN), ValueError naming the run and the epoch otherwise."""
    out = np.full(len(records), np.nan)                                 # (E,)
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ValueError(f"run {label!r}: record {i} is a {type(r).__name__}, expected a dict")
        if key not in r:
            raise ValueError(f"run {label!r}: record {i} (epoch {r.get('epoch')}) has no {key!r}; "
                             f"keys are {sorted(r)}")
        if r[key] is not None:
            out[i] = float(r[key])
    return out


def plot_training_curves(history, ax=None, x: str = "epoch", strict: bool = True, figsize=None):
    """Train loss and dev micro-F1 per epoch, the best dev epoch marked, for one or more runs.

    The best epoch is the first epoch with the highest ``dev_f1`` (the one
    :func:`minimner.train.train` keeps as ``best.npz``); it gets a star on the F1
    curve, a dotted vertical line on both panels and its score in the legend.

    Parameters
    ----------
    history : one run's records (the list of per-epoch dicts of :func:`load_metrics`),
        a run folder / metrics file path, a mapping label -> records or path (several
        runs, e.g. ``{"text-only": "runs/t", "multimodal": "runs/m"}``), or a list of
        run folders (labelled by folder name)
    ax : None (a new Figure with two panels), a pair ``(ax_loss, ax_f1)``, or one
        Axes (loss on it, F1 on a twin y axis on the right)
    x : ``"epoch"`` or ``"step"`` (optimiser steps), the x axis
    strict : also draw ``dev_f1_strict`` (dashed) where the records have it
    figsize : size of the new Figure when ``ax`` is None

    Returns
    -------
    (ax_loss, ax_f1), the two Axes drawn on. Each run gives one line per axis in the
    order given (``ax_loss.lines`` / ``ax_f1.lines``; F1 line labels are the run
    labels); the best-epoch star on ``ax_f1`` has gid ``"best:<label>"``.

    Raises
    ------
    ValueError
        for no runs, an empty run, a record lacking ``train_loss`` / ``dev_f1`` / ``x``,
        or a bad ``x`` / ``ax``.
    """
    if x not in ("epoch", "step"):
        raise ValueError(f"x must be 'epoch' or 'step', got {x!r}")
    runs = _runs(history)
    if not runs:
        raise ValueError("no runs to plot")
    for label, recs in runs.items():
        if not recs:
            raise ValueError(f"run {label!r} has no epochs")
    ax_loss, ax_f1, twin = _curve_axes(ax, figsize)
    single_twin = twin and len(runs) == 1          # one run on one Axes: tell the two curves apart by colour
    for i, (label, recs) in enumerate(runs.items()):
        _plot_run(ax_loss, ax_f1, f"C{i % 10}", label, recs, x, strict, twin, single_twin)
    _label_curve_axes(ax_loss, ax_f1, x, twin, single_twin, len(runs))
    return ax_loss, ax_f1


def _curve_axes(ax, figsize):
    """(ax_loss, ax_f1, twin): a new two-panel Figure, the pair given, or one Axes and its twin."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=figsize or (10, 3.8), layout="constrained")
        ax_loss, ax_f1 = fig.subplots(1, 2)
        return ax_loss, ax_f1, False
    if isinstance(ax, (tuple, list)):
        if len(ax) != 2:
            raise ValueError(f"ax must be one Axes or a pair (ax_loss, ax_f1), got {len(ax)} axes")
        return ax[0], ax[1], False
    return ax, ax.twinx(), True


def _plot_run(ax_loss, ax_f1, c: str, label: str, recs, x: str, strict: bool, twin: bool,
              single_twin: bool) -> None:
    """One run's loss and F1 lines (colour ``c``), its strict F1 and its best epoch marked."""
    c_loss = "C7" if single_twin else c
    xs = _column(recs, x, label)                                    # (E,)
    loss = _column(recs, "train_loss", label)                       # (E,)
    f1 = _column(recs, "dev_f1", label)                             # (E,)
    pre = f"{label} " if label else ""
    ax_loss.plot(xs, loss, "s--" if twin else "o-", color=c_loss, markersize=3, label=f"{pre}train loss")
    ax_f1.plot(xs, f1, "o-", color=c, markersize=3, label=f"{pre}dev F1" if twin or not label else label)
    if strict and all("dev_f1_strict" in r for r in recs):
        ax_f1.plot(xs, _column(recs, "dev_f1_strict", label), "--", color=c, alpha=0.6,
                   label=f"{pre}(strict)" if label else "dev F1 (strict)")
    if np.isfinite(f1).any():
        b = int(np.nanargmax(f1))                                   # first best epoch, as train keeps it
        ax_f1.plot([xs[b]], [f1[b]], "*", color=c, markersize=13, markeredgecolor="black",
                   gid=f"best:{label}", label=f"best {f1[b]:.4f} @ {x} {int(xs[b])}")
        for a in ((ax_loss,) if twin else (ax_loss, ax_f1)):
            a.axvline(xs[b], color=c, linestyle=":", linewidth=1)


def _label_curve_axes(ax_loss, ax_f1, x: str, twin: bool, single_twin: bool, n_runs: int) -> None:
    """Axis labels, titles, legends and (per epoch) integer ticks."""
    from matplotlib.ticker import MaxNLocator

    xlabel = "epoch" if x == "epoch" else "optimiser step"
    ax_loss.set_xlabel(xlabel)
    ax_loss.set_ylabel("train loss (mean per batch)")
    ax_f1.set_ylabel("dev micro-F1")
    if single_twin:
        ax_loss.set_ylabel("train loss (mean per batch)", color="C7")
        ax_f1.set_ylabel("dev micro-F1", color="C0")
    if twin:
        ax_loss.set_title("train loss (left) and dev F1 (right)")
        h1, l1 = ax_loss.get_legend_handles_labels()
        h2, l2 = ax_f1.get_legend_handles_labels()
        ax_f1.legend(h1 + h2, l1 + l2, fontsize="small", loc="best")
    else:
        ax_f1.set_xlabel(xlabel)
        ax_loss.set_title("training loss")
        ax_f1.set_title("dev micro-F1 (★ best epoch)")
        if n_runs > 1:
            ax_loss.legend(fontsize="small")
        ax_f1.legend(fontsize="small", loc="lower right")
    if x == "epoch":
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_f1.xaxis.set_major_locator(MaxNLocator(integer=True))
