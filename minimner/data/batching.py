"""Word-piece labels (docs/data.md §3) and dynamically padded, seeded batches (docs/differences.md §2).

Per position of one encoded sentence ``[CLS] w_1 … w_n [SEP]``:

==========================  ===========  ==========
position                    main label   aux label
==========================  ===========  ==========
[CLS]                       11 [CLS]     5 [CLS]
first piece of a word       word's tag   O/B/I (1/2/3)
later piece of a word       10 X         4 X
[SEP]                       12 [SEP]     6 [SEP]
padding                     0 PAD        0 PAD
==========================  ===========  ==========

Unlike the original there is no 64-piece truncation: a batch is padded to its
own longest sentence, and a sentence longer than the model's positions is an
error raised by the tokenizer. A word with zero pieces has become ``[UNK]`` in
:mod:`minimner.tokenization`, so every word keeps a first piece and its label.

:func:`augment_input` builds a batch's semantic-augmentation input (docs/augmentation.md §2):
the augmentation-table row of each word at its first piece, zeros elsewhere.

Dimension legend: B batch, T word-piece tokens (incl. [CLS]/[SEP], padded to the
batch's longest), W words (padded to the batch's longest sentence), E augmentation
vector size, n words in the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from minimner import backend
from minimner.data.conll import Sentence
from minimner.tokenization import padded_length
from minimner.data.labels import (AUX2ID, AUX_CLS_ID, AUX_SEP_ID, AUX_X_ID, CLS_ID, SEP_ID, TAG2ID, X_ID,
                                  normalise_tag, to_aux)

__all__ = ["Example", "Batch", "encode_sentence", "encode_sentences", "make_batch", "iterate_batches",
           "augment_input"]


@dataclass
class Example:
    """One sentence, encoded: word pieces, their labels and the word alignment.

    Attributes
    ----------
    sentence : Sentence
        The source (words, tags, image id, line).
    input_ids : np.ndarray, (T,) int64
        ``[CLS] pieces… [SEP]`` ids.
    first_piece : np.ndarray, (W,) int64
        first_piece[j] is the position of word j's first piece in ``input_ids``.
    labels : np.ndarray or None, (T,) int64
        Main-tag id per piece (table above); None for unlabelled text.
    aux_labels : np.ndarray or None, (T,) int64
        Auxiliary span-tag id per piece; None for unlabelled text.
    index : int
        Position of the sentence in its data set (to restore file order after shuffling).
    """

    sentence: Sentence
    input_ids: np.ndarray
    first_piece: np.ndarray
    labels: np.ndarray | None
    aux_labels: np.ndarray | None
    index: int = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _piece_labels(tags: Sequence[str], first_piece: np.ndarray, n_pieces: int,
                  label_map: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Main and auxiliary labels per piece for one sentence (see the module table)."""
    main = np.full(n_pieces, label_map.get("X", X_ID), dtype=np.int64)  # (T,) every piece X ...
    aux = np.full(n_pieces, AUX_X_ID, dtype=np.int64)                   # (T,)
    main[0], main[-1] = label_map.get("[CLS]", CLS_ID), label_map.get("[SEP]", SEP_ID)
    aux[0], aux[-1] = AUX_CLS_ID, AUX_SEP_ID
    # ... then each word's tag on its first piece
    main[first_piece] = [label_map[t] for t in tags]                  # (W,) scattered into (T,)
    aux[first_piece] = [AUX2ID[to_aux(t)] for t in tags]              # (W,) scattered into (T,)
    return main, aux


