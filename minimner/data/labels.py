"""Tag sets, tag ids, the auxiliary span tags, tag validation and IOB repair.

Follows docs/data.md §2 exactly, so that ids line up with the original checkpoints::

    id   tag      | id   tag      | id   tag
    0    PAD      | 5    I-PER    | 10   X
    1    O        | 6    B-ORG    | 11   [CLS]
    2    B-MISC   | 7    I-ORG    | 12   [SEP]
    3    I-MISC   | 8    B-LOC    |
    4    B-PER    | 9    I-LOC    |

Auxiliary ("entity span", ESD task) tags: 0 PAD, 1 O, 2 B, 3 I, 4 X, 5 [CLS], 6 [SEP];
a word's auxiliary tag is the first character of its main tag (``to_aux``).

Only ids 1-9 are *word* tags (what a gold file may contain); ``X`` (a later
word piece), ``[CLS]``, ``[SEP]`` and ``PAD`` are *special* tags that exist only at
the word-piece level. Twitter-2015 spells MISC as ``OTHER``; :func:`normalise_tag`
renames it.

IOB repair (:func:`repair_iob`) turns any O/B-x/I-x sequence into valid IOB2 in one
of two ways, matching the two chunkers of :mod:`minimner.metrics`:

* ``"conlleval"``: an ``I-x`` that does not continue an ``x`` entity starts one, so
  it becomes ``B-x`` (conlleval / seqeval default semantics);
* ``"strict"``: such an ``I-x`` belongs to no entity, so it becomes ``O``
  (seqeval ``mode='strict', scheme=IOB2``).

Dimension legend: B batch, T word-piece tokens, K tags (13), Ka auxiliary tags (7).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "ENTITY_TYPES", "MAIN_TAGS", "TAG2ID", "NUM_TAGS", "AUX_TAGS", "AUX2ID", "NUM_AUX_TAGS",
    "PAD", "X", "CLS", "SEP", "PAD_ID", "O_ID", "X_ID", "CLS_ID", "SEP_ID",
    "AUX_PAD_ID", "AUX_O_ID", "AUX_X_ID", "AUX_CLS_ID", "AUX_SEP_ID",
    "WORD_TAGS", "WORD_TAG_IDS", "SPECIAL_TAGS", "TAG_ALIASES", "MAIN_TO_AUX",
    "normalise_tag", "is_word_tag", "validate_tag", "to_aux", "tags_to_ids", "ids_to_tags",
    "is_valid_iob2", "repair_iob", "REPAIR_MODES",
]

#: Entity types in id order (MISC first, as in the original label list).
ENTITY_TYPES = ("MISC", "PER", "ORG", "LOC")

PAD, X, CLS, SEP = "PAD", "X", "[CLS]", "[SEP]"

#: Main tags; the index of a tag is its id (0 = padding, never a real label).
MAIN_TAGS = (PAD, "O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG",
             "B-LOC", "I-LOC", X, CLS, SEP)
TAG2ID = {t: i for i, t in enumerate(MAIN_TAGS)}
NUM_TAGS = len(MAIN_TAGS)  # K = 13
PAD_ID, O_ID, X_ID, CLS_ID, SEP_ID = (TAG2ID[t] for t in (PAD, "O", X, CLS, SEP))

#: Auxiliary span tags; the index is the id.
AUX_TAGS = (PAD, "O", "B", "I", X, CLS, SEP)
AUX2ID = {t: i for i, t in enumerate(AUX_TAGS)}
NUM_AUX_TAGS = len(AUX_TAGS)  # Ka = 7
AUX_PAD_ID, AUX_O_ID, AUX_X_ID, AUX_CLS_ID, AUX_SEP_ID = (AUX2ID[t] for t in (PAD, "O", X, CLS, SEP))

#: Tags a word may carry in a gold file (after normalisation), in id order.
WORD_TAGS = MAIN_TAGS[1:10]
#: Their ids, shape (9,) int64 (what a constrained decoder may put on a first piece).
WORD_TAG_IDS = np.arange(1, 10, dtype=np.int64)  # (9,)
#: Tags that only exist at the word-piece level (a model may still predict them).
SPECIAL_TAGS = (PAD, X, CLS, SEP)
#: Spellings renamed on reading (Twitter-2015 uses OTHER for MISC).
TAG_ALIASES = {"B-OTHER": "B-MISC", "I-OTHER": "I-MISC"}


def to_aux(tag: str) -> str:
    """The auxiliary span tag of a main tag: ``B-PER -> B``, ``O -> O``, specials map to themselves.

    Raises
    ------
    ValueError
        if ``tag`` is neither a main tag nor an alias of one.
    """
    tag = normalise_tag(tag)
    if tag in SPECIAL_TAGS:
        return tag
    validate_tag(tag)
    return tag[0]



def normalise_tag(tag: str) -> str:
    """Rename dataset-specific spellings (``B-OTHER -> B-MISC``); other tags are returned unchanged."""
    return TAG_ALIASES.get(tag, tag)


def is_word_tag(tag: str) -> bool:
    """True for the nine tags a word may carry (``O`` and ``B-/I-`` of the four types)."""
    return tag in TAG2ID and 1 <= TAG2ID[tag] <= 9


def validate_tag(tag: str, allow_special: bool = False) -> str:
    """Check that ``tag`` is a known word tag (or a special tag when allowed) and return it.

    The tag must already be normalised (see :func:`normalise_tag`).

    Raises
    ------
    ValueError
        naming the tag and the accepted set.
    """
    if is_word_tag(tag) or (allow_special and tag in SPECIAL_TAGS):
        return tag
    accepted = list(WORD_TAGS) + (list(SPECIAL_TAGS) if allow_special else [])
    hint = ""
    if tag in SPECIAL_TAGS:
        hint = f" ({tag!r} is a word-piece tag and cannot label a word here)"
    raise ValueError(f"unknown tag {tag!r}{hint}; expected one of {', '.join(accepted)}"
                     + (" (B-OTHER/I-OTHER are read as B-MISC/I-MISC)" if not allow_special else ""))


def tags_to_ids(tags: Iterable[str]) -> np.ndarray:
    """Main-tag ids of a tag sequence, shape (n,) int64 (aliases are normalised first).

    Raises
    ------
    ValueError
        for a tag outside :data:`MAIN_TAGS`.
    """
    out = []
    for t in tags:
        t = normalise_tag(t)
        if t not in TAG2ID:
            raise ValueError(f"unknown tag {t!r}; expected one of {', '.join(MAIN_TAGS)}")
        out.append(TAG2ID[t])
    return np.asarray(out, dtype=np.int64)  # (n,)


def ids_to_tags(ids: Sequence[int]) -> list[str]:
    """Tag strings of main-tag ids (host integers or a host integer array).

    Raises
    ------
    ValueError
        for an id outside ``0 .. K-1``.
    """
    out = []
    for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():  # host data only (API edge)
        if not 0 <= i < NUM_TAGS:
            raise ValueError(f"tag id {i} out of range 0..{NUM_TAGS - 1}")
        out.append(MAIN_TAGS[i])
    return out


def _split(tag: str) -> tuple[str, str]:
    """(prefix, type) of an O/B-x/I-x tag: ``('B', 'PER')``, ``('O', '')``."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[0] in "BI" and tag[1] == "-":
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not O, B-<type> or I-<type>")


