"""Data: the CoNLL-with-IMGID reader/writer, tag sets, and padded batches.

* :mod:`minimner.data.conll`: ``Sentence``, ``read_conll``, ``write_conll``, ``read_text``,
  ``read_released_output``, ``DataFormatError``.
* :mod:`minimner.data.labels`: tag ids (docs/data.md §2), auxiliary span tags, IOB repair.
* :mod:`minimner.data.batching`: word -> word-piece labels (``encode_sentence``), ``Batch``,
  ``iterate_batches`` (dynamic padding, seeded shuffling).
* :mod:`minimner.data.inputs`: the ``Collator``, which builds every model input of a batch
  (augmentation vectors, char ids, image regions and their mask, object ids), on the device once.
"""
from minimner.data.batching import (Batch, Example, encode_sentence, encode_sentences,  # noqa: F401
                                    iterate_batches, make_batch)
from minimner.data.conll import (DataFormatError, Sentence, read_conll, read_released_output,  # noqa: F401
                                 read_text, write_conll)
