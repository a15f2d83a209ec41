"""The CoNLL-with-IMGID reader/writer: format rules, robustness, errors, round trip, real files."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minimner.data.conll import (DataFormatError, Sentence, image_id_problem, read_conll, read_image_ids,
                                 read_released_output, read_text, write_conll)
from minimner.data.labels import WORD_TAGS
from minimner.metrics import get_entities

T15 = "IMGID:101\nRT\tO\nObama\tB-PER\nin\tO\nNew\tB-LOC\nYork\tI-LOC\n\nIMGID:102\nWorld\tB-OTHER\nCup\tI-OTHER\n"


def _write(tmp_path, content, name="d.txt"):
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_reads_twitter2015_style_and_normalises_other(tmp_path):
    s = read_conll(_write(tmp_path, T15))
    assert [x.image_id for x in s] == ["101", "102"]
    assert s[0].words == ["RT", "Obama", "in", "New", "York"]
    assert s[0].tags == ["O", "B-PER", "O", "B-LOC", "I-LOC"]
    assert s[1].tags == ["B-MISC", "I-MISC"]
    assert [x.line_no for x in s] == [2, 9]


def test_twitter2017_misc_ids_and_trailing_blank_lines(tmp_path):
    s = read_conll(_write(tmp_path, "IMGID:17_06_1\nA\tB-MISC\nB\tI-MISC\n\n\n\nIMGID:17_06_2\nC\tO\n\n\n"))
    assert [(x.image_id, x.tags) for x in s] == [("17_06_1", ["B-MISC", "I-MISC"]), ("17_06_2", ["O"])]


def test_crlf_bom_missing_final_newline_are_harmless(tmp_path):
    plain = read_conll(_write(tmp_path, T15, "a.txt"))
    crlf = read_conll(_write(tmp_path, "\ufeff" + T15.replace("\n", "\r\n"), "b.txt"))
    no_nl = read_conll(_write(tmp_path, T15.rstrip("\n"), "c.txt"))
    assert plain == crlf == no_nl
    # the original code cut the last character of the last tag here; we keep it
    assert no_nl[-1].tags[-1] == "I-MISC"


def test_blank_lines_of_spaces_and_tabs_separate_tweets(tmp_path):
    s = read_conll(_write(tmp_path, "IMGID:1\na\tO\n  \t \nIMGID:2\nb\tB-PER\n\n\n \n"))
    assert [x.words for x in s] == [["a"], ["b"]]


def test_token_is_first_field_tag_is_last_field_tokens_kept_verbatim(tmp_path):
    content = ("IMGID:1\nfoo\tNNP\tB-PER\nbar\tI-PER \n\u00a0\tO\n\u200d\tO\n"
               "a\u2028b\tO\n\u0085x\tO\n")
    s = read_conll(_write(tmp_path, content))
    assert s[0].words == ["foo", "bar", "\u00a0", "\u200d", "a\u2028b", "\u0085x"]
    assert s[0].tags == ["B-PER", "I-PER", "O", "O", "O", "O"]


def test_optional_image_ids_and_special_tags(tmp_path):
    p = _write(tmp_path, "a\tX\nb\t[SEP]\n\nIMGID:5\nc\tPAD\nd\t[CLS]\n")
    with pytest.raises(DataFormatError, match="tweet without an IMGID"):
        read_conll(p, allow_special=True)
    with pytest.raises(DataFormatError, match="unknown tag 'X'"):
        read_conll(p, require_image_id=False)
    s = read_conll(p, require_image_id=False, allow_special=True)
    assert [(x.image_id, x.tags) for x in s] == [(None, ["X", "[SEP]"]), ("5", ["PAD", "[CLS]"])]


BAD = [
    ("IMGID:1\nhello\n", 2, "no tab"),
    ("IMGID:1\n\tO\n", 2, "empty token"),
    ("IMGID:1\na\tO\nb\t \n", 3, "empty tag"),
    ("IMGID:1\na\tO\nb\tB-FOO\n", 3, "unknown tag 'B-FOO'"),
    ("IMGID:1\na\tO\nb\tX\n", 3, "unknown tag 'X'"),
    ("IMGID:1\na\tO\n\nb\tO\n", 4, "tweet without an IMGID"),
    ("a\tO\n", 1, "tweet without an IMGID"),
    ("IMGID:1\na\tO\nIMGID:2\nb\tO\n", 3, "IMGID line inside a tweet"),
    ("IMGID:1\nIMGID:2\nb\tO\n", 2, "second IMGID line"),
    ("IMGID:1\n\nIMGID:2\nb\tO\n", 3, "second IMGID line"),
    ("IMGID:1\na\tO\n\nIMGID:2\n\n", 4, "IMGID line with no tweet"),
    ("IMGID:\na\tO\n", 1, "malformed IMGID"),
    ("IMGID:1 2\na\tO\n", 1, "malformed IMGID"),
]


@pytest.mark.parametrize("content,line,problem", BAD)
def test_malformed_input_names_file_line_and_problem(tmp_path, content, line, problem):
    p = _write(tmp_path, content)
    with pytest.raises(DataFormatError, match=problem) as e:
        read_conll(p)
    assert str(e.value).startswith(f"{p}:{line}: ")
    assert e.value.line_no == line and isinstance(e.value, ValueError)


@pytest.mark.parametrize("content,line,problem", BAD)
def test_tolerant_reader_reports_the_same_first_error_and_reads_on(tmp_path, content, line, problem):
    """iter_conll yields read_conll's error where read_conll stops, then the tweets after the bad block."""
    from minimner.data.conll import iter_conll

    good = "IMGID:9\nafter\tB-PER\nthat\tO\n"
    p = _write(tmp_path, content.rstrip("\n") + "\n\n" + good)
    items = list(iter_conll(p))
    errors = [i for i in items if isinstance(i, DataFormatError)]
    with pytest.raises(DataFormatError) as first:
        read_conll(p)
    assert str(errors[0]) == str(first.value)
    if "with no tweet" not in problem:                     # (there the next tweet's IMGID joins the bad block)
        assert errors[0].line_no == line and problem in str(errors[0])
        assert items[-1] == Sentence(["after", "that"], ["B-PER", "O"], "9")


