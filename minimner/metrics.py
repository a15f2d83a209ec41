"""Entity-level precision, recall and F1 for NER (docs/training.md §5, docs/differences.md §3).

Scoring happens on **words**: one gold and one predicted tag per word, the tag
predicted at the word's first word piece (:func:`word_tags_from_pieces`), never
at ``[CLS]``, ``[SEP]``, later pieces (``X``) or padding.

An entity is a ``(type, start, end)`` span of words (``end`` exclusive). A
predicted entity counts as correct when an identical gold entity exists in the
same sentence. Micro P/R/F1 pool the counts of all types; per-type numbers only
count that type; ``support`` is the number of gold entities. A ratio whose
denominator is zero is 0 (seqeval's ``zero_division`` default).

Two chunkers:

* **default** (conlleval, seqeval's default mode): any ``B-x`` or ``I-x`` opens an
  entity unless it is an ``I-x`` continuing an x entity; an entity closes on ``O``, on
  ``B-``, or on a change of type. So ``O I-PER I-PER`` holds one PER entity.
* **strict** (seqeval ``mode='strict', scheme=IOB2``): an entity is ``B-x``
  followed by any number of ``I-x``; an ``I-x`` that does not continue an x entity
  belongs to no entity.

Special tags predicted on a word (``X``, ``[CLS]``, ``[SEP]``, ``PAD``; a model whose
decoding is not constrained can produce them) follow the ``specials`` rule:

* ``"o"`` (default): they are scored as ``O`` and counted, per tag, in
  ``result["special_predictions"]``, so nothing is hidden;
* ``"seqeval"``: they go through the default chunker exactly as seqeval >= 1.0
  reads them (``X`` is a prefix with the empty type ``_``, ``[CLS]`` a prefix ``[``
  with type ``CLS]``, ...), reproducing the original repo's reported numbers.
  seqeval's strict mode rejects them, and so does ours.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from minimner import backend
from minimner.data.labels import MAIN_TAGS, SPECIAL_TAGS

__all__ = ["get_entities", "score", "format_table", "word_tags_from_pieces", "SPECIALS_RULES"]

SPECIALS_RULES = ("o", "seqeval")


def _parts(tag: str) -> tuple[str, str]:
    """(prefix, type) as seqeval's default mode reads a tag: ``B-PER -> (B, PER)``, ``O -> (O, _)``."""
    return tag[0], (tag[1:].split("-", 1)[-1] or "_")


def _chunks_conlleval(seq: Sequence[str]) -> list[tuple[str, int, int]]:
    """Default-mode chunks of one flat tag sequence, as (type, start, end exclusive).

    The state machine of conlleval / seqeval: ``prev`` is the previous tag's
    (prefix, type); an entity ends *before* position i and another starts *at* i
    according to the two rules below. Written for any tag string so that the
    ``"seqeval"`` specials rule reproduces seqeval even on odd tags.
    """
    chunks = []
    prev_p, prev_t = "O", ""
    begin = 0
    for i, tag in enumerate(list(seq) + ["O"]):  # the sentinel O closes a final entity
        p, t = _parts(tag)
        ends = (prev_p in "ES"
                or (prev_p in "BI" and p in "BSO")
                or (prev_p not in "O." and prev_t != t))
        starts = (p in "BS"
                  or (prev_p in "ESO" and p in "EI")
                  or (p not in "O." and prev_t != t))
        if ends:
            chunks.append((prev_t, begin, i))
        if starts:
            begin = i
        prev_p, prev_t = p, t
    return chunks


def _chunks_strict(seq: Sequence[str]) -> list[tuple[str, int, int]]:
    """Strict IOB2 chunks of one sentence: maximal runs ``B-x I-x ... I-x``."""
    chunks = []
    start, typ = None, None  # the open entity, if any
    for i, tag in enumerate(list(seq) + ["O"]):
        p, t = _parts(tag)
        if start is not None and not (p == "I" and t == typ):
            chunks.append((typ, start, i))
            start = None
        if p == "B":
            start, typ = i, t
    return chunks


