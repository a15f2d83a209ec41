"""Every model input of a batch, built in one place: the :class:`Collator`.

A tagger reads nothing but its batch. The collator turns encoded examples into a
:class:`~minimner.data.batching.Batch` holding every array either tagger reads, each moved to
the device once, and it owns the data artefacts those arrays come from (the augmentation
table, the char vocabulary, the split's image features and object table):

=================  ==================  ===================================================
batch field        shape               built from
=================  ==================  ===================================================
``input_ids`` …    (B, T) …            :func:`~minimner.data.batching.make_batch`
``aug``            (B, T, E) float32   ``aug_table`` (:func:`~minimner.data.batching.augment_input`)
``char_ids``       (B, T, Lw) int64    ``char_vocab`` (:func:`~minimner.data.chars.char_ids`)
``regions``        (B, R, C_img)       ``source`` (:class:`~minimner.data.multimodal.MultimodalSource`)
``region_mask``    (B, R) bool         ``source``
``objects``        (B, O) int64        ``source``
=================  ==================  ===================================================

A field whose artefact the collator does not hold stays None; the model says which one it
misses. The image grid keeps its stored layout, region r = w·row + col, so no transpose
happens anywhere between the features file and the model.

Dimension legend: B batch, T word pieces, E augmentation size, Lw characters per word,
R image regions, C_img image feature size, O object slots.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from minimner.data.batching import Batch, Example, augment_input, iterate_batches, make_batch
from minimner.data.chars import MAX_WORDLEN, char_ids

__all__ = ["Collator"]


class Collator:
    """Builds model-ready batches: the text arrays, the augmentation input, char ids, regions and objects.

    Parameters
    ----------
    aug_table : :class:`~minimner.lexicon.augment.AugmentationTable` or None (no ``aug``).
    char_vocab : mapping char → id or None (no ``char_ids``; char-CNN runs need one).
    source : object with ``inputs(batch, dtype) -> {"regions", "region_mask", "objects"}``
        (a :class:`~minimner.data.multimodal.MultimodalSource`, or
        :class:`minimner.explain.SingleImageSource`), or None (no image, no objects).
    max_wordlen : Lw, characters per word of ``char_ids``.
    dtype : float dtype of ``aug`` and ``regions`` (the model's parameter dtype).
    """

    def __init__(self, aug_table=None, char_vocab=None, source=None, max_wordlen: int = MAX_WORDLEN,
                 dtype=np.float32):
        self.aug_table, self.char_vocab, self.source = aug_table, char_vocab, source
        self.max_wordlen, self.dtype = int(max_wordlen), np.dtype(dtype)

    def with_source(self, source) -> "Collator":
        """The same text artefacts with another image/object source (another split)."""
        return Collator(self.aug_table, self.char_vocab, source, self.max_wordlen, self.dtype)

    def add_inputs(self, batch: Batch) -> Batch:
        """Fill ``batch``'s ``aug``, ``char_ids``, ``regions``, ``region_mask`` and ``objects`` (in place)."""
        if self.aug_table is not None:
            batch.aug = augment_input(batch, self.aug_table).astype(self.dtype, copy=False)   # (B, T, E)
        if self.char_vocab is not None:
            batch.char_ids = char_ids(batch, self.char_vocab, self.max_wordlen)               # (B, T, Lw)
        if self.source is not None:
            found = self.source.inputs(batch, self.dtype)
            batch.regions, batch.region_mask = found["regions"], found["region_mask"]         # (B, R, C_img), (B, R)
            batch.objects = found["objects"]                                                  # (B, O)
        return batch

    def __call__(self, examples: Sequence[Example], backend_name: str | None = None,
                 pad_to: int | None = None) -> Batch:
        """One batch of ``examples`` with every input (see :func:`~minimner.data.batching.make_batch`)."""
        return self.add_inputs(make_batch(examples, backend_name, pad_to))

    def batches(self, examples: Sequence[Example], batch_size: int, shuffle: bool = False, rng=None,
                drop_last: bool = False, backend_name: str | None = None,
                pad_to: int | None = None) -> Iterator[Batch]:
        """:func:`~minimner.data.batching.iterate_batches`, each batch with every input."""
        for batch in iterate_batches(examples, batch_size, shuffle, rng, drop_last, backend_name, pad_to):
            yield self.add_inputs(batch)
