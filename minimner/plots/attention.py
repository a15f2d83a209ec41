"""Cross-modal attention and fusion-gate figures for one tweet (docs/model.md §2, §6).

What the MGCMT model exposes after a forward (``model.attention``, ``model.gates``)
drawn for a learner:

* :func:`plot_image_attention`: the text→image attention of ONE word over the
  R = g×g region grid (7×7 for ResNet), overlaid on the very picture the grid
  features were computed from (use :func:`feature_crop` to get it);
* :func:`plot_object_attention`: the text→object attention of one word as
  horizontal bars over the O detected-object slots (empty slots drawn apart);
* :func:`plot_gates`: one heat strip per fusion gate over the words, on a fixed
  0..1 colour scale: how much of the image-grid vs object path a word let through;
* :func:`plot_tweet`: one Figure combining the three for a chosen word, under the
  tweet text with that word highlighted (what ``python -m minimner explain`` draws).

Conventions (as :mod:`minimner.plots.crf` and :mod:`minimner.plots.augment`):
matplotlib is imported inside the functions, no pyplot state is touched (a new
:class:`matplotlib.figure.Figure` is created when no ``ax`` is given), so
everything works under the Agg backend. Functions taking ``ax`` return that Axes
(its figure is ``ax.figure``); :func:`plot_tweet` returns its Figure. Array inputs
may be NumPy or CuPy: they are moved to the host here, at the plotting edge.

Region order: the grid features are ``img.reshape(B, C, R)`` of the (B, C, g, g)
ResNet map, so region r = g·row + col, row-major from the top-left of the crop.

Dimension legend: W words of the tweet, R image regions (g×g), O object slots,
h attention heads, C gate channels (the hidden size H for the sigmoid gates).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from minimner import backend
from minimner.vision import images as vi
from minimner.vision.objects import NO_OBJECT, class_name

__all__ = ["feature_crop", "plot_image_attention", "plot_object_attention", "plot_gates", "plot_tweet"]

NO_OBJECT_LABEL = "(no object)"


# --------------------------------------------------------------------------- helpers
def feature_crop(path_or_image, size: int | None = None) -> np.ndarray:
    """The S×S picture the image features were computed from, as an (S, S, 3) uint8 array.

    Applies exactly the evaluation transform of :mod:`minimner.vision.images`
    (EXIF orientation, RGB conversion, shorter side to 256, centre crop 224), so
    an attention grid drawn over it lines up with the regions cell for cell.

    Parameters
    ----------
    path_or_image : str or Path (an image file), a PIL image, or an (H, W, 3) uint8 array
    size : S, the crop size (default :data:`minimner.vision.images.CROP` = 224)

    Returns
    -------
    np.ndarray (S, S, 3) uint8

    Raises
    ------
    ValueError
        when the file cannot be used (the one-line reason of the image loader), or
        for an array that is not (H, W, 3) uint8.
    """
    import os

    from PIL import Image


    size = vi.CROP if size is None else int(size)
    if isinstance(path_or_image, (str, os.PathLike)):
        try:
            im, _ = vi.open_rgb(path_or_image)
        except vi.ImageError as e:
            raise ValueError(f"cannot use image {os.fspath(path_or_image)}: {e}") from None
    elif isinstance(path_or_image, Image.Image):
        im = vi.to_rgb(path_or_image)
    else:
        a = backend.asnumpy(path_or_image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"image array must be (H, W, 3) uint8, got shape {a.shape} dtype {a.dtype}")
        im = Image.fromarray(a, mode="RGB")
    return np.asarray(vi.eval_transform(im, size))                      # (S, S, 3) uint8


def _grid_side(R: int) -> int:
    """g with g·g = R, else ValueError."""
    g = math.isqrt(R)
    if g * g != R or R == 0:
        raise ValueError(f"the number of image regions must be a square g*g (e.g. 49 = 7x7), got R = {R}")
    return g


def _head_mean(probs, last: str, what: str):
    """(L,) or (h, L) probabilities -> ((L,) float64, number of heads averaged or None)."""
    p = backend.asnumpy(probs).astype(np.float64)
    if p.ndim == 1:
        return p, None                                                    # (L,)
    if p.ndim == 2:
        return p.mean(axis=0), p.shape[0]                                 # (h, L) -> (L,)
    raise ValueError(f"{what} must be ({last},) or (heads, {last}), got shape {p.shape}")


def _as_rgb_array(image) -> np.ndarray:
    """A PIL image or an (H, W, 3) array -> (H, W, 3) array for imshow."""
    try:
        from PIL import Image
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))                       # (H, W, 3) uint8
    except ImportError:                                                   # pragma: no cover
        pass
    a = backend.asnumpy(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be a PIL image or an (H, W, 3) array, got shape {a.shape}")
    return a


def _new_axes(figsize):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _word_title(kind: str, word, heads) -> str:
    t = kind if word is None else f"{kind}: {word!r}"
    return t if heads is None else f"{t}\n(mean over {heads} heads)"


# ------------------------------------------------------------------- image attention
def plot_image_attention(image, probs, word: str | None = None, ax=None, alpha: float = 0.55,
                         cmap: str | None = None, mark_max: bool = True, colorbar: bool = True,
                         signed: bool = False):
    """Text→image attention of one word over the g×g region grid, overlaid on the picture.

    ``probs[r]`` is the attention weight the word puts on region r (a softmax over
    the R regions, so it sums to 1); region r = g·row + col is the cell at that row
    and column of the grid, counted from the top-left of the crop. The grid is drawn
    as blocks (nearest, no smoothing: each block is one feature-map cell), on a
    colour scale from 0 to the largest weight.

    Parameters
    ----------
    image : the picture the features came from, (S, S, 3) uint8 array or a PIL image
        (use :func:`feature_crop` so the grid lines up); None draws the grid alone
        (e.g. for a missing image)
    probs : (R,) or (h, R) float array (NumPy or CuPy); with heads, their mean is drawn
        and the title says so
    word : the query word (title)
    ax : matplotlib Axes, optional (a new Figure is created otherwise)
    alpha : opacity of the attention layer over the picture
    cmap : colour map of the attention layer (default inferno; coolwarm when ``signed``)
    signed : draw a signed map (e.g. a word's attention minus the tweet's mean attention) on a
        symmetric scale around 0 instead of 0..max
    mark_max : outline the cell with the largest weight
    colorbar : add a colour bar for the weights

    Returns
    -------
    matplotlib Axes. With an image, ``ax.images[0]`` is the picture and
    ``ax.images[-1]`` the (g, g) attention grid (its array is ``probs.reshape(g, g)``);
    with ``mark_max`` the outline is ``ax.patches[0]`` (gid ``"argmax"``).

    Raises
    ------
    ValueError
        when R is not a square, probs is not (R,) / (h, R), or the image is not (H, W, 3).
    """
    from matplotlib.patches import Rectangle

    p, heads = _head_mean(probs, "R", "probs")                            # (R,)
    g = _grid_side(p.shape[0])
    grid = p.reshape(g, g)                                                # (g, g) grid[row, col] = probs[g*row + col]
    if ax is None:
        ax = _new_axes((5, 4.6))
    if image is not None:
        pic = _as_rgb_array(image)                                        # (Hi, Wi, 3)
        Hi, Wi = pic.shape[:2]
        ax.imshow(pic, extent=(0, Wi, Hi, 0))
    else:
        Hi = Wi = g
    if signed:
        vmax = float(np.abs(grid).max()) or 1.0
        vmin, cmap = -vmax, cmap or "coolwarm"
    else:
        vmax = float(grid.max()) if grid.max() > 0 else 1.0
        vmin, cmap = 0.0, cmap or "inferno"
    im = ax.imshow(grid, extent=(0, Wi, Hi, 0), cmap=cmap, alpha=alpha if image is not None else 1.0,
                   vmin=vmin, vmax=vmax, interpolation="nearest")
    cw, ch = Wi / g, Hi / g                                               # cell width and height in pixels
    ax.set_xticks([cw * (c + 0.5) for c in range(g)], [str(c) for c in range(g)], fontsize=8)
    ax.set_yticks([ch * (r + 0.5) for r in range(g)], [str(r) for r in range(g)], fontsize=8)
    ax.set_xlabel("grid column")
    ax.set_ylabel("grid row")
    ax.set_xlim(0, Wi)
    ax.set_ylim(Hi, 0)
    if mark_max:                                   # described under the axis, so no legend hides a cell
        r = int(np.argmax(p))
        row, col = divmod(r, g)
        ax.add_patch(Rectangle((col * cw, row * ch), cw, ch, fill=False, edgecolor="cyan", linewidth=2.5,
                               gid="argmax"))
        ax.set_xlabel(f"grid column\ncyan box: max, region {r} = row {row}, col {col} (weight {p[r]:.2f})")
    title = _word_title("text→image attention", word, heads)
    ax.set_title(title if image is not None else title + "\n(no image: grid only)", fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label="weight − tweet mean" if signed else "attention weight")
    return ax


# ------------------------------------------------------------------ object attention
def _object_labels(names, O: int) -> list[str]:
    """O tick labels: strings as given; integer COCO ids through their class names."""

    names = list(backend.asnumpy(names).tolist()) if hasattr(names, "shape") else list(names)
    if len(names) != O:
        raise ValueError(f"names has {len(names)} entries but probs has {O} object slots")
    out = []
    for n in names:
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
            out.append(NO_OBJECT_LABEL if int(n) == NO_OBJECT else class_name(int(n)))
        else:
            out.append(str(n))
    return out


def plot_object_attention(probs, names: Sequence, mask=None, word: str | None = None, ax=None):
    """Text→object attention of one word as horizontal bars over the object slots.

    ``probs[o]`` is the weight the word puts on object slot o (a softmax over the
    O slots). Empty slots (``mask[o]`` False) are masked as keys with the finite
    additive −10000, so they normally get ~0; they are drawn hatched in grey and
    labelled "(no object)".

    When *every* slot is masked (an image without detections), the −10000 is the
    same for all keys and the softmax shift cancels it: the word then spreads a
    uniform 1/O over O copies of the processed "no object" (row-0) embedding, which
    acts as a learned null object (docs/model.md §2 step 9). The bars are then all 1/O by
    design, not a bug; the title says so.

    Parameters
    ----------
    probs : (O,) or (h, O) float array (NumPy or CuPy); with heads, their mean is drawn
    names : O labels, strings or COCO ids (0 = no object) as in
        :mod:`minimner.vision.objects`
    mask : (O,) bool, True for a real object (default: ``names`` ids ≠ 0 when ids are
        given, else all real)
    word : the query word (title)
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes; ``ax.patches`` are the O bars in slot order (slot 0 at the top),
    their widths equal the probabilities.

    Raises
    ------
    ValueError
        for probs not (O,) / (h, O), or names / mask of another length than O.
    """
    p, heads = _head_mean(probs, "O", "probs")                            # (O,)
    O = p.shape[0]
    labels = _object_labels(names, O)
    if mask is None:
        raw = list(backend.asnumpy(names).tolist()) if hasattr(names, "shape") else list(names)
        ids = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in raw)
        m = np.array([int(n) != 0 for n in raw], bool) if ids else np.ones(O, bool)   # (O,)
    else:
        m = backend.asnumpy(mask).astype(bool).reshape(-1)                # (O,)
        if m.shape[0] != O:
            raise ValueError(f"mask has {m.shape[0]} entries but probs has {O} object slots")
    labels = [lab if m[o] else NO_OBJECT_LABEL for o, lab in enumerate(labels)]
    if ax is None:
        ax = _new_axes((5, 0.9 + 0.45 * max(O, 1)))
    y = np.arange(O)                                                      # (O,) slot 0 at the top
    colours = ["tab:orange" if m[o] else "0.8" for o in range(O)]
    bars = ax.barh(y, p, color=colours, edgecolor="0.3")
    for o, bar in enumerate(bars):
        bar.set_gid(f"slot{o}")
        if not m[o]:
            bar.set_hatch("//")
        ax.text(p[o], o, f" {p[o]:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{o}: {lab}" for o, lab in enumerate(labels)])
    for o, t in enumerate(ax.get_yticklabels()):
        if not m[o]:
            t.set_color("0.45")
            t.set_fontstyle("italic")
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(p.max()) * 1.2) if O else 1.0)
    ax.set_xlabel("attention weight")
    title = _word_title("text→object attention", word, heads)
    if O and not m.any():
        title += "\n(no objects: uniform over null-object copies)"
    ax.set_title(title, fontsize=10)
    return ax


# ------------------------------------------------------------------------------ gates
def _gate_rows(gates: Mapping[str, object], W: int):
    """mapping name -> (W,) or (W, C) -> (names, (G, W) float64 means over C)."""
    names, rows = [], []
    for name, v in gates.items():
        a = backend.asnumpy(v).astype(np.float64)
        if a.ndim == 2:
            a = a.mean(axis=1)                                            # (W, C) -> (W,)
        if a.ndim != 1 or a.shape[0] != W:
            raise ValueError(f"gate {name!r} must be ({W},) or ({W}, C) for {W} words, got shape "
                             f"{backend.asnumpy(v).shape}")
        if not np.all(np.isfinite(a)) or a.min() < -1e-6 or a.max() > 1 + 1e-6:
            raise ValueError(f"gate {name!r} must hold values in [0, 1], got range "
                             f"[{np.nanmin(a):.4g}, {np.nanmax(a):.4g}]")
        names.append(str(name))
        rows.append(a)
    return names, (np.stack(rows) if rows else np.zeros((0, W)))         # (G, W)


def plot_gates(words: Sequence[str], gates: Mapping[str, object], ax=None, highlight: int | None = None,
               annotate: bool | None = None):
    """Heat strips of the fusion gates over the words, on the fixed colour scale 0..1.

    One row per gate, one column per word. A sigmoid gate g mixes two inputs as
    ``g·a + (1 − g)·b`` per channel; the strip shows the mean over the C channels,
    so a cell near 1 means that word took mostly the first input of that gate
    (e.g. for method 2's ``image`` gate g1: U_img over U_imgtxt), near 0 mostly the
    second. For a gate over several paths (method 3's ``paths`` β, (W, 4)) the mean
    is always 1/4: pass its columns as separate entries instead.

    Parameters
    ----------
    words : W strings (column labels)
    gates : mapping name -> (W,) or (W, C) float array (NumPy or CuPy), values in [0, 1]
        (e.g. ``{k: v[b, rows] for k, v in model.gates.items()}`` for one tweet)
    ax : matplotlib Axes, optional
    highlight : a word index whose column is outlined
    annotate : write the value in each cell (default: when W ≤ 30)

    Returns
    -------
    matplotlib Axes; ``ax.images[0]`` holds the (G, W) array of means (rows in the
    order of ``gates``). With no gates (fusion methods 0 and 4) the Axes only says so.

    Raises
    ------
    ValueError
        for a gate whose shape does not match the W words or whose values leave [0, 1],
        or a bad ``highlight``.
    """
    from matplotlib.patches import Rectangle

    words = [str(w) for w in words]
    W = len(words)
    names, vals = _gate_rows(gates, W)                                    # (G, W)
    if highlight is not None and not 0 <= highlight < W:
        raise ValueError(f"highlight {highlight} is out of range for {W} words")
    G = len(names)
    if ax is None:
        ax = _new_axes((max(4.0, 0.55 * W + 2.5), 0.9 + 0.5 * max(G, 1)))
    if G == 0:
        ax.text(0.5, 0.5, "this fusion has no gates", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    im = ax.imshow(vals, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    if annotate if annotate is not None else W <= 30:
        for r in range(G):
            for c in range(W):
                ax.text(c, r, f"{vals[r, c]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if vals[r, c] < 0.5 else "black")
    ax.set_xticks(range(W), words, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(G), names)
    if highlight is not None:
        ax.add_patch(Rectangle((highlight - 0.5, -0.5), 1, G, fill=False, edgecolor="red", linewidth=2,
                               gid="highlight"))
        ax.get_xticklabels()[highlight].set_fontweight("bold")
    ax.set_title("fusion gates (mean over channels)", fontsize=10)
    ax.figure.colorbar(im, ax=ax, label="gate value", shrink=0.9)
    return ax


# -------------------------------------------------------------------------- one tweet
def _tweet_text(ax, words: Sequence[str], word_index: int, per_line: int = 90, counterfactuals=None) -> None:
    """The tweet's words left to right (wrapped), the chosen one on a yellow box; then one line per
    entry of ``counterfactuals`` (label -> tags): the entities it decodes, the chosen word's tag first."""
    lines, cur, n = [], [], 0
    for i, w in enumerate(words):
        if cur and n + len(w) + 1 > per_line:
            lines.append(cur)
            cur, n = [], 0
        cur.append(i)
        n += len(w) + 1
    if cur:
        lines.append(cur)
    ax.set_axis_off()
    cf = dict(counterfactuals or {})
    step = 1.0 / (len(lines) + len(cf) + 1)
    for li, idx in enumerate(lines):
        prev = None
        for i in idx:
            kw = dict(fontsize=11, va="center", gid=f"word{i}")
            if i == word_index:
                kw.update(fontweight="bold", bbox=dict(boxstyle="round,pad=0.2", fc="gold", ec="darkorange"))
            if prev is None:
                prev = ax.text(0.0, 1.0 - step * (li + 1), words[i], transform=ax.transAxes, **kw)
            else:                                  # chain each word after the previous one's right edge
                prev = ax.annotate(words[i], xy=(1, 0.5), xycoords=prev, xytext=(5, 0),
                                   textcoords="offset points", **kw)
    for k, (label, tags) in enumerate(cf.items()):
        ents = " ".join(f"{w}/{t}" for w, t in zip(words, tags) if t != "O") or "(no entity)"
        ax.text(0.0, 1.0 - step * (len(lines) + k + 1), f"{label}: {words[word_index]!r} → {tags[word_index]}"
                f"     [{ents}]", transform=ax.transAxes, fontsize=10, va="center", family="monospace",
                gid=f"counterfactual{k}")


def _tweet_rows(words, txt2img, txt2obj, gates, word_index: int, counterfactuals):
    """The chosen word's rows, checked: its text→image map, that map minus the tweet's mean map, its
    text→object map, and the counterfactual tags (a dict). Raises ValueError for mismatched shapes."""
    W = len(words)
    if not 0 <= word_index < W:
        raise ValueError(f"word_index {word_index} is out of range for {W} words")

    def row(att, name, last):
        a = backend.asnumpy(att)
        if a.ndim not in (2, 3) or a.shape[-2] != W:
            raise ValueError(f"{name} must be (W, {last}) or (heads, W, {last}) with W = {W}, got shape {a.shape}")
        return a[..., word_index, :]                                      # (L,) or (h, L)

    p_img = row(txt2img, "txt2img", "R")
    a = backend.asnumpy(txt2img)
    a = a.mean(axis=0) if a.ndim == 3 else a                              # (W, R) head mean
    p_own = a[word_index] - a.mean(axis=0)                                # (R,) this word's row minus the tweet's mean
    p_obj = row(txt2obj, "txt2obj", "O")
    _gate_rows(gates, W)                                                  # validate before drawing anything
    cf = dict(counterfactuals or {})
    for label, tags in cf.items():
        if len(tags) != W:
            raise ValueError(f"counterfactual {label!r} has {len(tags)} tags for {W} words")
    return p_img, p_own, p_obj, cf


def plot_tweet(image, words: Sequence[str], txt2img, txt2obj, object_names: Sequence, object_mask, gates,
               word_index: int, title: str | None = None, figsize=None, counterfactuals=None):
    """One tweet explained for one word: text, image attention, object attention, gates.

    Layout: the tweet text on top with word ``word_index`` highlighted (and, given
    ``counterfactuals``, one line of tags per input setting under it); below it the word's
    text→image attention over the picture (:func:`plot_image_attention`), the same row minus
    the mean row of all the tweet's words (signed: where *this* word looks more, red, or less,
    blue, than the tweet's words on average) and its text→object attention
    (:func:`plot_object_attention`); at the bottom the fusion gates of every word, the chosen
    column outlined (:func:`plot_gates`). Every panel but the gates (all words, chosen one
    outlined) shows the chosen word's own row: two words with different attention rows give
    different panels.

    The attention rows are per *word*: from the model's (B, h, T, ·) maps take one
    tweet and the rows of the words' first word pieces, e.g.
    ``model.attention["txt2img"][b][:, first_piece]`` → (h, W, R).

    Parameters
    ----------
    image : (S, S, 3) uint8 eval crop or PIL image (see :func:`feature_crop`), or None
    words : W strings
    txt2img : (W, R) or (h, W, R) float array
    txt2obj : (W, O) or (h, W, O) float array
    object_names : O labels (strings, or COCO ids)
    object_mask : (O,) bool or None (see :func:`plot_object_attention`)
    gates : mapping name -> (W,) or (W, C), values in [0, 1] (may be empty)
    word_index : the word to explain, 0 ≤ word_index < W
    title : figure title (default: the chosen word)
    counterfactuals : optional mapping label -> W tags (e.g. ``{"MGCMT": tags, "without the
        picture": tags, …}``), printed under the tweet with the chosen word's tag marked
    figsize : matplotlib figure size (default (17.5, ~9))

    Returns
    -------
    matplotlib.figure.Figure. ``fig.axes[:5]`` are the text, image-attention, own-attention,
    object-attention and gate Axes (labels ``"text"``, ``"image"``, ``"own"``, ``"objects"``,
    ``"gates"``), followed by the colour bars.

    Raises
    ------
    ValueError
        for a bad ``word_index`` or attention / gate shapes that do not match the words.
    """
    from matplotlib.figure import Figure

    words = [str(w) for w in words]
    W = len(words)
    p_img, p_own, p_obj, cf = _tweet_rows(words, txt2img, txt2obj, gates, word_index, counterfactuals)
    n_lines = 1 + sum(len(w) + 1 for w in words) // 90 + len(cf)
    G = max(len(gates), 1)
    n_img = 2
    if figsize is None:
        figsize = (max(12.0 + 5.5 * (n_img - 1), 0.55 * W + 3), 7.0 + 0.3 * n_lines + 0.45 * G)
    fig = Figure(figsize=figsize, layout="constrained")
    gs = fig.add_gridspec(3, n_img + 1, height_ratios=[0.45 + 0.3 * n_lines, 5.0, 1.0 + 0.45 * G],
                          width_ratios=[1.1] * n_img + [1.0])
    ax_txt = fig.add_subplot(gs[0, :], label="text")
    ax_img = fig.add_subplot(gs[1, 0], label="image")
    ax_own = fig.add_subplot(gs[1, 1], label="own")
    ax_obj = fig.add_subplot(gs[1, n_img], label="objects")
    ax_gate = fig.add_subplot(gs[2, :], label="gates")
    _tweet_text(ax_txt, words, word_index, counterfactuals=cf)
    plot_image_attention(image, p_img, word=words[word_index], ax=ax_img)
    plot_image_attention(image, p_own, word=words[word_index], ax=ax_own, signed=True)
    ax_own.set_title(f"{words[word_index]!r} → image, minus the mean of the tweet's {W} words\n"
                     "(red: this word looks there more than the others)", fontsize=10)
    plot_object_attention(p_obj, object_names, object_mask, word=words[word_index], ax=ax_obj)
    plot_gates(words, gates, ax=ax_gate, highlight=word_index)
    fig.suptitle(title if title is not None else f"word {word_index}: {words[word_index]!r}", fontsize=12)
    return fig
