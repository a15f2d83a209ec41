"""The character vocabulary (docs/data.md §4) and per-position char ids (docs/data.md §3)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from minimner import backend
from minimner.data import chars
from minimner.data.batching import encode_sentences, make_batch
from minimner.data.conll import Sentence

CLS, SEP = 101, 102

TRAIN = "IMGID:1\nab\tO\nba\tB-PER\n\nIMGID:2\ncc\tO\n"
DEV = "IMGID:3\nd\tO\n  e\t \tI-PER\n\n"


class PiecesByLength:
    """A stand-in tokenizer: a word of n characters gives ceil(n / 2) pieces."""

    def encode_words(self, words):
        ids, first = [CLS], []
        for w in words:
            first.append(len(ids))
            ids.extend(1000 + len(ids) + k for k in range(max(1, -(-len(w) // 2))))
        ids.append(SEP)
        return SimpleNamespace(input_ids=np.asarray(ids, dtype=np.int64),
                               first_piece=np.asarray(first, dtype=np.int64))


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ----------------------------------------------------------------------------- vocabulary
def test_vocab_specials_frequency_order_and_ties(tmp_path):
    files = [_write(tmp_path, "train.txt", TRAIN), _write(tmp_path, "valid.txt", DEV)]
    vocab = chars.build_char_vocab(files)
    # counts a:2 b:2 c:2 d:1 e:1 (the leading spaces of '  e' are stripped): ties keep first-seen order
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "[X]": 2, "[XC]": 3, "[XS]": 4,
                     "a": 5, "b": 6, "c": 7, "d": 8, "e": 9}
    more = _write(tmp_path, "test.txt", "IMGID:4\neee\tO\n")
    vocab2 = chars.build_char_vocab(files + [more])
    assert list(vocab2)[5:] == ["e", "a", "b", "c", "d"]  # e now most frequent (4); the others keep their order
    # the reading order (files, then lines) decides ties
    f1, f2 = _write(tmp_path, "f1", "IMGID:1\nxy\tO\n"), _write(tmp_path, "f2", "IMGID:1\nq\tO\nyx\tO\n")
    assert list(chars.build_char_vocab([f1, f2]))[5:] == ["x", "y", "q"]
    assert list(chars.build_char_vocab([f2, f1]))[5:] == ["y", "x", "q"]


def test_vocab_reads_lines_like_the_original(tmp_path):
    """Lines are strip()-ed: leading spaces go; a whitespace-only token leaves its tag as the 'word';
    CRLF, a missing final newline and a BOM are harmless; IMGID and blank lines are skipped."""
    p = _write(tmp_path, "t.txt", "\ufeffIMGID:9\r\n\u00a0\tO\r\nxy\tB-LOC\r\n \r\n\r\nIMGID:10\nz\tO")
    vocab = chars.build_char_vocab([p])
    assert list(vocab)[5:] == ["O", "x", "y", "z"]
    assert chars.build_char_vocab(p) == vocab            # one path is accepted too
    assert chars.char_vocab_from_words(["O", "xy", "z"]) == vocab


def test_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        chars.build_char_vocab([tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match="at least one file"):
        chars.build_char_vocab([])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"IMGID:1\n\xff\tO\n")
    with pytest.raises(ValueError, match="bad.txt: not valid UTF-8"):
        chars.build_char_vocab([bad])


@pytest.mark.parity
def test_vocab_matches_the_authors_build_vocab_when_available(tmp_path, capsys):
    """With MINIMNER_IIE4MNER pointing at the authors' checkout: their utils.build_vocab on the same files."""
    root = os.environ.get("MINIMNER_IIE4MNER")
    if not root or not (Path(root) / "utils.py").is_file():
        pytest.skip("MINIMNER_IIE4MNER does not point at an IIE4MNER checkout")
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("_iie4mner_utils", Path(root) / "utils.py")
    original_utils = importlib.util.module_from_spec(spec)     # a private name: no clash with other 'utils'
    spec.loader.exec_module(original_utils)
    texts = {"train": TRAIN + "IMGID:5\n\u00a0\tO\nÄö!\tO\n\n", "dev": DEV, "test": "IMGID:4\neee\tO\nab\tO\n"}
    for name, text in texts.items():
        _write(tmp_path, name, text)
    _, theirs = original_utils.build_vocab(str(tmp_path))
    capsys.readouterr()                                  # it prints the vocabularies
    ours = chars.build_char_vocab([tmp_path / n for n in ("train", "dev", "test")])
    assert ours == theirs