def get_entities(tags: Sequence[str], strict: bool = False) -> list[tuple[str, int, int]]:
    """Entities of one sentence's tags, as ``(type, start, end)`` with ``end`` exclusive.

    Parameters
    ----------
    tags : sequence of str
        ``O``, ``B-<type>`` or ``I-<type>`` per word.
    strict : bool
        Strict IOB2 chunking instead of the default (conlleval) chunking.

    Examples
    --------
    >>> get_entities(["O", "I-PER", "I-PER", "B-LOC"])
    [('PER', 1, 3), ('LOC', 3, 4)]
    >>> get_entities(["O", "I-PER", "I-PER", "B-LOC"], strict=True)
    [('LOC', 3, 4)]
    """
    for t in tags:
        _check_tag(t, "tag")
    return _chunks_strict(tags) if strict else _chunks_conlleval(tags)


def _check_tag(tag, what: str, where: str = "") -> None:
    if not (isinstance(tag, str) and (tag == "O" or (len(tag) > 2 and tag[0] in "BI" and tag[1] == "-"))):
        raise ValueError(f"{what} {tag!r}{where} is not O, B-<type> or I-<type>")


def score(gold_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]],
          strict: bool = False, specials: str = "o") -> dict:
    """Entity-level micro and per-type precision/recall/F1 over word-level tag sequences.

    Parameters
    ----------
    gold_seqs : sequence of sequences of str
        Gold tags, one sequence per sentence, each tag ``O``/``B-x``/``I-x``.
    pred_seqs : sequence of sequences of str
        Predicted tags, same lengths; may also contain ``X``/``[CLS]``/``[SEP]``/``PAD``.
    strict : bool
        Strict IOB2 chunking (seqeval ``mode='strict', scheme=IOB2``) instead of the
        default conlleval chunking.
    specials : {"o", "seqeval"}
        What a predicted special tag means (see the module docstring).

    Returns
    -------
    dict
        ``{"micro": {"precision", "recall", "f1"},
        "per_type": {TYPE: {"precision", "recall", "f1", "support"}},
        "counts": {"gold", "predicted", "correct", "sentences", "words"},
        "special_predictions": {TAG: count}, "mode": "default"|"strict", "specials": rule}``.
        Ratios are floats in [0, 1]; types are sorted by name (seqeval's order) and
        are those present in gold or prediction.

    Raises
    ------
    ValueError
        on a length mismatch (naming the sentence), an invalid tag (naming
        sentence and word), or a special tag that the chosen rule cannot score.
    """
    if specials not in SPECIALS_RULES:
        raise ValueError(f"unknown specials rule {specials!r}; expected one of {SPECIALS_RULES}")
    if len(gold_seqs) != len(pred_seqs):
        raise ValueError(f"{len(gold_seqs)} gold sentences but {len(pred_seqs)} predicted sentences")
    special_counts: dict[str, int] = {}
    gold_clean, pred_clean = [], []
    n_words = 0
    for i, (g, p) in enumerate(zip(gold_seqs, pred_seqs)):
        g, p = list(g), list(p)
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
        n_words += len(g)
        for j, t in enumerate(g):
            _check_tag(t, "gold tag", f" (sentence {i}, word {j})")
        q = []
        for j, t in enumerate(p):
            if t in SPECIAL_TAGS:
                special_counts[t] = special_counts.get(t, 0) + 1
                if specials == "o":
                    t = "O"
                elif strict:
                    raise ValueError(f"predicted tag {t!r} (sentence {i}, word {j}) cannot be scored in "
                                     "strict mode with specials='seqeval' (seqeval rejects it too); "
                                     "use specials='o'")
            else:
                _check_tag(t, "predicted tag", f" (sentence {i}, word {j})")
            q.append(t)
        gold_clean.append(g)
        pred_clean.append(q)

    gold_ents, pred_ents = _entity_sets(gold_clean, strict), _entity_sets(pred_clean, strict)
    types = sorted(set(gold_ents) | set(pred_ents))
    per_type = {}
    n_gold = n_pred = n_ok = 0
    for typ in types:
        g, p = gold_ents.get(typ, set()), pred_ents.get(typ, set())
        ok = len(g & p)
        per_type[typ] = dict(_prf(ok, len(p), len(g)), support=len(g))
        n_gold, n_pred, n_ok = n_gold + len(g), n_pred + len(p), n_ok + ok
    return {
        "micro": _prf(n_ok, n_pred, n_gold),
        "per_type": per_type,
        "counts": {"gold": n_gold, "predicted": n_pred, "correct": n_ok,
                   "sentences": len(gold_clean), "words": n_words},
        "special_predictions": dict(sorted(special_counts.items())),
        "mode": "strict" if strict else "default",
        "specials": specials,
    }