def _example(sentence: Sentence, enc, index: int, label_map: Mapping[str, int]) -> Example:
    first = np.asarray(enc.first_piece, dtype=np.int64)  # (W,)
    ids = np.asarray(enc.input_ids, dtype=np.int64)      # (T,)
    if first.shape[0] != len(sentence.words) or (first.size and (first.min() < 1 or first.max() >= ids.shape[0] - 1)):
        raise ValueError(f"{sentence.where}: the tokenizer aligned {first.shape[0]} words "
                         f"(expected {len(sentence.words)}) or put a first piece outside [CLS] … [SEP]")
    labels = aux = None
    if sentence.tags is not None:
        tags = [normalise_tag(t) for t in sentence.tags]
        unknown = [t for t in tags if t not in label_map]
        if unknown:
            raise ValueError(f"{sentence.where}: tag {unknown[0]!r} is not in the label map")
        labels, aux = _piece_labels(tags, first, ids.shape[0], label_map)
    return Example(sentence, ids, first, labels, aux, index)


def encode_sentence(tokenizer, sentence: Sentence, label_map: Mapping[str, int] | None = None,
                    index: int = 0) -> Example:
    """Tokenise one sentence and label its pieces (first piece: the word's tag; later: X).

    Parameters
    ----------
    tokenizer : object with ``encode_words(words)``
        Normally :class:`minimner.tokenization.BertWordPieceTokenizer`; it returns
        ``input_ids`` (T,) and ``first_piece`` (W,).
    sentence : Sentence
        ``tags=None`` gives an unlabelled example (for prediction).
    label_map : mapping tag -> id, optional
        Defaults to :data:`minimner.data.labels.TAG2ID` (docs/data.md §2).
    index : int
        Stored in the example (its position in the data set).

    Returns
    -------
    Example

    Raises
    ------
    ValueError
        for a tag missing from ``label_map``, or (from the tokenizer) a sentence
        longer than the model's positions.
    """
    enc = tokenizer.encode_words(sentence.words)
    return _example(sentence, enc, index, TAG2ID if label_map is None else label_map)


def encode_sentences(tokenizer, sentences: Sequence[Sentence],
                     label_map: Mapping[str, int] | None = None) -> list[Example]:
    """:func:`encode_sentence` for a whole data set (one batched tokenizer call when available).

    Example i gets ``index=i``. A tweet the tokenizer refuses (e.g. longer than the
    model's positions) raises ValueError naming its ``file:line`` (:attr:`Sentence.where`).
    """
    label_map = TAG2ID if label_map is None else label_map
    words = [s.words for s in sentences]
    try:
        if hasattr(tokenizer, "encode_batch"):
            encs = tokenizer.encode_batch(words)
        else:
            encs = [tokenizer.encode_words(w) for w in words]
    except ValueError:
        _raise_for_first_bad(tokenizer, sentences)       # names the tweet's file and line
        raise                                            # (every tweet alone encodes: the batch error as is)
    return [_example(s, e, i, label_map) for i, (s, e) in enumerate(zip(sentences, encs))]


def _raise_for_first_bad(tokenizer, sentences: Sequence[Sentence]) -> None:
    """Encode the tweets one by one and re-raise the first failure as ``file:line: problem``.

    A tweet from no file and no line (e.g. ``explain --tweet``) keeps the tokenizer's message.
    """
    for s in sentences:
        try:
            tokenizer.encode_words(s.words)
        except ValueError as e:
            if not (s.source or s.line_no):
                raise
            raise ValueError(f"{s.where}: {e}") from None


@dataclass
class Batch:
    """A padded batch; arrays live on the chosen backend, the rest on the host.

    Attributes
    ----------
    input_ids : (B, T) int64
        Piece ids, 0 ([PAD]) past each sentence's [SEP].
    attention_mask : (B, T) bool
        True on [CLS], pieces and [SEP] (a prefix of each row).
    labels : (B, T) int64 or None
        Main-tag id per piece, 0 on padding.
    aux_labels : (B, T) int64 or None
        Auxiliary span-tag id per piece, 0 on padding.
    first_piece : (B, W) int64
        first_piece[b, j] is the position of word j's first piece; -1 past the
        sentence's words.
    word_mask : (B, W) bool
        True for real words.
    lengths : (B,) int64
        Number of real pieces per sentence (``attention_mask.sum(1)``).
    indices : list of int (host)
        Each example's ``index`` (its position in the data set).
    sentences : list of Sentence (host)
    aug : (B, T, E) float32 or None
        The semantic-augmentation input (:func:`augment_input`); set by
        :class:`minimner.data.inputs.Collator` when the run has an augmentation table.
    char_ids : (B, T, Lw) int64 or None
        Character ids per first piece (:func:`minimner.data.chars.char_ids`; char-CNN runs).
    regions : (B, R, C_img) float32 or None
        The image grid as regions (r = w·row + col); None when no tweet of the batch has a picture.
    region_mask : (B, R) bool or None
        False for every region of a missing picture (None with ``regions``).
    objects : (B, O) int64 or None
        Detected object ids (0 = empty slot); None: no object table.
    """

    input_ids: object
    attention_mask: object
    labels: object
    aux_labels: object
    first_piece: object
    word_mask: object
    lengths: object
    indices: list
    sentences: list
    aug: object = None
    char_ids: object = None
    regions: object = None
    region_mask: object = None
    objects: object = None

    def __len__(self) -> int:
        return len(self.indices)


