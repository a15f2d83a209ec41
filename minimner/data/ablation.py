"""Per-channel controls at test time: one channel of a tweet's picture withheld or taken from another tweet.

The multimodal tagger reads two channels of a tweet's picture: the ResNet grid (the *pixels*, as
``regions`` and ``region_mask``) and the detector's object labels (``objects``). To see which
channel a trained model uses, the same model scores the test split again with one channel changed
and the other kept as the tweet's own (:class:`ChannelAblation`, wrapping the split's
:class:`~minimner.data.multimodal.MultimodalSource`):

=====================  =====================================================================
``no_pixels``          every picture reads as missing (region mask all 0, grid zero); objects kept
``no_objects``         no object labels (every slot empty); pixels kept
``shuffled_pixels``    each tweet gets another tweet's grid; its own objects kept
``shuffled_objects``   each tweet gets another tweet's object labels; its own pixels kept
=====================  =====================================================================

The shuffles are one random cyclic permutation of the tweets that have a picture (so no tweet
keeps its own), drawn from ``seed``. Tweets without a picture keep having none.

Dimension legend: B batch, R regions, C_img image feature size, O object slots.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import numpy as np

__all__ = ["CHANGES", "ChannelAblation", "cyclic_remap"]

#: The per-channel changes :class:`ChannelAblation` knows.
CHANGES = ("no_pixels", "no_objects", "shuffled_pixels", "shuffled_objects")


def cyclic_remap(image_ids: Sequence[str], seed: int = 0) -> dict:
    """``{image id: another image id}``: a random cyclic permutation (nobody keeps its own; ids sorted first)."""
    ids = sorted(set(image_ids))
    if len(ids) < 2:
        raise ValueError("a shuffle needs at least two pictures")
    order = [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    return {order[k]: order[(k + 1) % len(order)] for k in range(len(order))}


class ChannelAblation:
    """A source (``inputs(batch, dtype)``) giving ``source``'s inputs with one channel changed.

    Parameters
    ----------
    source : the split's image/object source (``inputs(batch, dtype) -> {"regions", "region_mask",
        "objects"}``).
    change : one of :data:`CHANGES`.
    image_ids : the ids of the tweets whose pictures the shuffles permute (e.g. the test tweets
        with a picture); unused by the ``no_*`` changes.
    seed : seed of the shuffle.

    Raises
    ------
    ValueError
        for an unknown change, or a shuffle over fewer than two pictures.
    """

    def __init__(self, source, change: str, image_ids: Sequence[str] = (), seed: int = 0):
        if change not in CHANGES:
            raise ValueError(f"unknown channel change {change!r}; expected one of {', '.join(CHANGES)}")
        self.source, self.change = source, change
        self.remap = cyclic_remap(image_ids, seed) if change.startswith("shuffled") else None

    def _remapped(self, batch):
        """A shallow copy of ``batch`` whose sentences carry the other tweets' image ids."""
        other = copy.copy(batch)
        other.sentences = [s if s.image_id not in self.remap else dataclasses.replace(s, image_id=self.remap[s.image_id])
                           for s in batch.sentences]
        return other

    def inputs(self, batch, dtype=np.float32) -> dict:
        own = self.source.inputs(batch, dtype)
        if self.change == "no_pixels":
            return dict(own, regions=None, region_mask=None)
        if self.change == "no_objects":
            return dict(own, objects=None)
        moved = self.source.inputs(self._remapped(batch), dtype)
        if self.change == "shuffled_pixels":
            return dict(own, regions=moved["regions"], region_mask=moved["region_mask"])
        return dict(own, objects=moved["objects"])
