"""Tests of the constraint builders in minimner/constraints.py.

* the BIO rules of :func:`bio_constraints`, each option on its own;
* the paper's set (:func:`paper_constraints`) and the per-position mask;
* the tables on the backend of the word mask;
* errors that name the problem.

Constrained *decoding* (Viterbi against brute force) is tested with the CRF in
tests/test_crf.py and tests/nn/test_crf.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from minimner import backend
from minimner.constraints import (PAPER_MAIN_TAGS, Constraints, bio_constraints, paper_constraints,
                                  word_position_allowed)
from minimner.data.labels import MAIN_TAGS


def test_bio_constraints_rules():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    c = bio_constraints(names)
    idx = {n: i for i, n in enumerate(names)}
    assert c.tags is None and c.transitions.dtype == bool
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            legal = not b.startswith("I-") or a in (f"B-{b[2:]}", b)
            assert c.transitions[i, j] == legal, (a, b)
    assert not c.start[idx["I-PER"]] and c.start[idx["B-PER"]] and c.end.all()


def test_bio_constraints_options_one_at_a_time():
    names = ["PAD", "O", "B-A", "I-A", "X", "[CLS]", "[SEP]"]
    idx = {n: i for i, n in enumerate(names)}
    plain = bio_constraints(names)
    # transparent: I-A may follow X (first-order blind), nothing else changes
    c = bio_constraints(names, transparent=("X",))
    assert not plain.transitions[idx["X"], idx["I-A"]] and c.transitions[idx["X"], idx["I-A"]]
    changed = c.transitions != plain.transitions
    assert changed.sum() == 1 and (c.start == plain.start).all() and (c.end == plain.end).all()
    # forbidden: PAD neither starts, ends, enters nor leaves
    c = bio_constraints(names, forbidden=("PAD",))
    k = idx["PAD"]
    assert not c.start[k] and not c.end[k] and not c.transitions[k].any() and not c.transitions[:, k].any()
    # bos: only [CLS] starts and nothing moves into it; eos: only [SEP] ends and it goes nowhere
    c = bio_constraints(names, bos="[CLS]", eos="[SEP]")
    assert c.start.tolist() == [n == "[CLS]" for n in names]
    assert c.end.tolist() == [n == "[SEP]" for n in names]
    assert not c.transitions[:, idx["[CLS]"]].any() and not c.transitions[idx["[SEP]"]].any()
    assert isinstance(c, Constraints)


def test_paper_constraints():
    names = PAPER_MAIN_TAGS
    assert tuple(names) == tuple(MAIN_TAGS) and len(names) == 13
    idx = {n: i for i, n in enumerate(names)}
    c = paper_constraints()
    assert c.transitions.shape == (13, 13) and c.tags is None
    assert c.start.tolist() == [n == "[CLS]" for n in names]
    assert c.end.tolist() == [n == "[SEP]" for n in names]
    assert not c.transitions[:, idx["PAD"]].any() and not c.transitions[idx["PAD"]].any()
    assert not c.transitions[:, idx["[CLS]"]].any() and not c.transitions[idx["[SEP]"]].any()
    assert c.transitions[idx["X"], idx["I-PER"]]           # B-PER X I-PER is legal
    assert c.transitions[idx["B-PER"], idx["X"]]
    assert not c.transitions[idx["O"], idx["I-PER"]] and not c.transitions[idx["B-LOC"], idx["I-PER"]]
    assert not c.transitions[idx["[CLS]"], idx["I-PER"]]
    word = np.array([[False, True, False, True, False, False]])
    c = paper_constraints(word)
    assert c.tags.shape == (1, 6, 13)
    for t in range(6):
        for n in names:
            assert c.tags[0, t, idx[n]] == (not word[0, t] or n not in ("X", "[CLS]", "[SEP]", "PAD"))


def test_word_position_allowed_custom_disallowed():
    names = ["O", "B-A", "X"]
    word = np.array([[True, False], [False, True]])
    tags = word_position_allowed(word, names, disallowed=("X",))
    assert tags.shape == (2, 2, 3) and tags.dtype == bool
    np.testing.assert_array_equal(tags[..., 2], ~word)     # X banned exactly on word positions
    assert tags[..., :2].all()


def test_tables_follow_the_word_mask_backend(xp):
    word = backend.asarray(np.array([[False, True, True, False]]))
    c = paper_constraints(word)
    for a in (c.transitions, c.start, c.end, c.tags):
        assert backend.get_xp(a) is xp and a.dtype == bool
    np.testing.assert_array_equal(backend.asnumpy(c.transitions), paper_constraints().transitions)


def test_constraint_builders_reject_unknown_tags():
    with pytest.raises(ValueError, match="not in tag_names"):
        bio_constraints(["O", "B-A"], bos="[CLS]")
    with pytest.raises(ValueError, match="not in tag_names"):
        word_position_allowed(np.ones((1, 2), bool), ["O", "B-A"])
    with pytest.raises(ValueError, match="word_mask"):
        word_position_allowed(np.ones((1, 2)), PAPER_MAIN_TAGS)
    with pytest.raises(ValueError, match="word_mask"):
        word_position_allowed(np.ones(3, bool), PAPER_MAIN_TAGS)
