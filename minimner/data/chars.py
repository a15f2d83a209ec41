"""The character vocabulary (docs/data.md §4) and a batch's char ids (docs/data.md §3) for the char-CNN variant.

Vocabulary (the original ``utils.build_vocab``)::

    [PAD] = 0   [UNK] = 1   [X] = 2   [XC] = 3   [XS] = 4
    then every character of every word, by descending frequency, numbered from 5
    (ties in first-seen order, as ``Counter.most_common``)

The words are read line by line, exactly as the original reads its ``train`` /
``dev`` / ``test`` files: each line is ``str.strip()``-ed, blank lines and lines
starting with ``IMGID:`` are skipped, and the word is the first tab field. Pass the
files in the original's order (train, dev, test): the order decides ties. A
consequence kept on purpose (the numbering must match the original's to load its
checkpoints): a token made only of whitespace, such as a lone no-break space,
vanishes with the strip and the line's tag is counted as the word. One deviation:
a UTF-8 byte-order mark at the start of a file is dropped (the original would
count it as a character of the first ``IMGID`` line, read as a word).

Char ids per word-piece position (the original ``convert_mm_examples_to_features``):

=========================  ==========================================================
position                   char ids (Lw = ``max_wordlen`` = 12 per position)
=========================  ==========================================================
[CLS]                      all 3 ``[XC]``
first piece of a word      the word's characters after ``strip()``, unknown ones 1
                           ``[UNK]``, right-padded with 0 ``[PAD]``, cut to Lw
later piece of a word      all 2 ``[X]``
[SEP]                      all 4 ``[XS]``
padding                    all 0 ``[PAD]``
=========================  ==========================================================

Dimension legend: B batch, T word-piece tokens, W words, Lw characters per word,
n words in the batch, Vc character vocabulary.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from minimner import backend
from minimner.atomic import write_json_atomic
from minimner.data.batching import word_positions
from minimner.data.conll import IMGID_PREFIX

__all__ = ["SPECIALS", "PAD_ID", "UNK_ID", "X_ID", "CLS_ID", "SEP_ID", "MAX_WORDLEN", "char_vocab_from_words",
           "build_char_vocab", "save_char_vocab", "load_char_vocab", "word_char_ids", "char_ids"]

#: The five special entries and their fixed ids (docs/data.md §4).
SPECIALS = ("[PAD]", "[UNK]", "[X]", "[XC]", "[XS]")
PAD_ID, UNK_ID, X_ID, CLS_ID, SEP_ID = range(5)      # [PAD], [UNK], [X] (later pieces), [XC] ([CLS]), [XS] ([SEP])
#: Characters per word (the original ``max_wordlen``).
MAX_WORDLEN = 12

_FORMAT = "minimner.char_vocab"


def char_vocab_from_words(words: Iterable[str]) -> dict[str, int]:
    """The char vocabulary of a word sequence: the five specials, then characters by frequency from 5.

    Parameters
    ----------
    words : iterable of str, in reading order (it decides ties)

    Returns
    -------
    dict char -> id: ``SPECIALS`` first (ids 0..4), then each distinct character of
    the words by descending count, ties in first-seen order.
    """
    counts = Counter()
    for w in words:
        counts.update(w)                                  # insertion order = first-seen order
    # stable sort on the count alone: equal counts keep their first-seen order (Counter.most_common's rule)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update((c, i) for i, (c, _) in enumerate(ranked, start=len(SPECIALS)))
    return vocab


def _file_words(path: Path):
    """The words of one CoNLL file, read as the original reads them (see the module docstring)."""
    # utf-8-sig drops a leading byte-order mark; text mode splits lines on \n, \r\n and \r like the original
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(IMGID_PREFIX):
                yield line.split("\t")[0]


def build_char_vocab(files) -> dict[str, int]:
    """Build the character vocabulary of CoNLL files (docs/data.md §4; the original's ``char2index``).

    Parameters
    ----------
    files : sequence of str or Path, read in order (the original: train, dev, test)

    Returns
    -------
    dict char -> id, ids 0..Vc−1 (see :func:`char_vocab_from_words`)

    Raises
    ------
    FileNotFoundError
        naming a missing file.
    ValueError
        for an empty file list or a file that is not UTF-8.
    """
    paths = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    if not paths:
        raise ValueError("build_char_vocab needs at least one file")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")

    def words():
        for p in paths:
            try:
                yield from _file_words(p)
            except UnicodeDecodeError as e:
                raise ValueError(f"{p}: not valid UTF-8: {e}") from None

    return char_vocab_from_words(words())


def _check_vocab(vocab: Mapping[str, int], where: str = "char vocabulary") -> None:
    """Specials at ids 0..4 and ids exactly 0..Vc−1, each once."""
    for i, s in enumerate(SPECIALS):
        if vocab.get(s) != i:
            raise ValueError(f"{where}: expected {s!r} at id {i}, got {vocab.get(s)!r}")
    ids = list(vocab.values())
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in ids) or \
            sorted(ids) != list(range(len(ids))):
        raise ValueError(f"{where}: ids must be the integers 0..{len(ids) - 1}, each used once")
    bad = [k for k in vocab if k not in SPECIALS and (not isinstance(k, str) or len(k) != 1)]
    if bad:
        raise ValueError(f"{where}: entries other than the specials must be single characters, got {bad[0]!r}")


def save_char_vocab(path, vocab: Mapping[str, int]) -> Path:
    """Write the vocabulary as JSON (atomically): ``{"format", "version", "char2index": {char: id}}``.

    Raises
    ------
    ValueError
        for a vocabulary without the specials at 0..4 or with ids that are not 0..Vc−1.
    """
    _check_vocab(vocab)
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))  # id order, so the file reads as the numbering
    return write_json_atomic(path, {"format": _FORMAT, "version": 1, "char2index": ordered})


def load_char_vocab(path) -> dict[str, int]:
    """Read a vocabulary written by :func:`save_char_vocab`.

    Raises
    ------
    FileNotFoundError
        for a missing file.
    ValueError
        for a file that is not such a JSON document or holds an invalid vocabulary.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or not isinstance(doc.get("char2index"), dict):
        raise ValueError(f"{p}: not a char vocabulary (expected a JSON object with format {_FORMAT!r} "
                         "and a 'char2index' object)")
    vocab = dict(doc["char2index"])
    _check_vocab(vocab, where=str(p))
    return vocab


def word_char_ids(word: str, vocab: Mapping[str, int], max_wordlen: int = MAX_WORDLEN) -> list[int]:
    """One word's char ids: its characters after ``strip()``, unknown → 1, right-padded with 0, cut to Lw."""
    ids = [vocab.get(c, UNK_ID) for c in word.strip()]
    return (ids + [PAD_ID] * max_wordlen)[:max_wordlen]


def char_ids(batch, vocab: Mapping[str, int], max_wordlen: int = MAX_WORDLEN):
    """The char-CNN input of a batch, per word-piece position (docs/data.md §3; module table).

    The words' ids are built on the host (one dictionary lookup per character, as
    batching itself works per sentence), moved in one transfer and scattered onto
    the first pieces; the special rows are filled on the device.

    Parameters
    ----------
    batch : :class:`minimner.data.batching.Batch`, with ``input_ids`` (B, T), ``lengths`` (B,),
        ``first_piece`` / ``word_mask`` (B, W) and ``sentences`` (host)
    vocab : mapping char -> id with the specials at 0..4 (:func:`build_char_vocab`)
    max_wordlen : int, Lw (12)

    Returns
    -------
    (B, T, Lw) int64 array on the backend of ``batch.input_ids``

    Raises
    ------
    ValueError
        for a bad ``max_wordlen``, a vocabulary without the specials at 0..4, or a
        batch whose word alignment disagrees with its sentences.
    """
    if isinstance(max_wordlen, bool) or not isinstance(max_wordlen, (int, np.integer)) or max_wordlen < 1:
        raise ValueError(f"max_wordlen must be a positive integer, got {max_wordlen!r}")
    for i, s in enumerate(SPECIALS):
        if vocab.get(s) != i:
            raise ValueError(f"char vocabulary: expected {s!r} at id {i}, got {vocab.get(s)!r}")
    xp = backend.get_xp(batch.input_ids)
    B, T = batch.input_ids.shape
    Lw = int(max_wordlen)
    words = [w for s in batch.sentences for w in s.words]                  # n words, sentence-major (host)
    table = np.zeros((len(words), Lw), dtype=np.int64)                     # (n, Lw) host
    for j, w in enumerate(words):
        table[j] = word_char_ids(w, vocab, Lw)
    t = xp.arange(T)[None, :]                                              # (1, T) position
    n = batch.lengths.astype(np.int64)[:, None]                            # (B, 1) real pieces, [SEP] at n − 1
    code = xp.where(t == 0, CLS_ID, xp.where(t == n - 1, SEP_ID, xp.where(t < n, X_ID, PAD_ID)))  # (B, T)
    out = xp.repeat(code.astype(np.int64)[:, :, None], Lw, axis=2)        # (B, T, Lw): one id per row ...
    rows, pos = word_positions(batch, "char_ids")                          # (n,), (n,) in words order
    out[rows, pos] = backend.asarray(table, backend=backend.device_of(out))  # ... but the words' chars there
    return out
