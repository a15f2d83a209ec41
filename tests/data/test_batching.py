"""Word-piece labels (docs/data.md §3), dynamic padding and seeded batch iteration."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.data.batching import encode_sentence, encode_sentences, iterate_batches, make_batch
from minimner.data.conll import Sentence
from minimner.data.labels import TAG2ID
from minimner.metrics import word_tags_from_pieces
from tests.conftest import minilm_dir

CLS, SEP = 101, 102


class PiecesByLength:
    """A stand-in tokenizer: a word of n characters gives ceil(n / 2) pieces."""

    def encode_words(self, words):
        ids, first = [CLS], []
        for w in words:
            first.append(len(ids))
            ids.extend(1000 + len(ids) + k for k in range(-(-len(w) // 2)))
        ids.append(SEP)
        return SimpleNamespace(input_ids=np.asarray(ids, dtype=np.int64),
                               first_piece=np.asarray(first, dtype=np.int64))


TOK = PiecesByLength()


def _sent(words, tags=None, line=1):
    return Sentence(list(words), None if tags is None else list(tags), "img", line)


def test_piece_labels_follow_the_spec_table():
    ex = encode_sentence(TOK, _sent(["Obama", "in", "NYC"], ["B-PER", "O", "B-OTHER"]))
    # pieces: [CLS] Ob am a | in | NY C [SEP]
    assert ex.first_piece.tolist() == [1, 4, 5]
    assert ex.labels.tolist() == [11, 4, 10, 10, 1, 2, 10, 12]  # B-OTHER is read as B-MISC = 2
    assert ex.aux_labels.tolist() == [5, 2, 4, 4, 1, 2, 4, 6]
    assert ex.labels.dtype == np.int64 and ex.aux_labels.dtype == np.int64
    unlabelled = encode_sentence(TOK, _sent(["Obama"]))
    assert unlabelled.labels is None and unlabelled.aux_labels is None


def test_custom_label_map_and_unknown_tag():
    lm = dict(TAG2ID)
    lm["B-PER"] = 7
    assert encode_sentence(TOK, _sent(["ab"], ["B-PER"]), lm).labels.tolist() == [11, 7, 12]
    with pytest.raises(ValueError, match="line 9: tag 'B-FOO' is not in the label map"):
        encode_sentence(TOK, Sentence(["ab"], ["B-FOO"], None, 9))


def test_misaligned_tokenizer_is_caught():
    class Bad:
        def encode_words(self, words):
            return SimpleNamespace(input_ids=np.array([CLS, 5, SEP]), first_piece=np.array([1, 2]))

    with pytest.raises(ValueError, match="aligned"):
        encode_sentence(Bad(), _sent(["a", "b"], ["O", "O"]))


@pytest.mark.skipif(minilm_dir() is None, reason="MiniLM tokenizer package not installed")
def test_with_the_real_wordpiece_tokenizer():
    from minimner.tokenization import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer.from_pretrained(minilm_dir())
    s = _sent(["RT", "@ThePatriot143", "\u200d", "Hillary"], ["O", "O", "B-PER", "B-PER"])
    ex = encode_sentence(tok, s)
    pieces = tok.convert_ids_to_tokens(ex.input_ids)
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    # the zero-piece word keeps a position ([UNK]) and its gold tag (docs/differences.md §2)
    assert pieces[ex.first_piece[2]] == "[UNK]" and ex.labels[ex.first_piece[2]] == TAG2ID["B-PER"]
    assert ex.labels[ex.first_piece].tolist() == [1, 1, 4, 4]
    n_later = len(pieces) - 2 - 4
    assert n_later > 0 and (ex.labels == 10).sum() == n_later
    assert encode_sentences(tok, [s])[0].labels.tolist() == ex.labels.tolist()


def _examples(lengths_words):
    sents = [_sent(["x" * n for n in ws], ["O"] * len(ws), line=i) for i, ws in enumerate(lengths_words)]
    return encode_sentences(TOK, sents)


def test_make_batch_pads_to_the_longest_sequence(xp_name):
    exs = _examples([[1, 3], [2, 2, 2, 5], [1]])  # 1+2 pieces +2, 1+1+1+3 +2, 1 +2
    b = make_batch(exs)
    xp = backend.xp()
    assert backend.get_xp(b.input_ids) is xp
    assert b.input_ids.shape == b.attention_mask.shape == b.labels.shape == b.aux_labels.shape == (3, 8)
    assert b.first_piece.shape == b.word_mask.shape == (3, 4)
    assert b.input_ids.dtype == np.int64 and b.labels.dtype == np.int64
    assert b.attention_mask.dtype == bool and b.word_mask.dtype == bool
    mask = backend.asnumpy(b.attention_mask)
    assert backend.asnumpy(b.lengths).tolist() == [5, 8, 3] == mask.sum(1).tolist()
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate([5, 8, 3]))
    ids, lab = backend.asnumpy(b.input_ids), backend.asnumpy(b.labels)
    assert (ids[~mask] == 0).all() and (lab[~mask] == 0).all() and (backend.asnumpy(b.aux_labels)[~mask] == 0).all()
    assert backend.asnumpy(b.first_piece).tolist() == [[1, 2, -1, -1], [1, 2, 3, 4], [1, -1, -1, -1]]
    assert b.indices == [0, 1, 2] and [s.line_no for s in b.sentences] == [0, 1, 2]
    assert word_tags_from_pieces(b.labels, b.first_piece, b.word_mask) == [["O"] * 2, ["O"] * 4, ["O"]]
    assert make_batch(exs, pad_to=64).input_ids.shape == (3, 64)


def test_make_batch_errors():
    exs = _examples([[1], [3]])
    with pytest.raises(ValueError, match="at least one"):
        make_batch([])
    with pytest.raises(ValueError, match="pad_to=3 is shorter than the longest sequence \\(4 pieces\\)"):
        make_batch(exs, pad_to=3)
    with pytest.raises(ValueError, match="mixes labelled and unlabelled"):
        make_batch([exs[0], encode_sentence(TOK, _sent(["a"]))])
    unl = make_batch([encode_sentence(TOK, _sent(["a"]))])
    assert unl.labels is None and unl.aux_labels is None


def test_iterate_batches_order_sizes_and_seeds():
    exs = _examples([[k % 4 + 1] * (k % 3 + 1) for k in range(10)])
    plain = list(iterate_batches(exs, 4))
    assert [len(b) for b in plain] == [4, 4, 2] and sum((b.indices for b in plain), []) == list(range(10))
    assert [len(b) for b in iterate_batches(exs, 4, drop_last=True)] == [4, 4]
    a = sum((b.indices for b in iterate_batches(exs, 3, shuffle=True, rng=7)), [])
    assert sorted(a) == list(range(10)) and a != list(range(10))
    assert a == sum((b.indices for b in iterate_batches(exs, 3, shuffle=True, rng=7)), [])
    assert a != sum((b.indices for b in iterate_batches(exs, 3, shuffle=True, rng=8)), [])
    gen = np.random.default_rng(7)
    epoch1 = sum((b.indices for b in iterate_batches(exs, 3, shuffle=True, rng=gen)), [])
    epoch2 = sum((b.indices for b in iterate_batches(exs, 3, shuffle=True, rng=gen)), [])
    assert epoch1 == a and epoch2 != epoch1 and sorted(epoch2) == list(range(10))
    with pytest.raises(ValueError, match="shuffle=True needs rng"):
        next(iterate_batches(exs, 3, shuffle=True))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(iterate_batches(exs, 0))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=4), min_size=1, max_size=6),
       st.integers(1, 4), st.integers(0, 3))
def test_batching_keeps_every_example_exactly(word_lengths, batch_size, seed):
    exs = _examples(word_lengths)
    seen = {}
    for b in iterate_batches(exs, batch_size, shuffle=True, rng=seed):
        T = b.input_ids.shape[1]
        assert T == max(len(exs[i]) for i in b.indices)  # padded to the batch's longest, no more
        for row, i in enumerate(b.indices):
            n = len(exs[i])
            assert b.input_ids[row, :n].tolist() == exs[i].input_ids.tolist()  # nothing truncated
            assert b.labels[row, :n].tolist() == exs[i].labels.tolist()
            seen[i] = seen.get(i, 0) + 1
    assert seen == {i: 1 for i in range(len(exs))}


@pytest.mark.skipif(minilm_dir() is None, reason="MiniLM tokenizer package not installed")
def test_an_over_long_tweet_is_named_by_file_and_line(tmp_path):
    """The tokenizer refuses a tweet longer than the positions; the error names that tweet's file:line."""
    from minimner.data.conll import read_conll
    from minimner.tokenization import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer.from_pretrained(minilm_dir())
    path = tmp_path / "train.txt"
    n = tok.max_length                                      # "the" is one piece: n words need n + 2 pieces
    assert tok.encode_words(["the"]).input_ids.shape == (3,)
    path.write_text("IMGID:1\nok\tO\n\nIMGID:2\n" + "the\tO\n" * n, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        encode_sentences(tok, read_conll(path))
    assert str(e.value) == (f"{path}:5: sentence of {n} words needs {n + 2} word pieces with [CLS]/[SEP], more "
                            f"than the model's {n} positions; split it (minimner never truncates silently)")
