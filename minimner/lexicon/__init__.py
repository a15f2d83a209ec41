"""Word-vector lexicons and the semantic augmentation of docs/augmentation.md.

* :mod:`minimner.lexicon.io`: :class:`Lexicon` and its readers (GloVe text,
  word2vec text and binary, ``.npz``) and writer.
* :mod:`minimner.lexicon.neighbours`: exact top-k cosine neighbours (chunked
  matrix products on the backend), softmax weights, weighted sums, inspection.
* :mod:`minimner.lexicon.augment`: the per-dataset augmentation table, its
  out-of-lexicon policy and its cache.

The fusion of the vectors into the model is in :mod:`minimner.nn.augment`.
"""
from minimner.lexicon.augment import (AugmentationTable, AugmentConfig, build_table, collect_vocabulary,
                                      load_or_build_table, oov_vector)
from minimner.lexicon.io import Lexicon, LexiconFormatError, default_lexicon_path, load_lexicon, save_npz
from minimner.lexicon.neighbours import Neighbours, describe_neighbours, find_neighbours, resolve_words

__all__ = ["Lexicon", "LexiconFormatError", "load_lexicon", "save_npz", "default_lexicon_path", "Neighbours",
           "find_neighbours", "describe_neighbours", "resolve_words", "AugmentationTable", "AugmentConfig",
           "build_table", "collect_vocabulary", "load_or_build_table", "oov_vector"]
