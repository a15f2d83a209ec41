"""What constrained Viterbi may decode: the :class:`Constraints` record and its builders.

:func:`minimner.crf.crf_viterbi` takes a :class:`Constraints` and gives every
disallowed start, end, transition or per-position tag a score of ``−inf``, so it
returns the best path among the allowed ones. This module says *which* entries
are allowed; the maths of decoding stays in :mod:`minimner.crf`.

* :func:`bio_constraints` — BIO (IOB2) validity from the tag names: ``I-x`` only
  after ``B-x``/``I-x`` (or a transparent tag), optional forbidden tags and fixed
  first/last tags.
* :func:`word_position_allowed` — a per-position tag mask: the positions that are
  scored (the first word piece of each word) may not take ``X``/``[CLS]``/``[SEP]``/pad.
* :func:`paper_constraints` — both, for the paper's 13 main tags (docs/data.md §2, docs/differences.md §3).

The tables are tiny and static: the builders make them on the host (NumPy) unless
told otherwise; the per-position mask lives on the backend of its ``word_mask``.

Dimension legend: B batch, T word-piece tokens, K tags.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from minimner.backend import get_xp
from minimner.data.labels import CLS, MAIN_TAGS, PAD, SEP, X

__all__ = ["Constraints", "bio_constraints", "word_position_allowed", "paper_constraints", "PAPER_MAIN_TAGS"]

#: The paper's main label set (docs/data.md §2; :data:`minimner.data.labels.MAIN_TAGS`), id = index,
#: 0 = padding.
PAPER_MAIN_TAGS = MAIN_TAGS


class Constraints(NamedTuple):
    """Which tags and moves constrained Viterbi may use (``True`` = allowed).

    Every field is optional (``None`` = no constraint of that kind) and boolean:

    transitions : (K, K) — ``transitions[i, j]``: may tag j follow tag i?
    start : (K,) — may a sequence start with tag k?
    end : (K,) — may a sequence end (at its position n − 1) with tag k?
    tags : (K,), (T, K) or (B, T, K), broadcast to (B, T, K) — may position t of
        sequence b take tag k? This is where position-dependent rules go, e.g.
        "word positions may not be X/[CLS]/[SEP]" while X stays legal on the
        later word pieces (see :func:`word_position_allowed`).

    Disallowed entries get a score of ``−inf`` in :func:`minimner.crf.crf_viterbi`,
    so Viterbi returns the best path among the allowed ones. A sequence with no
    allowed path gets score ``−inf``.
    """
    transitions: object = None
    start: object = None
    end: object = None
    tags: object = None


def bio_constraints(tag_names: Sequence[str], *, transparent: Sequence[str] = (),
                    forbidden: Sequence[str] = (), bos: str | None = None,
                    eos: str | None = None, xp=None) -> Constraints:
    """Transition/start/end constraints for the BIO (IOB2) scheme.

    Rules (tags are recognised by their ``B-``/``I-`` prefixes):

    1. ``I-x`` may follow only ``B-x``, ``I-x`` or a *transparent* tag, and may
       not start a sequence. Transparent tags (the paper's ``X``, on later word
       pieces) are first-order blind: ``B-PER X I-PER`` is legal, so ``I-x``
       after ``X`` must be allowed for every x (a first-order CRF cannot
       remember the type across the ``X``).
    2. ``forbidden`` tags (e.g. ``PAD``) are never used: no start, end, in or out.
    3. ``bos`` (e.g. ``[CLS]``): if given, only it may start a sequence and
       nothing may move into it.
    4. ``eos`` (e.g. ``[SEP]``): if given, only it may end a sequence and it may
       not move anywhere.

    Parameters
    ----------
    tag_names : the K tag names, index = tag id.
    xp : array module of the result (default NumPy); move it next to the
        emissions with :func:`minimner.backend.asarray` if needed.

    Returns
    -------
    Constraints with ``transitions (K, K)``, ``start (K,)``, ``end (K,)`` bool
    and ``tags=None``.

    Raises
    ------
    ValueError
        if a tag named in ``transparent``, ``forbidden``, ``bos`` or ``eos`` is not
        in ``tag_names``.
    """
    import numpy as np  # the builder works on host: these are tiny static tables
    names = list(tag_names)
    K = len(names)
    index = {n: i for i, n in enumerate(names)}
    for n in list(transparent) + list(forbidden) + [x for x in (bos, eos) if x is not None]:
        if n not in index:
            raise ValueError(f"tag {n!r} is not in tag_names {names}")
    trans = np.ones((K, K), dtype=bool)                        # (K, K)
    start = np.ones(K, dtype=bool)                             # (K,)
    end = np.ones(K, dtype=bool)                               # (K,)
    for j, nj in enumerate(names):
        if nj.startswith("I-"):
            typ = nj[2:]
            ok_prev = {f"B-{typ}", f"I-{typ}", *transparent}
            for i, ni in enumerate(names):
                trans[i, j] = ni in ok_prev
            start[j] = False
    for n in forbidden:
        k = index[n]
        trans[k, :] = trans[:, k] = start[k] = end[k] = False
    if bos is not None:
        k = index[bos]
        start[:] = False
        start[k] = True
        trans[:, k] = False
    if eos is not None:
        k = index[eos]
        end[:] = False
        end[k] = True
        trans[k, :] = False
    if xp is not None and xp is not np:
        trans, start, end = xp.asarray(trans), xp.asarray(start), xp.asarray(end)
    return Constraints(transitions=trans, start=start, end=end)


def word_position_allowed(word_mask, tag_names: Sequence[str],
                          disallowed: Sequence[str] = (X, CLS, SEP, PAD)):
    """Per-position tag mask: word positions may not take the ``disallowed`` tags.

    docs/differences.md §3: the position of a word's *first* word piece is scored, so it should
    only decode to O / B-x / I-x; X stays legal on the later word pieces, and
    [CLS]/[SEP] on their own positions.

    Parameters
    ----------
    word_mask : (B, T) bool, True at the first word piece of each word (the
        positions that are scored). Any backend.
    tag_names : the K tag names.
    disallowed : the tags word positions may not take.

    Returns
    -------
    allowed_tags : (B, T, K) bool on the backend of ``word_mask``: False where
        ``word_mask`` is True and the tag is disallowed, True elsewhere. Put it
        in ``Constraints.tags``.

    Raises
    ------
    ValueError
        if a ``disallowed`` tag is not in ``tag_names``, or ``word_mask`` is not a
        boolean (B, T) array.
    """
    xp = get_xp(word_mask)
    names = list(tag_names)
    missing = [n for n in disallowed if n not in names]
    if missing:
        raise ValueError(f"disallowed tags {missing} are not in tag_names {names}")
    if getattr(word_mask, "ndim", None) != 2 or word_mask.dtype.kind != "b":
        raise ValueError(f"word_mask must be a boolean (B, T) array, got "
                         f"{getattr(word_mask, 'dtype', None)} {getattr(word_mask, 'shape', None)}")
    bad = xp.asarray([n in disallowed for n in names])         # (K,) bool: host list -> tiny array
    return ~(word_mask[:, :, None] & bad)                      # (B, T, 1) & (K,) -> (B, T, K)


def paper_constraints(word_mask=None, tag_names: Sequence[str] = PAPER_MAIN_TAGS, xp=None) -> Constraints:
    """The constraint set minimner uses for the paper's 13 main tags.

    See docs/data.md §2 (the tags) and docs/differences.md §3 (why constrain).

    * BIO validity with ``X`` transparent (``B-PER X I-PER`` is legal);
    * ``PAD`` (id 0) is never predicted;
    * every sequence starts with ``[CLS]`` and ends with ``[SEP]``, each used once;
    * with ``word_mask`` (B, T) bool — True at the first word piece of each
      word — word positions may not be ``X``/``[CLS]``/``[SEP]``.

    Parameters
    ----------
    word_mask : (B, T) bool or None. Any backend; the tables then follow it.
    tag_names : the K tag names (default the paper's 13).
    xp : array module of the tables when ``word_mask`` is None (default NumPy).

    Returns
    -------
    Constraints (``tags`` is (B, T, K) when ``word_mask`` is given, else None).
    """
    if xp is None and word_mask is not None:
        xp = get_xp(word_mask)
    c = bio_constraints(tag_names, transparent=(X,), forbidden=(PAD,), bos=CLS, eos=SEP, xp=xp)
    if word_mask is not None:
        c = c._replace(tags=word_position_allowed(word_mask, tag_names))
    return c