def _entity_sets(seqs: list[list[str]], strict: bool) -> dict[str, set]:
    """type -> set of entity keys; a key identifies the sentence and the span."""
    out: dict[str, set] = {}
    if strict:
        for i, s in enumerate(seqs):
            for typ, a, b in _chunks_strict(s):
                out.setdefault(typ, set()).add((i, a, b))
    else:
        # Like seqeval, chunk the concatenation with an O after every sentence (this
        # matters only for the odd tags of the "seqeval" specials rule; for O/B/I tags
        # it is the same as chunking each sentence on its own).
        flat = [t for s in seqs for t in s + ["O"]]
        for typ, a, b in _chunks_conlleval(flat):
            out.setdefault(typ, set()).add((a, b))
    return out


def _prf(correct: int, predicted: int, gold: int) -> dict:
    """precision = correct/predicted, recall = correct/gold, F1 their harmonic mean (0 on 0/0)."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2.0 * p * r / (p + r) if p + r > 0 else 0.0  # the same operations as seqeval, bit for bit
    return {"precision": p, "recall": r, "f1": f}


def format_table(result: dict, digits: int = 4) -> str:
    """A seqeval-style text report of :func:`score`'s result (per type, then micro average)."""
    names = list(result["per_type"]) + ["micro avg"]
    width = max(len(n) for n in names + ["precision"])
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
    lines = [head, ""]
    row = "{:>{w}}  {:>9.{d}f}  {:>9.{d}f}  {:>9.{d}f}  {:>9}"
    for typ, m in result["per_type"].items():
        lines.append(row.format(typ, m["precision"], m["recall"], m["f1"], m["support"], w=width, d=digits))
    lines.append("")
    m, c = result["micro"], result["counts"]
    lines.append(row.format("micro avg", m["precision"], m["recall"], m["f1"], c["gold"], w=width, d=digits))
    lines.append("")
    chunker = ("strict IOB2 chunking" if result["mode"] == "strict"
               else "default (conlleval) chunking")
    lines.append(f"{c['sentences']} sentences, {c['words']} words, {c['gold']} gold entities, "
                 f"{c['predicted']} predicted, {c['correct']} correct; {chunker}.")
    sp = result["special_predictions"]
    if sp:
        what = ", ".join(f"{t}: {n}" for t, n in sp.items())
        how = "scored as O" if result["specials"] == "o" else "chunked as seqeval reads them"
        lines.append(f"{sum(sp.values())} word(s) predicted as a word-piece tag ({what}), {how}.")
    return "\n".join(lines) + "\n"


def word_tags_from_pieces(piece_ids, word_index, word_mask) -> list[list[str]]:
    """Word-level tag strings from word-piece tag ids: the tag at each word's first piece.

    Parameters
    ----------
    piece_ids : (B, T) int array (NumPy or CuPy)
        Main-tag ids per word piece (gold labels or decoded predictions).
    word_index : (B, W) int array
        word_index[b, j] is the piece position of word j's first piece in sentence b.
    word_mask : (B, W) bool array
        True for real words (sentences have different word counts).

    Returns
    -------
    list of list of str
        One tag list per sentence, ``word_mask[b].sum()`` tags long. Ids are turned
        into names with :data:`~minimner.data.labels.MAIN_TAGS` (so a prediction of
        id 10 at a word reads ``"X"``, and ``score`` applies its specials rule).
    """
    # API edge: results leave the device here, once per batch.
    piece_ids = backend.asnumpy(piece_ids)
    word_index, word_mask = backend.asnumpy(word_index), backend.asnumpy(word_mask).astype(bool)
    if piece_ids.ndim != 2 or word_index.shape != word_mask.shape or word_index.shape[0] != piece_ids.shape[0]:
        raise ValueError(f"expected piece_ids (B, T) and word_index, word_mask (B, W); got "
                         f"{piece_ids.shape}, {word_index.shape}, {word_mask.shape}")
    rows = np.take_along_axis(piece_ids, word_index.astype(np.int64), axis=1)  # (B, T) gather (B, W) -> (B, W)
    names = np.asarray(MAIN_TAGS, dtype=object)  # (K,)
    return [names[r[m]].tolist() for r, m in zip(rows, word_mask)]
