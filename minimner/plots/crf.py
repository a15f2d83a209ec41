"""CRF figures: the learned transition matrix and one sentence's marginals as heat maps.

:func:`plot_crf` builds a stand-alone :class:`matplotlib.figure.Figure` (no
pyplot state, no ``show``), so it works under the Agg backend, in tests and in
notebooks alike. matplotlib is imported inside the function.

Dimension legend: B batch, T word-piece tokens, K tags.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from minimner import backend

__all__ = ["plot_crf"]


def plot_crf(crf, emissions, mask=None, tag_names: Sequence[str] | None = None, index: int = 0,
             tokens: Sequence[str] | None = None, show_path: bool = True, allowed=None,
             figsize=None):
    """Heat maps of ``crf.transitions`` and of the marginals P(y_t = k) of one sentence.

    Left: ``transitions[i, j]`` (row = from-tag i, column = to-tag j), with a
    diverging colour map centred on 0. Right: the forward-backward marginals of
    sentence ``index`` over its real positions (rows) and the K tags (columns),
    in [0, 1]; with ``show_path`` the Viterbi path is marked with a dot per row.

    Parameters
    ----------
    crf : :class:`minimner.nn.crf.CRF`
    emissions : (B, T, K) or (T, K) float array (any backend)
    mask : (B, T) or (T,) bool prefix mask (default: all positions real)
    tag_names : K names for the tick labels (default: the tag ids)
    index : which sentence of the batch to draw
    tokens : one label per real position of that sentence (default: positions 0..n−1)
    show_path : mark the Viterbi path on the marginals
    allowed : constraints for that path (see :meth:`CRF.decode`); a (B, T, K)
        ``Constraints.tags`` for the whole batch is cut to sentence ``index``
    figsize : matplotlib figure size (default scales with K and n)

    Returns
    -------
    matplotlib.figure.Figure with two heat-map axes (and their colour bars).
    ``fig.axes[0].images[0]`` holds the (K, K) transitions and
    ``fig.axes[1].images[0]`` the (n, K) marginals.

    Raises
    ------
    ValueError
        for a bad ``index``, ``tag_names`` or ``tokens`` length, or bad shapes.
    """
    from matplotlib.figure import Figure

    K = crf.num_tags
    sel, m, names, rows, B = _sentence(crf, emissions, mask, tag_names, index, tokens)
    marg = backend.asnumpy(crf.marginals(sel, m))[0][:len(rows)]          # (n, K) host: plotting edge
    trans = backend.asnumpy(crf.transitions.data).astype(np.float64)      # (K, K)
    n = len(rows)
    if figsize is None:
        figsize = (4 + 0.9 * K, max(3.5, 0.45 * K, 0.3 * n + 1.5))
    fig = Figure(figsize=figsize, layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})
    _draw_transitions(fig, ax_t, trans, names)
    im = ax_m.imshow(marg, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax_m.set_xticks(range(K), names, rotation=90)
    ax_m.set_yticks(range(n), rows)
    ax_m.set_xlabel("tag k")
    ax_m.set_title(f"P(y_t = k), sentence {index}")
    if show_path:
        tags_ok = getattr(allowed, "tags", None)
        if tags_ok is not None and tags_ok.ndim == 3 and tags_ok.shape[0] == B:   # per-sentence: keep ours
            allowed = allowed._replace(tags=tags_ok[index:index + 1])             # (1, T, K)
        path = crf.decode(sel, m, allowed=allowed)[0]                     # list of n tag ids
        ax_m.plot(path, range(n), "o", color="white", markeredgecolor="black", markersize=5,
                  label="Viterbi path")
        ax_m.legend(loc="upper right", fontsize="small", framealpha=0.7)
    fig.colorbar(im, ax=ax_m, shrink=0.8)
    return fig


def _sentence(crf, emissions, mask, tag_names, index: int, tokens):
    """Sentence ``index`` of the batch and its labels, checked: (sel, m, names, rows, B).

    sel : (1, T, K) emissions; m : (1, T) mask or None; names : K tag labels;
    rows : n labels, one per real position; B : the batch size.
    """
    K = crf.num_tags
    if getattr(emissions, "ndim", None) == 2:          # one sentence: add the batch axis
        emissions = emissions[None]                    # (1, T, K)
        mask = None if mask is None else mask[None]    # (1, T)
    if getattr(emissions, "ndim", None) != 3:
        raise ValueError(f"emissions must be (B, T, K) or (T, K), got shape {getattr(emissions, 'shape', None)}")
    B, T, _ = emissions.shape
    if not 0 <= index < B:
        raise ValueError(f"index {index} is out of range for a batch of {B}")
    names = [str(k) for k in range(K)] if tag_names is None else [str(n) for n in tag_names]
    if len(names) != K:
        raise ValueError(f"tag_names has {len(names)} names but the CRF has {K} tags")
    sel = emissions[index:index + 1]                                       # (1, T, K)
    m = None if mask is None else mask[index:index + 1]                    # (1, T)
    n = T if m is None else int(backend.asnumpy(m).astype(bool).sum())
    rows = [str(t) for t in range(n)] if tokens is None else [str(w) for w in tokens]
    if len(rows) != n:
        raise ValueError(f"tokens has {len(rows)} entries but sentence {index} has {n} real positions")
    return sel, m, names, rows, B


def _draw_transitions(fig, ax, trans, names) -> None:
    """Heat map of the (K, K) transitions on ``ax``, centred on 0, with its colour bar."""
    K = len(names)
    lim = float(np.abs(trans).max()) or 1.0
    im = ax.imshow(trans, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(K), names, rotation=90)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("to tag j")
    ax.set_ylabel("from tag i")
    ax.set_title("transitions[i, j]")
    fig.colorbar(im, ax=ax, shrink=0.8)
