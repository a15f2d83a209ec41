"""Plots of semantic-augmentation neighbours (docs/augmentation.md §1).

* :func:`plot_word_neighbours`: one word's k neighbours as horizontal bars of
  their softmax weights, each annotated with its cosine similarity.
* :func:`plot_neighbour_heatmap`: several words at once, a (words × rank) heat
  map of the weights with the neighbour word and similarity written in each cell.

Both take the inspection dictionaries of
:func:`minimner.lexicon.neighbours.describe_neighbours` or
:meth:`minimner.lexicon.augment.AugmentationTable.describe` (anything with a
``"neighbours"`` list of ``{"word", "similarity", "weight"}``), draw on a given
matplotlib ``Axes`` (or a new figure) and return the ``Axes``. matplotlib is
imported inside the functions.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["plot_word_neighbours", "plot_neighbour_heatmap"]


def _neighbours(entry) -> list[dict]:
    """The neighbour list of an inspection entry (a dict with "neighbours", or the list itself)."""
    if isinstance(entry, Mapping):
        return list(entry.get("neighbours", []))
    return list(entry)


def plot_word_neighbours(word: str, entry, ax=None):
    """Bar chart of one word's neighbours: bar length = softmax weight, label = similarity.

    Parameters
    ----------
    word : str, the query word (title)
    entry : dict with ``"neighbours"`` (or the list itself), best first
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    nbrs = _neighbours(entry)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * max(1, len(nbrs))))
    if not nbrs:
        ax.text(0.5, 0.5, f"{word!r} is not in the lexicon", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    names = [n["word"] for n in nbrs]
    weights = np.array([n["weight"] for n in nbrs], dtype=float)            # (k,)
    sims = np.array([n["similarity"] for n in nbrs], dtype=float)           # (k,)
    y = np.arange(len(nbrs))                                                 # (k,) rank 0 at the top
    ax.barh(y, weights, color="tab:blue")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    for yi, w, s in zip(y, weights, sims):
        ax.text(w, yi, f"  cos {s:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, weights.max() * 1.35))
    ax.set_xlabel("softmax weight α")
    ax.set_title(f"neighbours of {word!r}")
    return ax


def plot_neighbour_heatmap(entries: Mapping[str, object], ax=None, words: Sequence[str] | None = None):
    """Heat map of several words' neighbour weights (rows: words, columns: rank 1..k).

    Parameters
    ----------
    entries : mapping word -> dict with ``"neighbours"`` (e.g. ``describe_neighbours`` output)
    ax : matplotlib Axes, optional
    words : the rows to draw, in order (default: every key of ``entries``)

    Returns
    -------
    matplotlib Axes (the image is ``ax.images[0]``; words without neighbours are blank rows)
    """
    import matplotlib.pyplot as plt

    words = list(entries) if words is None else list(words)
    k = max([len(_neighbours(entries[w])) for w in words] + [1])
    weights = np.full((len(words), k), np.nan)                               # (W, k), NaN = no neighbour
    labels = [[""] * k for _ in words]
    for r, w in enumerate(words):
        for c, n in enumerate(_neighbours(entries[w])):
            weights[r, c] = n["weight"]
            labels[r][c] = f"{n['word']}\n{n['similarity']:.2f}"
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * k + 1.5, 0.6 * len(words) + 1))
    im = ax.imshow(np.ma.masked_invalid(weights), cmap="Blues", aspect="auto", vmin=0.0,
                   vmax=max(1e-9, np.nanmax(weights)) if np.isfinite(weights).any() else 1.0)
    for r in range(len(words)):
        for c in range(k):
            if labels[r][c]:
                ax.text(c, r, labels[r][c], ha="center", va="center", fontsize=7)
    ax.set_xticks(np.arange(k), [str(i + 1) for i in range(k)])
    ax.set_yticks(np.arange(len(words)), words)
    ax.set_xlabel("neighbour rank (cell: word, cosine similarity; colour: softmax weight)")
    ax.figure.colorbar(im, ax=ax, label="α")
    return ax
