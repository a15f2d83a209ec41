"""Word-vector lexicons: the :class:`Lexicon` container and its readers and writer.

A lexicon is a list of V distinct words and a float32 matrix of their vectors,
``vectors[i]`` being the vector of ``words[i]``. The semantic augmentation of
docs/augmentation.md looks up neighbours in one (the paper used a 200-d word2vec model of
tweets; minimner's offline default is GloVe 6B 50-d).

Formats read (all streamed line by line / record by record with a tqdm progress
bar, so a multi-GB file never sits in memory twice):

* **GloVe text**: ``word v_1 … v_E`` per line, single spaces, no header. E is
  taken from the first line.
* **word2vec text**: a header ``V E`` then lines as in GloVe (the C tool writes a
  trailing space, which is accepted).
* **word2vec binary**: a header ``V E\\n`` then, per word, the UTF-8 word, one
  space, E little-endian float32 and (usually) a newline.
* **.npz** written by :func:`save_npz` (what ``python -m minimner convert glove``
  produces): ``words`` (the words joined by ``\\n``, as UTF-8 bytes in a uint8
  array, so no pickled object array is ever needed), ``vectors`` (V, E) float32
  and ``format_version``. It is read with ``allow_pickle=False``.

Text files may be gzip-compressed (``.gz``). Problems are reported as
:class:`LexiconFormatError` whose message reads ``file:line: problem`` (for the
binary format ``file:word N: problem``): a ragged row, a dimension that
disagrees with the header or with ``dim=``, a value that is not a number, a
duplicate word (naming the line of its first occurrence), a non-finite value,
invalid UTF-8, or a header whose word count disagrees with the body.

Words containing a space (GloVe 840B has a few) make a row ragged; they are
reported rather than guessed at.

Dimension legend: V lexicon words, E vector size (Da = 200 in the paper, 50 for
GloVe 6B 50-d).
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from minimner.files import require_file, text_to_array, write_npz_atomic

__all__ = ["Lexicon", "LexiconFormatError", "load_lexicon", "minimner_home", "default_lexicon_path",
           "DEFAULT_LEXICON_NAME", "read_glove_text", "read_word2vec_text",
           "read_word2vec_binary", "load_npz", "save_npz", "detect_format", "FORMATS",
           "NPZ_FORMAT_VERSION"]

#: Format names accepted by :func:`load_lexicon` (``auto`` guesses from the file).
FORMATS = ("auto", "glove", "word2vec", "word2vec-bin", "npz")

#: Version of the ``.npz`` layout written by :func:`save_npz`.
NPZ_FORMAT_VERSION = 1

#: File name of the converted offline default (GloVe 6B 50-d) inside :func:`minimner_home`.
DEFAULT_LEXICON_NAME = "glove-6b-50d.npz"

_ROWS_PER_BLOCK = 8192  # text rows parsed per NumPy conversion (amortises the str -> float32 cost)


class LexiconFormatError(ValueError):
    """A malformed lexicon file; the message reads ``file:line: problem``."""

    def __init__(self, path, where: str | None, problem: str):
        self.path, self.where, self.problem = str(path), where, problem
        super().__init__(f"{self.path}:{where}: {problem}" if where else f"{self.path}: {problem}")


class Lexicon:
    """V distinct words and their float32 vectors.

    Parameters
    ----------
    words : sequence of str, length V
        Distinct, non-empty, without newline characters.
    vectors : array (V, E), converted to float32 NumPy; every value finite.
    source : str, where the lexicon came from (shown in messages and cache metadata).

    Attributes
    ----------
    words : list of str
    vectors : np.ndarray (V, E) float32, C-contiguous. Always host memory: the
        neighbour search moves it to the compute backend explicitly.
    index : dict str -> int, the row of each word.

    Raises
    ------
    ValueError
        for a shape mismatch, a duplicate, empty or newline-containing word, or a
        non-finite value (naming the word).
    """

    def __init__(self, words: Sequence[str], vectors, source: str = "<memory>"):
        words = [str(w) for w in words]
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))  # (V, E)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"{source}: expected vectors of shape ({len(words)}, E) for {len(words)} words, "
                             f"got {tuple(vectors.shape)}")
        index: dict[str, int] = {}
        for i, w in enumerate(words):
            if not w or "\n" in w:
                raise ValueError(f"{source}: word {i} ({w!r}) is empty or contains a newline")
            j = index.setdefault(w, i)
            if j != i:
                raise ValueError(f"{source}: duplicate word {w!r} (rows {j} and {i})")
        finite = np.isfinite(vectors).all(axis=1)                    # (V,) bool
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{source}: the vector of {words[bad]!r} (row {bad}) has a NaN or infinite value")
        self.words, self.vectors, self.index, self.source = words, vectors, index, str(source)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Lexicon({len(self)} words, dim {self.dim}, source={self.source!r})"

    @property
    def dim(self) -> int:
        """E, the vector size."""
        return int(self.vectors.shape[1])

    def vector(self, word: str) -> np.ndarray:
        """The (E,) float32 vector of ``word`` (exact match); ``KeyError`` naming the word if absent."""
        if word not in self.index:
            raise KeyError(f"{word!r} is not in the lexicon {self.source}")
        return self.vectors[self.index[word]]

    def fingerprint(self) -> str:
        """Hex SHA-256 of the content (E, the words, the float32 vectors), independent of the file format.

        The augmentation-table cache is keyed by it, so the same vectors read from a
        text file or from its converted ``.npz`` share cached tables.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"minimner-lexicon-v1 {len(self)} {self.dim}\n".encode())
            h.update("\n".join(self.words).encode("utf-8"))
            h.update(b"\0")
            h.update(self.vectors.astype("<f4", copy=False).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


# ----------------------------------------------------------------------------- locations
def minimner_home() -> Path:
    """The user cache folder: ``$MINIMNER_HOME``, else ``~/.cache/minimner`` (never inside the repo)."""
    env = os.environ.get("MINIMNER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minimner"


def default_lexicon_path() -> Path:
    """Where ``python -m minimner convert glove`` puts the offline default lexicon."""
    return minimner_home() / DEFAULT_LEXICON_NAME


# ----------------------------------------------------------------------------- helpers
def _open_binary(path: Path):
    """Open a (possibly gzip-compressed) file for reading bytes."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _require_file(path) -> Path:
    return require_file(path, "lexicon file")


def _progress(path: Path, total, unit: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, desc=f"reading {path.name}", disable=not progress,
                leave=False)


def detect_format(path) -> str:
    """Guess the format of ``path``: ``npz``, ``word2vec-bin``, ``word2vec`` or ``glove``.

    ``.npz`` by suffix; ``.bin`` by suffix (the word2vec binary convention);
    otherwise a first line of exactly two integers is a word2vec text header,
    and anything else is GloVe text.
    """
    p = _require_file(path)
    name = p.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".bin") or name.endswith(".bin.gz"):
        return "word2vec-bin"
    with _open_binary(p) as f:
        first = f.readline(1 << 16)
    parts = first.split()
    if len(parts) == 2 and all(t.isdigit() for t in parts):
        return "word2vec"
    return "glove"


def _check_dim(path, where, got: int, want: int | None, what: str):
    if want is not None and got != want:
        raise LexiconFormatError(path, where, f"vectors have {got} values but {what} {want}")


# ----------------------------------------------------------------------------- text readers
def _read_text(path, header: bool, dim: int | None, limit: int | None, progress: bool) -> Lexicon:
    """Shared body of the GloVe and word2vec text readers (see :func:`read_glove_text`)."""
    p = _require_file(path)
    words: list[str] = []
    blocks: list[np.ndarray] = []           # parsed (n, E) float32 blocks
    pending: list[list[str]] = []           # value fields of rows not yet converted
    pending_start = 0                       # line number of pending[0]
    first_line: dict[str, int] = {}         # word -> line of its first occurrence
    n_header = None
    E = None                                # vector size, from the header or the first row
    E_from = ""                             # where E came from, for the ragged-row message
    total = p.stat().st_size if p.suffix != ".gz" else None
    with _open_binary(p) as f, _progress(p, total, "B", progress) as bar:
        seen_bytes = 0
        for lineno, raw in enumerate(f, 1):
            seen_bytes += len(raw)
            if lineno % 4096 == 0:
                bar.update(seen_bytes)
                seen_bytes = 0
            line = _decode_line(p, lineno, raw)
            if header and lineno == 1:
                n_header, E = _read_header(p, line, dim)
                E_from = "as the header says"
                continue
            if E is None:  # GloVe: the first row fixes the dimension
                E = _first_row_dim(p, lineno, line, dim)
                E_from = f"as on line {lineno}"
            parts = _split_row(p, lineno, line, E, E_from)
            word = parts[0]
            prev = first_line.setdefault(word, lineno)
            if prev != lineno:
                raise LexiconFormatError(p, lineno, f"duplicate word {word!r} (first on line {prev})")
            if not pending:
                pending_start = lineno
            words.append(word)
            pending.append(parts[1:])
            if len(pending) == _ROWS_PER_BLOCK:
                blocks.append(_rows_to_block(p, pending_start, pending))
                pending = []
            if limit is not None and len(words) >= limit:
                break
        bar.update(seen_bytes)
    if pending:
        blocks.append(_rows_to_block(p, pending_start, pending))
    return _text_lexicon(p, words, blocks, first_line, n_header, limit)


def _decode_line(p: Path, lineno: int, raw: bytes) -> str:
    """One line as text without its line end; invalid UTF-8 names the line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LexiconFormatError(p, lineno, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return line.rstrip("\r\n ")


def _read_header(p: Path, line: str, dim: int | None) -> tuple[int, int]:
    """(word count, E) of a word2vec text header ``COUNT DIM``."""
    parts = line.split()
    if len(parts) != 2 or not all(t.isdigit() for t in parts):
        raise LexiconFormatError(p, 1, f"expected a word2vec header 'COUNT DIM', got {line[:60]!r}")
    n_header, E = int(parts[0]), int(parts[1])
    _check_dim(p, 1, E, dim, "dim= asks for")
    return n_header, E


def _first_row_dim(p: Path, lineno: int, line: str, dim: int | None) -> int:
    """E of a GloVe file, read off its first row (a word and E values)."""
    if not line:
        raise LexiconFormatError(p, lineno, "empty line")
    E = len(line.split(" ")) - 1
    if E < 1:
        raise LexiconFormatError(p, lineno, "a row needs a word and at least one value")
    _check_dim(p, lineno, E, dim, "dim= asks for")
    return E


def _split_row(p: Path, lineno: int, line: str, E: int, E_from: str) -> list[str]:
    """``[word, v_1 … v_E]`` of one row; an empty line, a ragged row or an empty word names the line."""
    if not line:
        raise LexiconFormatError(p, lineno, "empty line")
    parts = line.split(" ")
    if len(parts) != E + 1:
        raise LexiconFormatError(
            p, lineno, f"ragged row: {len(parts)} space-separated fields, expected {E + 1} "
                       f"(a word and {E} values, {E_from}; a word may not contain a space)")
    if not parts[0]:
        raise LexiconFormatError(p, lineno, "empty word (the line starts with a space)")
    return parts


def _rows_to_block(p: Path, start: int, rows: list[list[str]]) -> np.ndarray:
    """(n, E) float32 of rows' value fields (row 0 is line ``start``); a non-number names its line."""
    try:
        return np.array(rows, dtype=np.float32)                   # (n, E) str -> float32
    except ValueError:
        for off, row in enumerate(rows):  # find the offending line for the message
            for tok in row:
                try:
                    float(tok)
                except ValueError:
                    raise LexiconFormatError(p, start + off, f"value {tok!r} is not a number") from None
        raise


def _text_lexicon(p: Path, words: list[str], blocks: list[np.ndarray], first_line: dict[str, int],
                  n_header: int | None, limit: int | None) -> Lexicon:
    """The :class:`Lexicon` of a text file's rows, after the whole-file checks (count, finiteness)."""
    if not words:
        raise LexiconFormatError(p, None, "no word vectors found (empty file?)")
    if n_header is not None and limit is None and len(words) != n_header:
        raise LexiconFormatError(p, None, f"the header announces {n_header} words but the file holds {len(words)}")
    vectors = np.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]   # (V, E)
    bad = ~np.isfinite(vectors).all(axis=1)                                      # (V,) bool
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LexiconFormatError(p, first_line[words[i]], f"the vector of {words[i]!r} has a NaN or infinite value")
    return Lexicon(words, vectors, source=str(p))


def read_glove_text(path, dim: int | None = None, limit: int | None = None, progress: bool = True) -> Lexicon:
    """Read a GloVe text file (``word v_1 … v_E`` per line, no header).

    Parameters
    ----------
    path : str or Path (``.gz`` is decompressed on the fly)
    dim : int, optional; when given, E must equal it
    limit : int, optional; keep only the first ``limit`` words
    progress : bool, show a tqdm progress bar (on stderr)

    Returns
    -------
    Lexicon with vectors (V, E) float32

    Raises
    ------
    FileNotFoundError
    LexiconFormatError
        ``file:line: problem`` for a ragged row, a wrong dimension, a non-number,
        a duplicate word, a non-finite value or invalid UTF-8.
    """
    return _read_text(path, header=False, dim=dim, limit=limit, progress=progress)


def read_word2vec_text(path, dim: int | None = None, limit: int | None = None, progress: bool = True) -> Lexicon:
    """Read a word2vec text file (header ``V E``, then ``word v_1 … v_E`` per line).

    Same arguments, returns and errors as :func:`read_glove_text`, plus an error
    when the header's word count disagrees with the body (unless ``limit`` is set).
    """
    return _read_text(path, header=True, dim=dim, limit=limit, progress=progress)


# ----------------------------------------------------------------------------- binary reader
def read_word2vec_binary(path, dim: int | None = None, limit: int | None = None,
                         progress: bool = True) -> Lexicon:
    """Read a word2vec binary file (the C tool's and gensim's ``binary=True`` format).

    Layout: an ASCII header ``V E\\n``; then V records, each the UTF-8 word, one
    space, E little-endian float32 values and an optional newline. Records are
    parsed from a 1 MiB rolling buffer, so memory is the (V, E) result only.

    Raises
    ------
    LexiconFormatError
        ``file:word N: problem`` for a truncated record, an empty or duplicate word,
        invalid UTF-8 or a non-finite value; ``file:1: ...`` for a bad header.
    """
    p = _require_file(path)
    with _open_binary(p) as f:
        header = f.readline(256)
        parts = header.split()
        if len(parts) != 2 or not all(t.isdigit() for t in parts):
            raise LexiconFormatError(p, "1", f"expected a word2vec header 'COUNT DIM', got {header[:60]!r}")
        V, E = int(parts[0]), int(parts[1])
        _check_dim(p, "1", E, dim, "dim= asks for")
        n = V if limit is None else min(V, int(limit))
        vectors = np.empty((n, E), dtype=np.float32)             # (V, E) filled record by record
        words: list[str] = []
        first: dict[str, int] = {}
        rec_bytes = 4 * E
        buf, pos = b"", 0
        with _progress(p, n, "word", progress) as bar:
            for i in range(n):
                where = f"word {i + 1}"
                while True:  # make sure the buffer holds a whole record (word + space + E floats)
                    space = buf.find(b" ", pos)
                    if space != -1 and len(buf) - (space + 1) >= rec_bytes:
                        break
                    more = f.read(1 << 20)
                    if not more:
                        raise LexiconFormatError(p, where, f"file ends inside a record ({i} of {V} words read)")
                    buf, pos = buf[pos:] + more, 0
                raw_word = buf[pos:space].lstrip(b"\n")
                try:
                    word = raw_word.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise LexiconFormatError(p, where, f"word is not valid UTF-8 ({e.reason})") from None
                if not word or "\n" in word:
                    raise LexiconFormatError(p, where, f"empty or malformed word {word!r}")
                prev = first.setdefault(word, i + 1)
                if prev != i + 1:
                    raise LexiconFormatError(p, where, f"duplicate word {word!r} (first as word {prev})")
                words.append(word)
                vectors[i] = np.frombuffer(buf, dtype="<f4", count=E, offset=space + 1)  # (E,)
                pos = space + 1 + rec_bytes
                if (i + 1) % 4096 == 0:
                    bar.update(4096)
            bar.update(n % 4096)
    bad = ~np.isfinite(vectors).all(axis=1)                       # (V,) bool
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LexiconFormatError(p, f"word {i + 1}", f"the vector of {words[i]!r} has a NaN or infinite value")
    return Lexicon(words, vectors, source=str(p))


# ----------------------------------------------------------------------------- npz
def save_npz(path, lexicon: Lexicon) -> Path:
    """Write ``lexicon`` to ``path`` (``.npz``) atomically; returns the path.

    Arrays: ``words`` uint8 (the UTF-8 bytes of the words joined by ``\\n``),
    ``vectors`` (V, E) float32, ``format_version`` int64 scalar, ``source`` uint8
    (UTF-8 text). No object arrays, so :func:`load_npz` never unpickles.
    """
    return write_npz_atomic(path, {
        "words": text_to_array("\n".join(lexicon.words)),
        "vectors": lexicon.vectors,
        "format_version": np.asarray(NPZ_FORMAT_VERSION, dtype=np.int64),
        "source": text_to_array(Path(lexicon.source).name),
    })


def load_npz(path) -> Lexicon:
    """Read a lexicon written by :func:`save_npz` (``allow_pickle=False``).

    Raises
    ------
    FileNotFoundError
    LexiconFormatError
        for a missing array, an unknown format version, or a word count that
        disagrees with the number of vector rows.
    """
    p = _require_file(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [key for key in ("words", "vectors", "format_version") if key not in z.files]
            if missing:
                raise LexiconFormatError(p, None, f"missing array {missing[0]!r} (not a minimner lexicon .npz; "
                                                  "make one with `python -m minimner convert glove`)")
            version, raw, vectors = z["format_version"], z["words"], z["vectors"]
    except LexiconFormatError:
        raise
    except (ValueError, OSError, EOFError) as e:  # not a zip, truncated, or an object (pickled) array
        raise LexiconFormatError(p, None, f"not a readable lexicon .npz ({e})") from None
    if version.shape != () or int(version) != NPZ_FORMAT_VERSION:
        raise LexiconFormatError(p, None, f"format_version {version} is not supported "
                                          f"(this minimner reads {NPZ_FORMAT_VERSION})")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise LexiconFormatError(p, None, f"'words' must be a 1-d uint8 array, got {raw.dtype} {raw.shape}")
    try:
        words = raw.tobytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise LexiconFormatError(p, None, f"'words' is not valid UTF-8 ({e.reason})") from None
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise LexiconFormatError(p, None, f"{len(words)} words but 'vectors' has shape {tuple(vectors.shape)}")
    if vectors.dtype != np.float32:
        raise LexiconFormatError(p, None, f"'vectors' must be float32, got {vectors.dtype}")
    try:
        return Lexicon(words, vectors, source=str(p))
    except ValueError as e:
        raise LexiconFormatError(p, None, str(e).split(": ", 1)[-1]) from None


# ----------------------------------------------------------------------------- dispatcher
def load_lexicon(path, format: str = "auto", dim: int | None = None, limit: int | None = None,
                 progress: bool = True) -> Lexicon:
    """Read a lexicon in any supported format (see the module docstring).

    Parameters
    ----------
    path : str or Path
    format : one of :data:`FORMATS`; ``auto`` uses :func:`detect_format`
    dim : int, optional; the expected E (checked for every format)
    limit : int, optional; keep the first ``limit`` words (text and binary formats)
    progress : bool, show a progress bar while reading text/binary files

    Returns
    -------
    Lexicon

    Raises
    ------
    FileNotFoundError, LexiconFormatError, ValueError (unknown format)
    """
    if format not in FORMATS:
        raise ValueError(f"unknown lexicon format {format!r}; expected one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "npz":
        lex = load_npz(path)
        _check_dim(path, None, lex.dim, dim, "dim= asks for")
        if limit is not None and limit < len(lex):
            lex = Lexicon(lex.words[:limit], lex.vectors[:limit], source=lex.source)
        return lex
    reader = {"glove": read_glove_text, "word2vec": read_word2vec_text, "word2vec-bin": read_word2vec_binary}[fmt]
    return reader(path, dim=dim, limit=limit, progress=progress)
