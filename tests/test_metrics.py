"""Entity-level metrics: chunking rules, specials, errors, and parity with seqeval."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner.data.labels import SPECIAL_TAGS
from minimner.metrics import format_table, get_entities, score, word_tags_from_pieces


@pytest.mark.parametrize("tags,default,strict", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["O", "I-PER", "I-PER"], [("PER", 1, 3)], []),
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)], [("PER", 0, 1)]),
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)], [("PER", 0, 1), ("PER", 1, 3)]),
    (["I-ORG"], [("ORG", 0, 1)], []),
    ([], [], []),
])
def test_get_entities(tags, default, strict):
    assert get_entities(tags) == default
    assert get_entities(tags, strict=True) == strict


def test_get_entities_rejects_non_iob_tags():
    with pytest.raises(ValueError, match="'X' is not O, B-<type> or I-<type>"):
        get_entities(["O", "X"])


def test_score_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-ORG", "O"]]
    r = score(gold, pred)
    # gold: PER(0,2) LOC(3,4) ORG; pred: PER(0,2) PER(3,4) ORG -> 2 of 3 correct
    assert r["micro"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3, abs=1e-15)}
    assert r["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3, abs=1e-15), "support": 1}}
    assert r["counts"] == {"gold": 3, "predicted": 3, "correct": 2, "sentences": 2, "words": 6}
    assert r["special_predictions"] == {} and r["mode"] == "default" and r["specials"] == "o"


def test_entities_never_match_across_sentences():
    # the same span in another sentence is not a match
    r = score([["B-PER"], ["O"]], [["O"], ["B-PER"]])
    assert r["counts"]["correct"] == 0 and r["micro"]["f1"] == 0.0


def test_strict_vs_default_on_ill_formed_predictions():
    gold = [["O", "B-PER", "I-PER"]]
    pred = [["O", "I-PER", "I-PER"]]
    assert score(gold, pred)["micro"]["f1"] == 1.0            # conlleval: I after O opens an entity
    assert score(gold, pred, strict=True)["micro"]["f1"] == 0.0  # strict: it does not


def test_zero_division_is_zero():
    r = score([["O", "O"]], [["O", "O"]])
    assert r["micro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0} and r["per_type"] == {}


def test_specials_are_scored_as_o_and_counted():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "X", "[SEP]", "B-LOC"]]
    r = score(gold, pred)
    assert r["special_predictions"] == {"X": 1, "[SEP]": 1}
    assert r["counts"] == {"gold": 2, "predicted": 2, "correct": 1, "sentences": 1, "words": 4}
    assert set(r["per_type"]) == {"LOC", "PER"}
    rs = score(gold, pred, specials="seqeval")  # seqeval reads X as type "_", [SEP] as type "SEP]"
    assert set(rs["per_type"]) == {"LOC", "PER", "SEP]", "_"}
    with pytest.raises(ValueError, match="strict mode with specials='seqeval'"):
        score(gold, pred, strict=True, specials="seqeval")
    assert score(gold, pred, strict=True)["special_predictions"] == {"X": 1, "[SEP]": 1}


@pytest.mark.parametrize("gold,pred,kw,problem", [
    ([["O"]], [["O"], ["O"]], {}, "1 gold sentences but 2 predicted"),
    ([["O", "O"]], [["O"]], {}, "sentence 0: 2 gold tags but 1 predicted"),
    ([["O", "X"]], [["O", "O"]], {}, r"gold tag 'X' \(sentence 0, word 1\)"),
    ([["O"], ["O"]], [["O"], ["E-PER"]], {}, r"predicted tag 'E-PER' \(sentence 1, word 0\)"),
    ([["O"]], [["O"]], {"specials": "drop"}, "unknown specials rule"),
])
def test_score_errors(gold, pred, kw, problem):
    with pytest.raises(ValueError, match=problem):
        score(gold, pred, **kw)


def test_format_table():
    r = score([["B-PER", "O", "B-LOC"]], [["B-PER", "X", "O"]])
    text = format_table(r)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["LOC", "0.0000", "0.0000", "0.0000", "1"]
    assert lines[3].split() == ["PER", "1.0000", "1.0000", "1.0000", "1"]
    assert lines[5].split() == ["micro", "avg", "1.0000", "0.5000", "0.6667", "2"]
    assert "1 word(s) predicted as a word-piece tag (X: 1), scored as O." in text
    assert "default (conlleval) chunking" in text
    assert "strict IOB2" in format_table(score([["O"]], [["O"]], strict=True), digits=2)


def test_word_tags_from_pieces_reads_first_pieces_only(xp):
    piece_ids = xp.asarray([[11, 4, 10, 1, 12, 0], [11, 10, 6, 12, 0, 0]], dtype=xp.int64)  # (B, T)
    first = xp.asarray([[1, 3], [1, -1]], dtype=xp.int64)  # (B, W); pad -1
    mask = xp.asarray([[True, True], [True, False]])
    assert word_tags_from_pieces(piece_ids, first, mask) == [["B-PER", "O"], ["X"]]
    with pytest.raises(ValueError, match="expected piece_ids"):
        word_tags_from_pieces(piece_ids[0], first, mask)


# ------------------------------------------------------------------------------ seqeval parity
def _seqeval_report(gold, pred, strict):
    seqeval = pytest.importorskip("seqeval")  # noqa: F841
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    kw = {"mode": "strict", "scheme": IOB2} if strict else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-division and "not a NE tag" warnings
        return classification_report(gold, pred, output_dict=True, zero_division=0, **kw)


def _assert_same_as_seqeval(ours, rep):
    names = set(rep) - {"micro avg", "macro avg", "weighted avg"}
    assert set(ours["per_type"]) == names
    for typ, m in ours["per_type"].items():
        r = rep[typ]
        assert (m["precision"], m["recall"], m["f1"], m["support"]) == \
               (r["precision"], r["recall"], r["f1-score"], r["support"]), typ
    r = rep["micro avg"]
    assert (ours["micro"]["precision"], ours["micro"]["recall"], ours["micro"]["f1"]) == \
           (r["precision"], r["recall"], r["f1-score"])


_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.mark.parity
@settings(max_examples=25, deadline=None)
@given(st.data())
def test_matches_seqeval_on_random_sequences(data):
    lens = data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    gold = [data.draw(st.lists(st.sampled_from(_TAGS), min_size=n, max_size=n)) for n in lens]
    pred = [data.draw(st.lists(st.sampled_from(_TAGS + list(SPECIAL_TAGS)), min_size=n, max_size=n))
            for n in lens]
    as_o = [[t if t not in SPECIAL_TAGS else "O" for t in s] for s in pred]
    _assert_same_as_seqeval(score(gold, pred), _seqeval_report(gold, as_o, False))
    _assert_same_as_seqeval(score(gold, pred, strict=True), _seqeval_report(gold, as_o, True))
    _assert_same_as_seqeval(score(gold, pred, specials="seqeval"), _seqeval_report(gold, pred, False))


def _perturb(seqs, rng, p, specials):
    """Replace each tag with probability p by a random tag (entity tags, O, and optionally specials)."""
    choices = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    if specials:
        choices += list(SPECIAL_TAGS)
    out = []
    for s in seqs:
        flip = rng.random(len(s)) < p
        new = rng.integers(0, len(choices), size=len(s))
        out.append([choices[k] if f else t for t, f, k in zip(s, flip, new)])
    return out


@pytest.mark.data
@pytest.mark.parity
@pytest.mark.parametrize("seed,p", [(0, 0.05), (1, 0.2)])
def test_matches_seqeval_on_twitter2015_test(shared_data, seed, p):
    from minimner.data.conll import read_conll

    gold = [s.tags for s in read_conll(shared_data / "twitter2015" / "test.txt")]
    rng = np.random.default_rng(seed)
    pred = _perturb(gold, rng, p, specials=False)
    for strict in (False, True):
        r = score(gold, pred, strict=strict)
        _assert_same_as_seqeval(r, _seqeval_report(gold, pred, strict))
        assert 0.0 < r["micro"]["f1"] < 1.0
    noisy = _perturb(gold, rng, p, specials=True)
    _assert_same_as_seqeval(score(gold, noisy, specials="seqeval"), _seqeval_report(gold, noisy, False))
    as_o = [[t if t not in SPECIAL_TAGS else "O" for t in s] for s in noisy]
    r = score(gold, noisy, strict=True)
    _assert_same_as_seqeval(r, _seqeval_report(gold, as_o, True))
    assert sum(r["special_predictions"].values()) == sum(t in SPECIAL_TAGS for s in noisy for t in s) > 0
    perfect = score(gold, gold)
    assert perfect["micro"]["f1"] == 1.0 and perfect["counts"]["gold"] == 5207
