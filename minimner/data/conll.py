"""Reading and writing the CoNLL-with-IMGID format of the Twitter MNER data sets (docs/data.md §1).

One tweet looks like::

    IMGID:1015799
    RT<TAB>O
    @Barack<TAB>B-PER
    ...
    <blank line>

Rules (the original's, made robust):

* ``IMGID:<id>`` gives the image of the tweet that follows (``<id>.jpg``); it is
  consumed by that tweet. A tweet is closed by a blank line (or a line of spaces and
  tabs only) or by the end of the file; several blank lines in a row are one.
* On a token line the token is the **first** tab field, kept exactly as written
  (a token may be a lone no-break space or zero-width joiner); the tag is the **last**
  tab field with surrounding ASCII whitespace removed. Fields in between are ignored.
* ``B-OTHER``/``I-OTHER`` (Twitter-2015) are renamed ``B-MISC``/``I-MISC``.
* A UTF-8 byte-order mark at the start, CRLF line ends and a missing final newline
  are all accepted. (The original cut the last character of every tag, which loses a
  real character when the file does not end in a newline; we never do.)
* Anything else is an error: :class:`DataFormatError` with a ``file:line: problem``
  message (a line without a tab, an empty token or tag, an unknown tag, a tweet with
  no ``IMGID`` line, an ``IMGID`` line with no tweet after it or in the middle of a
  tweet, invalid UTF-8).

:func:`write_conll` writes the same format atomically, so ``read_conll(write_conll(s))``
gives back ``s`` exactly. :func:`read_text` reads plain whitespace-tokenised text (one
tweet per line, optional ``IMGID:`` lines) for prediction, and
:func:`read_released_output` reads the prediction files the original authors released
(``best_model/t2015/pre_output.txt`` of LiuPeiP-CS/IIE4MNER).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from minimner.atomic import write_text_atomic
from minimner.data.labels import normalise_tag, validate_tag

__all__ = ["Sentence", "DataFormatError", "read_conll", "iter_conll", "write_conll", "format_conll", "read_text", "iter_text",
           "read_released_output", "read_image_ids", "image_id_problem", "IMGID_PREFIX"]

IMGID_PREFIX = "IMGID:"


class DataFormatError(ValueError):
    """A malformed data file; the message reads ``file:line: problem``."""

    def __init__(self, path, line_no: int | None, problem: str):
        self.path, self.line_no, self.problem = str(path), line_no, problem
        where = f"{self.path}:{line_no}" if line_no is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass
class Sentence:
    """One tweet.

    Attributes
    ----------
    words : list of str
        The tokens, exactly as in the file.
    tags : list of str or None
        One normalised tag per word (``None`` for unlabelled text).
    image_id : str or None
        The ``IMGID`` of the tweet (image file ``<image_id>.jpg``), ``None`` when absent.
    line_no : int
        1-based line of the first word in its file (word j sits on line ``line_no + j``
        in CoNLL files). Not part of equality, so a round trip compares equal.
    source : str or None
        The file it was read from (for error messages); not part of equality.
    """

    words: list[str]
    tags: list[str] | None = None
    image_id: str | None = None
    line_no: int = field(default=0, compare=False)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def where(self) -> str:
        """``file:line`` of the tweet (``line N`` when the file is unknown), for error messages."""
        return f"{self.source}:{self.line_no}" if self.source else f"line {self.line_no}"

    def __post_init__(self):
        if self.tags is not None and len(self.tags) != len(self.words):
            raise ValueError(f"sentence at line {self.line_no}: {len(self.words)} words "
                             f"but {len(self.tags)} tags")

    def __len__(self) -> int:
        return len(self.words)


def _decode_lines(path: Path) -> list[str]:
    """The file's lines without their ``\\n`` / ``\\r\\n`` ends (BOM removed), or a DataFormatError."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataFormatError(path, line, f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {col}): "
                                          f"{e.reason}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    # Split on '\n' only: str.splitlines() would also split on characters such as
    # U+2028 or U+0085, which can legitimately occur inside a tweet's token.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _is_blank(line: str) -> bool:
    return line.strip(" \t") == ""


