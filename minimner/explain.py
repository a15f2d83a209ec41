"""Explaining one tweet with a trained MGCMT: its tags, where each word looked in the picture and the objects.

:func:`explain_tweet` runs the model once on one tweet (eval mode) and returns an
:class:`Explanation`: the predicted tags, and for every *word* (its first word piece)
the real attention probabilities of the cross-modal layers the forward pass keeps
(docs/differences.md §5): text → image grid (``txt2img``, H × W × R), text → objects (``txt2obj``,
H × W × O), and the fusion's gate values (``image`` = g1 over the grid paths, ``object``
= g2 over the object paths; W × C), and the text→image attention rolled out through the
image self-attention (:func:`rollout`), which is where a word's image information really
comes from. :meth:`Explanation.figure` draws them with
:func:`minimner.plots.attention.plot_tweet`.

The picture of a tweet comes either from the data (a ``features`` folder, through a
:class:`~minimner.data.multimodal.MultimodalSource`) or from an image file
(:func:`image_grid`: the same eval transform and ResNet as the ``features`` command),
and the objects from the run's object table or a list of COCO names.

Dimension legend: W words, T word pieces, H heads, R regions (49), O object slots (5),
C hidden, C_img image feature size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from minimner import backend
from minimner.constraints import paper_constraints
from minimner.data.batching import encode_sentences
from minimner.data.conll import Sentence
from minimner.data.inputs import Collator
from minimner.data.labels import MAIN_TAGS
from minimner.models.text_crf import piece_word_mask
from minimner.plots.attention import plot_tweet
from minimner.plots.crf import plot_crf
from minimner.vision.features import FeatureExtractor, load_resnet
from minimner.vision.objects import class_name, object_ids

__all__ = ["Explanation", "SingleImageSource", "counterfactual_tags", "explain_tweet", "image_grid", "rollout"]


class SingleImageSource:
    """A :class:`~minimner.data.multimodal.MultimodalSource` stand-in for one tweet with given inputs.

    Parameters
    ----------
    grid : (R, C_img) float32 region features, or None (no image).
    grid_hw : (h, w) with h·w = R (default square).
    objects : sequence of COCO names or ids (detector order), or None.
    slots : O.
    """

    def __init__(self, grid=None, grid_hw=None, objects=None, slots: int = 5):
        self.grid = None if grid is None else np.asarray(grid, dtype=np.float32)
        if self.grid is not None:
            R = self.grid.shape[0]
            side = int(round(R ** 0.5))
            self.grid_hw = tuple(grid_hw) if grid_hw is not None else (side, side)
            if self.grid.ndim != 2 or self.grid_hw[0] * self.grid_hw[1] != R:
                raise ValueError(f"grid must be (R, C_img) with R = h·w; got shape {self.grid.shape}, h×w "
                                 f"{self.grid_hw}")
        self.objects = None if objects is None else object_ids(list(objects), slots)[0]   # (O,)

    def inputs(self, batch, dtype=np.float32) -> dict:
        """As :meth:`minimner.data.multimodal.MultimodalSource.inputs`: the one grid for every tweet."""
        where = backend.device_of(batch.input_ids)
        B = len(batch)
        out = {"regions": None, "region_mask": None, "objects": None}
        if self.grid is not None:
            R, Ci = self.grid.shape
            regions = np.broadcast_to(self.grid.astype(dtype, copy=False), (B, R, Ci))    # (B, R, C_img)
            out["regions"] = backend.asarray(np.ascontiguousarray(regions), backend=where)
            out["region_mask"] = backend.asarray(np.ones((B, R), dtype=bool), backend=where)
        if self.objects is not None:
            out["objects"] = backend.asarray(np.tile(self.objects, (B, 1)), backend=where)
        return out


@dataclass
class Explanation:
    """What the model did with one tweet (host NumPy arrays, one row per word)."""

    words: list                   # W words
    tags: list                    # W predicted tags
    txt2img: np.ndarray           # (H, W, R) text → image-grid attention (path 1)
    txt2obj: np.ndarray           # (H, W, O) text → object attention (path 1)
    objects: np.ndarray           # (O,) object ids (0 = empty slot)
    has_image: bool               # whether the tweet had image features
    gates: dict = field(default_factory=dict)   # name -> (W, C) gate values in (0, 1)
    rollout: np.ndarray | None = None   # (W, R) txt2img rolled out through img2img (see explain_tweet)
    pieces: list = field(default_factory=list)           # n word-piece strings ([CLS] … [SEP])
    emissions: np.ndarray | None = None  # (n, K) main CRF emissions of the real pieces
    word_mask: np.ndarray | None = None  # (n,) bool, True at each word's first piece

    def entity_words(self) -> list[int]:
        """Indices of the words predicted as part of an entity (not O)."""
        return [i for i, t in enumerate(self.tags) if t != "O"]

    def default_word(self) -> int:
        """The word to show by default: the first predicted entity word, else the first word."""
        ents = self.entity_words()
        return ents[0] if ents else 0

    def figure(self, picture=None, word: int | None = None, title: str | None = None, counterfactuals=None):
        """The one-tweet figure (:func:`minimner.plots.attention.plot_tweet`) for word ``word``.

        ``picture``: the (224, 224, 3) crop the features came from
        (:func:`minimner.plots.attention.feature_crop`), or None to draw the grid alone.
        ``counterfactuals``: label -> W tags the model gives with an input changed, one line each.
        """
        w = self.default_word() if word is None else int(word)
        names = [class_name(int(i)) if i else "" for i in self.objects]
        tagged = " ".join(f"{x}/{t}" if t != "O" else x for x, t in zip(self.words, self.tags))
        return plot_tweet(picture, self.words, self.txt2img, self.txt2obj, names, self.objects != 0, self.gates,
                          w, title=title or tagged, counterfactuals=counterfactuals)

    def crf_figure(self, crf, constrained: bool = True):
        """The main CRF's transitions and this tweet's per-piece marginals with its Viterbi path.

        :func:`minimner.plots.crf.plot_crf` on :attr:`emissions`; with ``constrained`` the
        path is the constrained one the tags above came from (docs/differences.md §3).
        """
        if self.emissions is None:
            raise ValueError("this Explanation has no emissions (built by an older explain_tweet?)")
        allowed = paper_constraints(self.word_mask[None], xp=np) if constrained else None
        return plot_crf(crf, self.emissions, tag_names=MAIN_TAGS, tokens=self.pieces, allowed=allowed)


def explain_tweet(model, tokenizer, words: Sequence[str], source=None, image_id: str | None = None,
                  constrained: bool = True, collator=None) -> Explanation:
    """Run ``model`` (an MGCMT) once on one tweet and keep its tags, attention maps and gates per word.

    Parameters
    ----------
    model : MGCMT (put in eval mode here).
    tokenizer : the run's tokenizer.
    words : the tweet's words.
    source : MultimodalSource / SingleImageSource, or None (no image, no objects).
    image_id : the tweet's image id (for a MultimodalSource).
    constrained : constrained Viterbi (default) or plain.
    collator : the run's :class:`~minimner.data.inputs.Collator` (augmentation table, char
        vocabulary; :func:`minimner.train.run_collator`); ``source`` replaces its image source.
        Default: ``Collator(source=source)``.

    Raises
    ------
    ValueError
        for an empty tweet or a model that is not cross-modal.
    """
    words = list(words)
    if not words:
        raise ValueError("the tweet has no words")
    collator = Collator(source=source) if collator is None else collator.with_source(source)
    model.eval()
    [example] = encode_sentences(tokenizer, [Sentence(words=words, image_id=image_id)])
    batch = collator([example])
    seen = model.explain(batch, constrained=constrained)                   # one forward, no caches
    if not seen["attention"]:
        raise ValueError("explain needs a cross-modal (mgcmt) model; this run is text-only")
    first = backend.asnumpy(batch.first_piece)[0]                          # (W,) first pieces
    att = {k: backend.asnumpy(v)[0] for k, v in seen["attention"].items()}  # (H, Lq, Lk)
    gates = {k: backend.asnumpy(v)[0][first] for k, v in seen["gates"].items() if v.ndim == 3}
    objects = (backend.asnumpy(batch.objects)[0] if batch.objects is not None
               else np.zeros(model.config.object_slots, dtype=np.int64))
    return Explanation(words=words, tags=seen["tags"][0], txt2img=att["txt2img"][:, first],
                       txt2obj=att["txt2obj"][:, first], objects=objects, has_image=batch.regions is not None,
                       gates=gates, rollout=rollout(att["txt2img"][:, first], att["img2img"]),
                       pieces=tokenizer.convert_ids_to_tokens(example.input_ids.tolist()),
                       emissions=backend.asnumpy(seen["emissions"])[0].astype(np.float32),
                       word_mask=backend.asnumpy(piece_word_mask(batch))[0])


def counterfactual_tags(model, tokenizer, words: Sequence[str], grid=None, objects=None, other=None, collator=None,
                        constrained: bool = True) -> dict:
    """The tags an MGCMT gives one tweet as given (``MGCMT``) and with one input changed: what each channel decides.

    ``grid``: the tweet's picture as an (R, C_img) region grid, read as the run reads its
    features (standardised where the run's are), or None; ``objects``: its detector labels
    (COCO names), or None; ``other``: another picture's grid, or None. Returns label -> W tags
    for ``MGCMT``, ``without the picture`` (when it has one), ``without the objects`` (when it
    has some) and ``with another picture`` (when ``other`` is given; the tweet's own objects).
    ``collator``: the run's text-side inputs (:func:`minimner.train.run_text_collator`).
    """
    slots = model.config.object_slots
    settings = {"MGCMT": SingleImageSource(grid, objects=objects, slots=slots)}
    if grid is not None:
        settings["without the picture"] = SingleImageSource(None, objects=objects, slots=slots)
    if objects:
        settings["without the objects"] = SingleImageSource(grid, objects=None, slots=slots)
    if other is not None:
        settings["with another picture"] = SingleImageSource(other, objects=objects, slots=slots)
    return {label: explain_tweet(model, tokenizer, words, source, constrained=constrained, collator=collator).tags
            for label, source in settings.items()}


def rollout(txt2img, img2img):
    """Text→image attention rolled out through the image self-attention (attention rollout).

    The text reads the regions *after* ``img2img_attention`` has mixed them (docs/model.md §2 step 5),
    so a word that attends to region j really reads the regions that j attended to, plus j
    itself through the layer's residual. With head-averaged maps and the residual counted as
    half (Abnar & Zuidema, 2020)::

        rollout[w] = mean_h txt2img[h, w] @ (½ I + ½ mean_h img2img[h])

    Parameters
    ----------
    txt2img : (H, W, R) the words' text→image attention.
    img2img : (H, R, R) the image self-attention of the same tweet (query region, key region).

    Returns
    -------
    (W, R): each row sums to one.
    """
    a = txt2img.mean(axis=0)                                               # (W, R)
    R = a.shape[-1]
    flow = 0.5 * np.eye(R, dtype=a.dtype) + 0.5 * img2img.mean(axis=0)     # (R, R) residual + attention
    return a @ flow                                                        # (W, R) @ (R, R) -> (W, R)


def image_grid(path, arch: str, weights, size: int = 224):
    """(R, C_img) region features of one image file, exactly as the ``features`` command computes them.

    Eval transform (resize 256 + centre crop), the converted ResNet ``weights`` (BN folded), region
    r = w·row + col. Returns None when the image is missing or unreadable (then: no image).
    """
    grid, _ = FeatureExtractor(load_resnet(weights, arch), size=size, arch=arch).grid(path)
    return grid                                                               # (R, C_img) or None


def resnet_weights_for(info: dict, override=None) -> Path:
    """The ResNet weights of a run's features: ``override``, else the path the features command recorded.

    Raises
    ------
    FileNotFoundError
        when neither exists (pass ``--resnet FILE``).
    """
    if override:
        p = Path(override)
        if not p.is_file():
            raise FileNotFoundError(f"--resnet: file not found: {p}")
        return p
    settings = info.get("features_settings") or {}
    rec = settings.get("weights_path")
    if rec and Path(rec).is_file():
        return Path(rec)
    raise FileNotFoundError(f"the run's ResNet weights ({settings.get('weights', 'unknown')}) are not at a recorded "
                            "path: pass --resnet FILE (the converted .npz the features were made with)")