def is_valid_iob2(tags: Sequence[str]) -> bool:
    """True when every ``I-x`` continues an entity of type x (``B-x`` or ``I-x`` just before it).

    Raises
    ------
    ValueError
        for a tag that is not O, B-<type> or I-<type>.
    """
    prev_type = ""  # type of the entity the previous tag belongs to ('' after O)
    for t in tags:
        prefix, typ = _split(t)
        if prefix == "I" and typ != prev_type:
            return False
        prev_type = typ
    return True


REPAIR_MODES = ("conlleval", "strict")


def repair_iob(tags: Sequence[str], mode: str = "conlleval") -> list[str]:
    """Make a tag sequence valid IOB2 without changing what its chunker reads from it.

    ``mode="conlleval"``: an ``I-x`` that does not continue an x entity (after ``O``,
    at the start, or after another type) becomes ``B-x``; conlleval-style chunking of
    the result gives the same entities as of the input.
    ``mode="strict"``: such an ``I-x`` (and every ``I-x`` following it) becomes ``O``;
    strict-IOB2 chunking gives the same entities as of the input.

    Parameters
    ----------
    tags : sequence of str
        Word tags, each ``O``, ``B-<type>`` or ``I-<type>``.
    mode : {"conlleval", "strict"}

    Returns
    -------
    list of str
        A valid IOB2 sequence of the same length.

    Raises
    ------
    ValueError
        for an unknown mode or a tag that is not O/B-x/I-x.
    """
    if mode not in REPAIR_MODES:
        raise ValueError(f"unknown IOB repair mode {mode!r}; expected one of {REPAIR_MODES}")
    out: list[str] = []
    prev_type = ""  # type of the entity the previous *output* tag belongs to ('' = none)
    for t in tags:
        prefix, typ = _split(t)
        if prefix == "I" and typ != prev_type:
            if mode == "conlleval":
                t, prefix = "B-" + typ, "B"
            else:
                t, typ = "O", ""
        out.append(t)
        prev_type = typ
    return out


#: MAIN_TO_AUX[k] is the auxiliary id of main id k, shape (K,) int64.
MAIN_TO_AUX = np.array([AUX2ID[to_aux(t)] for t in MAIN_TAGS], dtype=np.int64)  # (K,)
