"""Tag ids (docs/data.md §2), auxiliary tags, validation and IOB repair."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner.data import labels as L
from minimner.metrics import get_entities


def test_main_and_aux_tag_ids_follow_the_spec():
    assert L.MAIN_TAGS == ("PAD", "O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG",
                           "B-LOC", "I-LOC", "X", "[CLS]", "[SEP]")
    assert L.NUM_TAGS == 13 and L.NUM_AUX_TAGS == 7
    assert (L.PAD_ID, L.O_ID, L.X_ID, L.CLS_ID, L.SEP_ID) == (0, 1, 10, 11, 12)
    assert L.AUX_TAGS == ("PAD", "O", "B", "I", "X", "[CLS]", "[SEP]")
    assert (L.AUX_PAD_ID, L.AUX_O_ID, L.AUX_X_ID, L.AUX_CLS_ID, L.AUX_SEP_ID) == (0, 1, 4, 5, 6)
    assert L.MAIN_TO_AUX.tolist() == [0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 6]
    assert L.MAIN_TO_AUX.dtype == np.int64
    assert [L.MAIN_TAGS[i] for i in L.WORD_TAG_IDS] == list(L.WORD_TAGS)


@pytest.mark.parametrize("tag,aux", [("O", "O"), ("B-PER", "B"), ("I-LOC", "I"), ("B-OTHER", "B"),
                                     ("X", "X"), ("[CLS]", "[CLS]"), ("[SEP]", "[SEP]"), ("PAD", "PAD")])
def test_to_aux(tag, aux):
    assert L.to_aux(tag) == aux


def test_normalise_and_validate():
    assert L.normalise_tag("B-OTHER") == "B-MISC" and L.normalise_tag("I-OTHER") == "I-MISC"
    assert L.normalise_tag("B-PER") == "B-PER"
    assert all(L.validate_tag(t) == t for t in L.WORD_TAGS)
    assert L.validate_tag("X", allow_special=True) == "X"
    with pytest.raises(ValueError, match="'X' is a word-piece tag"):
        L.validate_tag("X")
    with pytest.raises(ValueError, match="unknown tag 'B-FOO'; expected one of O, B-MISC"):
        L.validate_tag("B-FOO")
    with pytest.raises(ValueError):
        L.to_aux("E-PER")


def test_ids_roundtrip_and_errors():
    tags = ["O", "B-OTHER", "I-MISC", "X", "[CLS]", "PAD"]
    ids = L.tags_to_ids(tags)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 2, 3, 10, 11, 0]
    assert L.ids_to_tags(ids) == ["O", "B-MISC", "I-MISC", "X", "[CLS]", "PAD"]
    with pytest.raises(ValueError, match="unknown tag 'B-FOO'"):
        L.tags_to_ids(["B-FOO"])
    with pytest.raises(ValueError, match="tag id 13 out of range"):
        L.ids_to_tags([1, 13])


@pytest.mark.parametrize("tags,conlleval,strict", [
    (["O", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"], ["O", "O", "O"]),
    (["B-PER", "I-LOC", "I-LOC", "O"], ["B-PER", "B-LOC", "I-LOC", "O"], ["B-PER", "O", "O", "O"]),
    (["I-ORG", "B-ORG", "I-ORG"], ["B-ORG", "B-ORG", "I-ORG"], ["O", "B-ORG", "I-ORG"]),
    (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
])
def test_repair_examples(tags, conlleval, strict):
    assert L.repair_iob(tags) == conlleval
    assert L.repair_iob(tags, "strict") == strict
    assert L.is_valid_iob2(conlleval) and L.is_valid_iob2(strict)
    assert L.is_valid_iob2(tags) == (tags == conlleval)


def test_repair_errors():
    with pytest.raises(ValueError, match="unknown IOB repair mode"):
        L.repair_iob(["O"], "iobes")
    with pytest.raises(ValueError, match="'X' is not O, B-<type> or I-<type>"):
        L.repair_iob(["X"])


_tags = st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=8)


@settings(max_examples=25, deadline=None)
@given(_tags)
def test_repair_properties(tags):
    c, s = L.repair_iob(tags, "conlleval"), L.repair_iob(tags, "strict")
    assert L.is_valid_iob2(c) and L.is_valid_iob2(s)
    assert L.repair_iob(c) == c and L.repair_iob(s, "strict") == s  # idempotent
    # each repair keeps what its chunker reads, and on valid IOB2 the chunkers agree
    assert get_entities(c) == get_entities(tags) == get_entities(c, strict=True)
    assert get_entities(s) == get_entities(tags, strict=True) == get_entities(s, strict=True)