def image_id_problem(image_id: str) -> str | None:
    """Why ``image_id`` is not a plain file name (None when it is one).

    An image id names ``<id>.jpg`` inside the images folder and ``<id>.npy`` inside
    a features folder, so it must not reach outside them: a path separator, ``.``,
    ``..`` or an absolute path is refused.
    """
    if os.path.isabs(image_id):
        return "it is an absolute path"
    if "/" in image_id or "\\" in image_id:
        return "it contains a path separator"
    if image_id in (".", ".."):
        return f"{image_id!r} names a folder"
    if "\0" in image_id:
        return "it contains a NUL character"
    return None


def _image_id(path, line_no: int, line: str) -> str:
    image_id = line[len(IMGID_PREFIX):].strip()
    if not image_id or any(c.isspace() for c in image_id):
        raise DataFormatError(path, line_no, f"malformed IMGID line {line!r}: expected 'IMGID:<id>' "
                                             "with a non-empty id and no spaces")
    problem = image_id_problem(image_id)
    if problem:
        raise DataFormatError(path, line_no, f"IMGID {image_id!r} is not a plain image name ({problem}); "
                                             "an image id names a file inside the images folder")
    return image_id


def read_image_ids(path) -> list[str]:
    """Image ids of a file's ``IMGID:<id>`` lines, in order, each once (the other lines are not read).

    Raises
    ------
    FileNotFoundError; DataFormatError naming the file and line for invalid UTF-8 or
    a malformed or unsafe image id (see :func:`image_id_problem`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    seen: dict[str, None] = {}
    for n, line in enumerate(_decode_lines(path), start=1):
        if line.startswith(IMGID_PREFIX):
            seen.setdefault(_image_id(path, n, line), None)
    return list(seen)


def read_conll(path, *, allow_special: bool = False, require_image_id: bool = True) -> list[Sentence]:
    """Read a CoNLL-with-IMGID file into sentences.

    Parameters
    ----------
    path : str or Path
        The file (UTF-8; BOM, CRLF and a missing final newline are accepted).
    allow_special : bool
        Also accept the word-piece tags ``X``, ``[CLS]``, ``[SEP]`` and ``PAD`` (a
        model's raw predictions may contain them); gold files never do.
    require_image_id : bool
        Every tweet must be preceded by an ``IMGID:`` line (the data sets). With
        ``False``, tweets without one get ``image_id=None``.

    Returns
    -------
    list of Sentence
        In file order, tags normalised (``OTHER`` read as ``MISC``).

    Raises
    ------
    FileNotFoundError
        if the file does not exist.
    DataFormatError
        naming the file, the line and the problem for malformed input (the first one).
    """
    return _all_or_first_error(iter_conll(path, allow_special=allow_special, require_image_id=require_image_id))


def _all_or_first_error(items) -> list[Sentence]:
    """The sentences of a tolerant reader, or its first error raised."""
    sentences = []
    for item in items:
        if isinstance(item, DataFormatError):
            raise item
        sentences.append(item)
    return sentences


def iter_conll(path, *, allow_special: bool = False, require_image_id: bool = True):
    """:func:`read_conll`, tolerant: yields each tweet as a Sentence, or a DataFormatError for a bad one.

    After an error the rest of that tweet's block (up to the next blank line) is skipped and
    reading goes on, so a caller can report a bad tweet by file and line and tag the others
    (``predict --on-error skip``). Invalid UTF-8 still fails for the whole file.

    Raises
    ------
    FileNotFoundError, DataFormatError (invalid UTF-8 only)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    words: list[str] = []
    tags: list[str] = []
    image_id: str | None = None  # pending IMGID for the tweet being read
    imgid_line = 0  # line of that IMGID
    first = 0  # line of the current tweet's first word
    skipping = False  # inside the block of a bad tweet: drop lines up to the next blank one

    def problem(n: int, line: str) -> str | None:
        """What is wrong with line n in the current state (None: nothing)."""
        if line.startswith(IMGID_PREFIX):
            if words:
                return f"IMGID line inside a tweet (missing blank line after the tweet that starts on line {first}?)"
            if image_id is not None:
                return f"second IMGID line, but the IMGID on line {imgid_line} has no tweet after it"
            return None
        if "\t" not in line:
            return f"expected 'token<TAB>tag', found no tab in {line!r}"
        fields = line.split("\t")
        if fields[0] == "":
            return f"empty token (line starts with a tab): {line!r}"
        if fields[-1].strip() == "":
            return f"empty tag for token {fields[0]!r}"
        try:
            validate_tag(normalise_tag(fields[-1].strip()), allow_special=allow_special)
        except ValueError as e:
            return str(e)
        if not words and image_id is None and require_image_id:
            return "tweet without an IMGID line (expected 'IMGID:<id>' before its first token)"
        return None

    for n, line in enumerate(_decode_lines(path), start=1):
        if _is_blank(line):
            if words:                    # a blank line closes a tweet; an IMGID before it stays pending
                yield Sentence(words, tags, image_id, first, str(path))
                words, tags, image_id = [], [], None
            skipping = False
            continue
        if skipping:
            continue
        bad = problem(n, line)
        if bad is None and line.startswith(IMGID_PREFIX):
            try:
                image_id, imgid_line = _image_id(path, n, line), n
            except DataFormatError as e:
                bad = e.problem
            else:
                continue
        if bad is not None:
            yield DataFormatError(path, n, bad)
            words, tags, image_id, skipping = [], [], None, True
            continue
        fields = line.split("\t")
        if not words:
            first = n
        words.append(fields[0])
        tags.append(normalise_tag(fields[-1].strip()))
    if image_id is not None and not words:
        yield DataFormatError(path, imgid_line, "IMGID line with no tweet after it")
    if words:
        yield Sentence(words, tags, image_id, first, str(path))


def _check_writable(sent_idx: int, words: Sequence[str], tags: Sequence[str]) -> None:
    if len(words) == 0:
        raise ValueError(f"sentence {sent_idx}: no words (an empty tweet cannot be written)")
    if len(tags) != len(words):
        raise ValueError(f"sentence {sent_idx}: {len(words)} words but {len(tags)} tags")
    for j, w in enumerate(words):
        if not isinstance(w, str) or w == "" or any(c in w for c in "\t\n\r"):
            raise ValueError(f"sentence {sent_idx}, word {j}: {w!r} cannot be written "
                             "(empty, or contains a tab or line break)")
        if w.startswith(IMGID_PREFIX):
            raise ValueError(f"sentence {sent_idx}, word {j}: {w!r} would be read back as an IMGID line")
    for j, t in enumerate(tags):
        if not isinstance(t, str) or t == "" or t != t.strip() or any(c.isspace() for c in t):
            raise ValueError(f"sentence {sent_idx}, tag {j}: {t!r} is not a tag")


def write_conll(path, sentences: Iterable[Sentence], tags: Sequence[Sequence[str]] | None = None) -> None:
    """Write sentences as CoNLL-with-IMGID, atomically (temporary file + ``os.replace``).

    Each tweet is written as its ``IMGID:`` line (when it has an image id), one
    ``word<TAB>tag`` line per word and a blank line; ``\\n`` line ends, UTF-8, no BOM.

    Parameters
    ----------
    path : str or Path
        Destination; its folder must exist.
    sentences : iterable of Sentence
    tags : sequence of sequences of str, optional
        Tags to write instead of each sentence's own (for example predictions, which
        may include ``X``); one sequence per sentence, one tag per word.

    Raises
    ------
    ValueError
        if a sentence has no tags, the lengths disagree, or a word/tag cannot be
        represented in the format (empty, containing a tab or line break, ...).
    """
    write_text_atomic(path, format_conll(sentences, tags), mkdir=False)


def format_conll(sentences: Iterable[Sentence], tags: Sequence[Sequence[str]] | None = None) -> str:
    """The CoNLL-with-IMGID text :func:`write_conll` writes (same arguments, same checks), as a string.

    ``predict`` streams it chunk by chunk; :func:`write_conll` writes it in one go.
    """
    sentences = list(sentences)
    if tags is not None and len(tags) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(tags)} tag sequences")
    parts: list[str] = []
    for i, s in enumerate(sentences):
        ts = s.tags if tags is None else list(tags[i])
        if ts is None:
            raise ValueError(f"sentence {i} (line {s.line_no}) has no tags to write")
        _check_writable(i, s.words, ts)
        if s.image_id is not None:
            if not s.image_id or any(c.isspace() for c in s.image_id):
                raise ValueError(f"sentence {i}: image id {s.image_id!r} is empty or contains whitespace")
            parts.append(f"{IMGID_PREFIX}{s.image_id}\n")
        parts.extend(f"{w}\t{t}\n" for w, t in zip(s.words, ts))
        parts.append("\n")
    text = "".join(parts)
    if text.startswith("\ufeff"):
        raise ValueError("sentence 0: first word starts with a byte-order mark, which reading strips")
    return text