def make_batch(examples: Sequence[Example], backend_name: str | None = None, pad_to: int | None = None) -> Batch:
    """Pad examples to the longest one (or to ``pad_to``) and move the arrays to a backend.

    Parameters
    ----------
    examples : sequence of Example, length B ≥ 1
        All labelled or all unlabelled.
    backend_name : {"numpy", "cupy", "strict"}, optional
        Where the arrays go (default: the current backend).
    pad_to : int, optional
        Pad T to this length (must be ≥ the longest example), e.g. 64 for parity
        runs against the original; by default T is the batch's longest sequence.

    Returns
    -------
    Batch

    Raises
    ------
    ValueError
        for an empty batch, a ``pad_to`` shorter than an example, or a mix of
        labelled and unlabelled examples.
    """
    if not examples:
        raise ValueError("make_batch needs at least one example")
    labelled = {ex.labels is not None for ex in examples}
    if len(labelled) > 1:
        raise ValueError("a batch mixes labelled and unlabelled examples")
    labelled = labelled.pop()
    B = len(examples)
    T = padded_length([len(ex) for ex in examples], pad_to)
    W = max(ex.first_piece.shape[0] for ex in examples)
    input_ids = np.zeros((B, T), dtype=np.int64)      # (B, T) 0 = [PAD]
    mask = np.zeros((B, T), dtype=bool)               # (B, T)
    labels = np.zeros((B, T), dtype=np.int64)         # (B, T) 0 = PAD tag
    aux = np.zeros((B, T), dtype=np.int64)            # (B, T)
    first = np.full((B, W), -1, dtype=np.int64)       # (B, W)
    word_mask = np.zeros((B, W), dtype=bool)          # (B, W)
    lengths = np.zeros(B, dtype=np.int64)             # (B,)
    for b, ex in enumerate(examples):
        n, w = len(ex), ex.first_piece.shape[0]
        input_ids[b, :n], mask[b, :n], lengths[b] = ex.input_ids, True, n
        first[b, :w], word_mask[b, :w] = ex.first_piece, True
        if labelled:
            labels[b, :n], aux[b, :n] = ex.labels, ex.aux_labels

    def put(a):
        return backend.asarray(a, backend=backend_name)

    return Batch(input_ids=put(input_ids), attention_mask=put(mask),
                 labels=put(labels) if labelled else None, aux_labels=put(aux) if labelled else None,
                 first_piece=put(first), word_mask=put(word_mask), lengths=put(lengths),
                 indices=[ex.index for ex in examples], sentences=[ex.sentence for ex in examples])