def test_save_and_load_round_trip(tmp_path):
    vocab = chars.char_vocab_from_words(["héllo", "wörld", "🙂", "[", "]", '"', "\\"])
    p = chars.save_char_vocab(tmp_path / "sub" / "chars.json", vocab)
    back = chars.load_char_vocab(p)
    assert back == vocab and list(back) == list(vocab)
    assert not list(tmp_path.joinpath("sub").glob(".*tmp*"))  # atomic: no stray temporary file
    with pytest.raises(ValueError, match=r"expected '\[UNK\]' at id 1"):
        chars.save_char_vocab(tmp_path / "x.json", {"[PAD]": 0, "a": 1})
    with pytest.raises(ValueError, match="ids must be the integers 0..6"):
        chars.save_char_vocab(tmp_path / "x.json", {**{s: i for i, s in enumerate(chars.SPECIALS)}, "a": 6, "b": 7})
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a char vocabulary"):
        chars.load_char_vocab(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        chars.load_char_vocab(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError):
        chars.load_char_vocab(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- char ids
VOCAB = {"[PAD]": 0, "[UNK]": 1, "[X]": 2, "[XC]": 3, "[XS]": 4, "a": 5, "b": 6, "c": 7}


def test_word_char_ids():
    assert chars.word_char_ids("abz", VOCAB, 5) == [5, 6, 1, 0, 0]            # unknown z -> [UNK]
    assert chars.word_char_ids(" ab\u00a0", VOCAB, 4) == [5, 6, 0, 0]          # strip() first
    assert chars.word_char_ids("abcabcabcabcab", VOCAB) == [5, 6, 7] * 4      # cut to 12
    assert chars.word_char_ids("\u00a0", VOCAB, 3) == [0, 0, 0]                # nothing left: all [PAD]


def _batch(sentences, backend_name=None):
    return make_batch(encode_sentences(PiecesByLength(), sentences), backend_name)


def test_char_ids_table_per_position(xp_name):
    sents = [Sentence(["abcab", "z", "ccccccccccccccx"], ["O", "O", "O"], "i", 1),   # 3 + 1 + 8 pieces
             Sentence(["ba"], ["O"], "j", 5)]
    batch = _batch(sents, xp_name)
    out = chars.char_ids(batch, VOCAB)
    assert backend.device_of(out) == xp_name and out.dtype == np.int64
    out = backend.asnumpy(out)
    B, T = batch.input_ids.shape
    assert out.shape == (B, T, 12) == (2, 14, 12)
    row0 = [[3] * 12,                                             # [CLS]
            [5, 6, 7, 5, 6] + [0] * 7, [2] * 12, [2] * 12,       # "abcab": 3 pieces, later pieces [X]
            [1] + [0] * 11,                                      # "z": unknown char
            [7] * 12] + [[2] * 12] * 7 + [[4] * 12]              # 15 chars cut to 12; 7 later pieces; [SEP]
    assert out[0].tolist() == row0
    row1 = [[3] * 12, [6, 5] + [0] * 10, [4] * 12] + [[0] * 12] * 11  # [CLS] "ba" [SEP], then padding
    assert out[1].tolist() == row1


def test_char_ids_other_length_and_errors():
    batch = _batch([Sentence(["abc"], None, None, 1)])
    assert backend.asnumpy(chars.char_ids(batch, VOCAB, max_wordlen=2)).tolist() == [[[3, 3], [5, 6], [2, 2], [4, 4]]]
    with pytest.raises(ValueError, match="max_wordlen must be a positive integer"):
        chars.char_ids(batch, VOCAB, 0)
    with pytest.raises(ValueError, match=r"expected '\[XS\]' at id 4"):
        chars.char_ids(batch, {k: v for k, v in VOCAB.items() if k != "[XS]"})
    broken = make_batch(encode_sentences(PiecesByLength(), [Sentence(["abc"], None, None, 1)]))
    broken.sentences = [Sentence(["abc", "d"], None, None, 1)]
    with pytest.raises(ValueError, match="word_mask has 1 words but its sentences have 2"):
        chars.char_ids(broken, VOCAB)


def test_char_ids_batched_equals_one_at_a_time(rng):
    words = ["".join(rng.choice(list("abcxyz"), rng.integers(1, 16))) for _ in range(9)]
    sents = [Sentence(words[:4]), Sentence(words[4:5]), Sentence(words[5:])]
    full = backend.asnumpy(chars.char_ids(_batch(sents), VOCAB))
    for b, s in enumerate(sents):
        single = backend.asnumpy(chars.char_ids(_batch([s]), VOCAB))[0]
        n = single.shape[0]
        np.testing.assert_array_equal(full[b, :n], single)
        assert np.all(full[b, n:] == 0)