def read_text(path, *, require_image_id: bool = False) -> list[Sentence]:
    """Read plain text for prediction: one tweet per line, split on whitespace.

    A line ``IMGID:<id>`` gives the image of the tweet on the next non-blank line.
    Blank lines are skipped. Sentences come back with ``tags=None``.

    Parameters
    ----------
    path : str or Path
        UTF-8 text file.
    require_image_id : bool
        Every tweet must have an ``IMGID`` line.

    Returns
    -------
    list of Sentence

    Raises
    ------
    FileNotFoundError, DataFormatError (the first problem)
    """
    return _all_or_first_error(iter_text(path, require_image_id=require_image_id))


def iter_text(path, *, require_image_id: bool = False):
    """:func:`read_text`, tolerant: yields each tweet as a Sentence, or a DataFormatError where a line is bad.

    A bad ``IMGID`` line is reported and forgotten (the next tweet has no image unless another
    ``IMGID`` line follows); a tweet missing a required ``IMGID`` is reported and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    image_id, imgid_line = None, 0
    for n, line in enumerate(_decode_lines(path), start=1):
        if line.startswith(IMGID_PREFIX):
            if image_id is not None:
                yield DataFormatError(path, n, f"second IMGID line, but the IMGID on line {imgid_line} "
                                               "has no tweet after it")
            try:
                image_id, imgid_line = _image_id(path, n, line), n
            except DataFormatError as e:
                yield e
                image_id = None
            continue
        words = line.split()
        if not words:
            continue
        if image_id is None and require_image_id:
            yield DataFormatError(path, n, "tweet without an IMGID line before it")
            continue
        yield Sentence(words, None, image_id, n, str(path))
        image_id = None
    if image_id is not None:
        yield DataFormatError(path, imgid_line, "IMGID line with no tweet after it")


def read_released_output(path) -> list[tuple[str, list[str], list[str]]]:
    """Read the authors' released prediction file (``pre_output.txt``) for scoring.

    The file holds one block per tweet, blocks separated by a blank line::

        62654.jpg
        <the tweet's text>
        <predicted tags, space separated>
        <gold tags, space separated>

    The gold and predicted rows hold one tag per *scored* word (the original drops
    words with zero word pieces, so they can be shorter than the text).

    Returns
    -------
    list of (image_id, gold_tags, pred_tags)
        ``image_id`` without ``.jpg``; gold tags normalised (OTHER -> MISC);
        predicted tags may include ``X``/``[CLS]``/``[SEP]``/``PAD``.

    Raises
    ------
    FileNotFoundError, DataFormatError
        for a block that does not have four lines, rows of different lengths, or
        an unknown tag (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = []
    block: list[tuple[int, str]] = []
    for n, line in enumerate(_decode_lines(path) + [""], start=1):  # "" closes the last block
        if line.strip() != "":
            block.append((n, line))
            continue
        if not block:
            continue
        if len(block) != 4:
            raise DataFormatError(path, block[0][0], f"expected 4 lines (image, text, predicted tags, gold tags) "
                                                     f"in the block starting here, found {len(block)}")
        (n_img, img), _, (n_pred, pred_row), (n_gold, gold_row) = block
        pred, gold = pred_row.split(), [normalise_tag(t) for t in gold_row.split()]
        if len(pred) != len(gold):
            raise DataFormatError(path, n_pred, f"{len(pred)} predicted tags but {len(gold)} gold tags "
                                                f"on line {n_gold}")
        for row, tags, special in ((n_pred, pred, True), (n_gold, gold, False)):
            for t in tags:
                try:
                    validate_tag(normalise_tag(t), allow_special=special)
                except ValueError as e:
                    raise DataFormatError(path, row, str(e)) from None
        img = img.strip()
        out.append((img[:-4] if img.endswith(".jpg") else img, gold, [normalise_tag(t) for t in pred]))
        block = []
    return out