def test_tolerant_readers_skip_only_the_bad_tweet(tmp_path):
    from minimner.data.conll import iter_conll, iter_text

    p = _write(tmp_path, "IMGID:1\na\tO\n\nIMGID:2\nb\tO\nno tab\nc\tO\n\nIMGID:3\nd\tB-LOC\n")
    items = list(iter_conll(p))
    assert [type(i).__name__ for i in items] == ["Sentence", "DataFormatError", "Sentence"]
    assert items[1].line_no == 6 and [items[0].words, items[2].words] == [["a"], ["d"]]
    t = _write(tmp_path, "IMGID:1\nfirst tweet\nIMGID:x y\nsecond tweet\nIMGID:3\n", name="t.txt")
    items = list(iter_text(t))
    assert [(type(i).__name__, getattr(i, "line_no", None)) for i in items] == [
        ("Sentence", 2), ("DataFormatError", 3), ("Sentence", 4), ("DataFormatError", 5)]
    assert items[2].image_id is None                       # the bad IMGID line is forgotten, never guessed at


def test_invalid_utf8_names_the_line_and_column(tmp_path):
    p = _write(tmp_path, b"IMGID:1\na\tO\nb\xffc\tO\n")
    with pytest.raises(DataFormatError, match=r":3: invalid UTF-8 \(byte 0xff at column 2\)"):
        read_conll(p)
    with pytest.raises(DataFormatError, match=":1: invalid UTF-8"):
        read_text(_write(tmp_path, b"\xc3(\n", "t.txt"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_conll(tmp_path / "nope.txt")


def test_empty_file_has_no_sentences(tmp_path):
    assert read_conll(_write(tmp_path, "")) == []
    assert read_conll(_write(tmp_path, "\n\n \n", "b.txt")) == []


def test_sentence_checks_lengths():
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        Sentence(["a", "b"], ["O"])


# ------------------------------------------------------------------------------ writing
def test_write_read_roundtrip_and_tag_override(tmp_path):
    src = read_conll(_write(tmp_path, T15))
    out = tmp_path / "out.txt"
    write_conll(out, src)
    assert read_conll(out) == src
    text = out.read_text(encoding="utf-8")
    assert text.startswith("IMGID:101\nRT\tO\nObama\tB-PER\n") and text.endswith("Cup\tI-MISC\n\n")
    pred = [["O", "X", "O", "B-LOC", "I-LOC"], ["[SEP]", "O"]]
    write_conll(out, src, tags=pred)
    back = read_conll(out, allow_special=True)
    assert [x.tags for x in back] == pred and [x.words for x in back] == [x.words for x in src]
    assert sorted(os.listdir(tmp_path)) == ["d.txt", "out.txt"]  # no temporary file left behind


@pytest.mark.parametrize("sent,tags,problem", [
    (Sentence(["a\tb"], ["O"]), None, "tab or line break"),
    (Sentence(["a\nb"], ["O"]), None, "tab or line break"),
    (Sentence([""], ["O"]), None, "empty"),
    (Sentence(["x", "IMGID:3"], ["O", "O"]), None, "IMGID"),
    (Sentence([], []), None, "no words"),
    (Sentence(["a"], None), None, "no tags"),
    (Sentence(["a"], ["B PER"]), None, "not a tag"),
    (Sentence(["a"], ["O"], image_id="1 2"), None, "image id"),
    (Sentence(["a", "b"], ["O", "O"]), [["O"]], "2 words but 1 tags"),
])
def test_writer_refuses_what_cannot_be_read_back(tmp_path, sent, tags, problem):
    out = tmp_path / "o.txt"
    out.write_text("previous content")
    with pytest.raises(ValueError, match=problem):
        write_conll(out, [sent], tags=tags)
    assert out.read_text() == "previous content"  # atomic: a failed write leaves the old file
    assert os.listdir(tmp_path) == ["o.txt"]


_word = st.text(st.characters(blacklist_characters="\t\n\r", blacklist_categories=("Cs",)),
                min_size=1, max_size=5).filter(lambda w: not w.startswith("IMGID:"))
_sentence = st.builds(
    lambda words, tags, img: Sentence(words, [tags[i % len(tags)] for i in range(len(words))], img),
    st.lists(_word, min_size=1, max_size=5),
    st.lists(st.sampled_from(WORD_TAGS), min_size=1, max_size=5),
    st.one_of(st.none(), st.from_regex(r"[0-9A-Za-z_]{1,8}", fullmatch=True)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_sentence, max_size=4))
def test_roundtrip_property(tmp_path, sentences):
    assume(not (sentences and sentences[0].image_id is None and sentences[0].words[0].startswith("\ufeff")))
    p = tmp_path / "rt.txt"
    write_conll(p, sentences)
    back = read_conll(p, require_image_id=False)
    assert back == sentences
    first = p.read_bytes()
    write_conll(p, back)
    assert p.read_bytes() == first
    # CRLF and a missing final newline read back to the same sentences
    p.write_bytes(first.rstrip(b"\n").replace(b"\n", b"\r\n"))
    assert read_conll(p, require_image_id=False) == sentences


# ------------------------------------------------------------------------------ plain text
def test_read_text(tmp_path):
    p = _write(tmp_path, "\ufeffIMGID:7\nhello  world !\n\n   \nno image\tid here\r\nIMGID:8\nlast")
    s = read_text(p)
    assert [(x.words, x.tags, x.image_id, x.line_no) for x in s] == [
        (["hello", "world", "!"], None, "7", 2), (["no", "image", "id", "here"], None, None, 5),
        (["last"], None, "8", 7)]
    with pytest.raises(DataFormatError, match=":5: tweet without an IMGID"):
        read_text(p, require_image_id=True)
    with pytest.raises(DataFormatError, match=":2: IMGID line with no tweet"):
        read_text(_write(tmp_path, "a b\nIMGID:1\n\n", "e.txt"))


# ------------------------------------------------------------------------------ released predictions
def test_read_released_output(tmp_path):
    p = _write(tmp_path, "1.jpg\nObama in Paris\nB-PER O X\nB-PER O B-OTHER\n\n2.jpg\nhi\nO\nO\n")
    rows = read_released_output(p)
    assert rows == [("1", ["B-PER", "O", "B-MISC"], ["B-PER", "O", "X"]), ("2", ["O"], ["O"])]
    with pytest.raises(DataFormatError, match=r":1: expected 4 lines"):
        read_released_output(_write(tmp_path, "1.jpg\ntext\nO\n", "b.txt"))
    with pytest.raises(DataFormatError, match=r":3: 2 predicted tags but 1 gold"):
        read_released_output(_write(tmp_path, "1.jpg\ntext\nO O\nO\n", "c.txt"))
    with pytest.raises(DataFormatError, match=r":4: unknown tag 'X'"):
        read_released_output(_write(tmp_path, "1.jpg\ntext\nO\nX\n", "d.txt"))


# ------------------------------------------------------------------------------ the real data
@pytest.mark.data
@pytest.mark.parametrize("name,n_tweets,n_entities", [
    ("twitter2015/train.txt", 4000, 6352), ("twitter2015/valid.txt", 1000, 1594),
    ("twitter2015/test.txt", 3257, 5207), ("twitter2017/train.txt", 3373, None),
    ("twitter2017/valid.txt", 723, None)])
def test_real_files(shared_data, tmp_path, name, n_tweets, n_entities):
    s = read_conll(shared_data / name)
    assert len(s) == n_tweets
    assert all(x.image_id and len(x.words) == len(x.tags) > 0 for x in s)
    assert {t for x in s for t in x.tags} <= set(WORD_TAGS)
    if n_entities is not None:  # conlleval chunking, as in ../shared/data/README.md
        assert sum(len(get_entities(x.tags)) for x in s) == n_entities
    out = tmp_path / "copy.txt"
    write_conll(out, s)
    assert read_conll(out) == s


@pytest.mark.parametrize("image_id,problem", [
    ("../x", "it contains a path separator"),
    ("../../etc/passwd", "it contains a path separator"),
    ("/tmp/x", "it is an absolute path"),
    ("a\\b", "it contains a path separator"),
    ("..", "'..' names a folder"),
    (".", "'.' names a folder"),
])
def test_image_ids_are_plain_names(tmp_path, image_id, problem):
    """An IMGID that could reach outside the images or features folder is refused with file and line."""
    p = _write(tmp_path, f"IMGID:1\na\tO\n\nIMGID:{image_id}\nb\tO\n")
    message = (f"{p}:4: IMGID {image_id!r} is not a plain image name ({problem}); "
               "an image id names a file inside the images folder")
    for read in (read_conll, read_text, read_image_ids):
        with pytest.raises(DataFormatError) as e:
            read(p)
        assert str(e.value) == message
    assert image_id_problem("17_06_12483") is None and image_id_problem("a..b") is None


def test_read_image_ids_reads_only_imgid_lines(tmp_path):
    p = _write(tmp_path, "IMGID:7\nanything here\n\nIMGID:8\nx\ty\nIMGID:7\n")
    assert read_image_ids(p) == ["7", "8"]
    bad = _write(tmp_path, b"IMGID:1\na\xff\n")
    with pytest.raises(DataFormatError) as e:
        read_image_ids(bad)
    assert str(e.value) == f"{bad}:2: invalid UTF-8 (byte 0xff at column 2): invalid start byte"


def test_sentences_know_their_file(tmp_path):
    p = _write(tmp_path, "IMGID:1\na\tO\nb\tO\n\nIMGID:2\nc\tO\n")
    assert [s.where for s in read_conll(p)] == [f"{p}:2", f"{p}:6"]
    assert Sentence(["a"], line_no=3).where == "line 3"