def iterate_batches(examples: Sequence[Example], batch_size: int, shuffle: bool = False, rng=None,
                    drop_last: bool = False, backend_name: str | None = None,
                    pad_to: int | None = None) -> Iterator[Batch]:
    """Yield padded batches of ``batch_size`` examples (the last one may be smaller).

    Parameters
    ----------
    examples : sequence of Example
    batch_size : int ≥ 1
    shuffle : bool
        Visit the examples in a random order drawn from ``rng``.
    rng : int or numpy.random.Generator, optional
        Required when shuffling. An int seeds a fresh generator (the same order on
        every call); pass one Generator across epochs to get a new, reproducible
        order each epoch.
    drop_last : bool
        Drop a final batch smaller than ``batch_size`` (the original keeps it).
    backend_name, pad_to
        As in :func:`make_batch`.

    Yields
    ------
    Batch

    Raises
    ------
    ValueError
        for ``batch_size < 1`` or ``shuffle=True`` without ``rng``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(examples)
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs rng (an int seed or a numpy.random.Generator)")
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = gen.permutation(n)  # (N,) host permutation; batching happens on the host
    else:
        order = np.arange(n)        # (N,)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield make_batch([examples[i] for i in order[start:start + batch_size]], backend_name, pad_to)


def word_positions(batch: Batch, who: str):
    """Where each word of a batch sits: ``(rows, pos)``, (n,) int arrays on the batch's backend.

    Word i of ``[w for s in batch.sentences for w in s.words]`` (sentence-major) is in row
    ``rows[i]`` at its first piece ``pos[i]``. The word counts come from the host sentences,
    so no ``nonzero`` of the device ``word_mask`` is needed (on a GPU that is a sync: its
    output size depends on the data); the indices travel in one transfer. A host batch is
    also checked against its ``word_mask``.

    Raises
    ------
    ValueError
        (host batches) when the word_mask and the sentences disagree; ``who`` names the caller.
    """
    counts = np.array([len(s.words) for s in batch.sentences], dtype=np.int64)   # (B,) words per sentence
    n = int(counts.sum())
    if not backend.is_device_array(batch.word_mask) and int(batch.word_mask.sum()) != n:
        raise ValueError(f"{who}: the batch's word_mask has {int(batch.word_mask.sum())} words but its sentences "
                         f"have {n}")
    rows = np.repeat(np.arange(len(counts)), counts)                      # (n,) sentence of each word
    cols = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)   # (n,) word index within it
    idx = backend.asarray(np.stack([rows, cols]), backend=backend.device_of(batch.first_piece))  # (2, n)
    return idx[0], batch.first_piece[idx[0], idx[1]]                      # (n,), (n,) first-piece positions


def augment_input(batch: Batch, table):
    """The per-position augmentation input ``a`` of a batch (docs/augmentation.md §2), on the batch's backend.

    ``a[b, t] = A[w]`` when piece t is the first piece of word w of sentence b, and
    ``a[b, t] = 0`` at ``[CLS]``, ``[SEP]``, later pieces and padding. A word that is
    not in the table gets the table's deterministic out-of-vocabulary vector (see
    :meth:`minimner.lexicon.augment.AugmentationTable.vector`).

    The words are looked up on the host (one dictionary lookup per word, as batching
    itself works per sentence), moved to the device in one transfer, and scattered
    into place with one fancy-indexed assignment (positions from :func:`word_positions`).

    Parameters
    ----------
    batch : Batch, with ``first_piece`` / ``word_mask`` (B, W) and ``sentences`` (host)
    table : object with ``dim`` (E) and ``lookup(words) -> (vectors (n, E) float32, mask (n,))``,
        normally :class:`minimner.lexicon.augment.AugmentationTable`

    Returns
    -------
    (B, T, E) float32 array on the backend of ``batch.input_ids``

    Raises
    ------
    ValueError
        when the batch's word alignment disagrees with its sentences.
    """
    xp = backend.get_xp(batch.input_ids)
    B, T = batch.input_ids.shape
    words = [w for s in batch.sentences for w in s.words]                   # n words, sentence-major (host)
    vecs, _ = table.lookup(words)                                            # (n, E) float32 host
    out = xp.zeros((B, T, table.dim), dtype=np.float32)                     # (B, T, E): zeros everywhere ...
    rows, pos = word_positions(batch, "augment_input")                       # (n,), (n,) in words order
    out[rows, pos] = backend.asarray(vecs, backend=backend.device_of(out))   # ... but (n, E) rows at first pieces
    return out
