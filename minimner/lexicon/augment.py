"""The per-dataset augmentation table (docs/augmentation.md §1): one vector per vocabulary word, built once.

For every word w of a data set's vocabulary:

* **in the lexicon** (under the case policy, see
  :func:`minimner.lexicon.neighbours.resolve_words`): ``A[w] = Σ_i α_i v_{u_i}``
  over its k nearest lexicon neighbours u_i (cosine, w itself excluded), with
  ``α = softmax(s_1..s_k)`` (docs/augmentation.md §1);
* **not in the lexicon** (``oov="random"``, the default): a random vector
  ``U(−√(3/E), +√(3/E))`` (the paper's √(3/200) for E = 200, i.e. variance 1/E).
  Unlike the original, which drew a fresh vector *per occurrence* and without a
  seed, minimner draws one vector *per word type* from a generator seeded by
  ``(seed, sha256(word))``: the same word gets the same vector in every split,
  every run and every machine, and a word first met at prediction time gets the
  vector it would have had in the table. With ``oov="zero"`` the vector is zero
  and :attr:`AugmentationTable.in_lexicon` is the mask to use.

The table is computed once per (lexicon, vocabulary, k, case, oov, seed) and
cached as an ``.npz`` under ``<MINIMNER_HOME>/augment/``, written atomically
(temporary file + ``os.replace``). The cache key hashes the lexicon's *content*
fingerprint and the vocabulary, so editing either rebuilds the table. Next to the
vectors the file stores, for inspection, every word's matched lexicon form, its
neighbour words, similarities and softmax weights.

The vocabulary is the sorted set of tokens of the given CoNLL files (the first
tab field of each token line; ``IMGID:`` and blank lines skipped), read with
:func:`minimner.data.conll.read_conll` when that module is available.
Positions other than a word's first word piece get a zero augmentation vector
(docs/augmentation.md §2); that is the featuriser's job, which calls :meth:`AugmentationTable.lookup`.

Dimension legend: N vocabulary words, E vector size, k neighbours, V lexicon words.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from minimner.data.conll import read_conll
from minimner.files import array_to_text, text_to_array, write_npz_atomic
from minimner.lexicon.glove import ensure_default_lexicon
from minimner.lexicon.io import Lexicon, default_lexicon_path, load_lexicon, minimner_home
from minimner.lexicon.neighbours import CASE_POLICIES, find_neighbours, resolve_words
from minimner.nn.augment import AUG_MODES

__all__ = ["AugmentConfig", "AugmentationTable", "OOV_POLICIES", "TABLE_FORMAT_VERSION", "collect_vocabulary",
           "vocabulary_hash", "oov_vector", "build_table", "table_cache_key", "load_or_build_table",
           "add_augment_arguments", "augment_config_from_args", "config_dict", "open_lexicon"]

#: What a word missing from the lexicon gets: a seeded random vector per word type, or zeros.
OOV_POLICIES = ("random", "zero")

#: Version of the cached table layout (part of the cache key).
TABLE_FORMAT_VERSION = 1


@dataclass
class AugmentConfig:
    """Everything that decides the augmentation input and its fusion.

    The CLI flags of :func:`add_augment_arguments` fill it; the training code passes
    ``mode`` to :func:`minimner.nn.augment.make_augment_fusion`.
    """

    mode: str = "add"             # fusion (docs/augmentation.md §3): add (default) | gate | embed | none
    lexicon: str | None = None    # lexicon file; None = the converted GloVe 6B 50-d in MINIMNER_HOME
    k: int = 4                    # neighbours per word (the paper: 4)
    case: str = "auto"            # auto (word, then lower-case) | exact (the paper) | lower
    oov: str = "random"           # random (seeded per word type) | zero (zero vector + mask)
    seed: int = 0                 # seed of the out-of-lexicon vectors
    cache_dir: str | None = None  # None = <MINIMNER_HOME>/augment


# ----------------------------------------------------------------------------- vocabulary
def collect_vocabulary(paths: Iterable) -> list[str]:
    """The sorted set of word tokens in CoNLL files.

    Parameters
    ----------
    paths : iterable of str or Path (e.g. ``train.txt``, ``valid.txt``, ``test.txt`` of
        one or several data sets)

    Returns
    -------
    list of str, sorted by code point, no duplicates

    Raises
    ------
    FileNotFoundError, ValueError (``file:line: problem`` for malformed files)
    """
    vocab: set[str] = set()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        for sent in read_conll(p):
            vocab.update(sent.words)
    return sorted(vocab)


def vocabulary_hash(words: Sequence[str]) -> str:
    """Hex SHA-256 of the vocabulary (its words in order, joined by newlines)."""
    return hashlib.sha256(("\n".join(words)).encode("utf-8")).hexdigest()


def oov_vector(word: str, dim: int, seed: int = 0) -> np.ndarray:
    """The deterministic out-of-lexicon vector of ``word``: U(−√(3/E), +√(3/E)), float32 (E,).

    Drawn from a NumPy PCG64 generator seeded with ``[seed, first 16 bytes of
    sha256(word)]``, so it depends only on the word, E and the seed.
    """
    digest = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:16], "little")
    bound = math.sqrt(3.0 / dim)
    g = np.random.default_rng([int(seed), digest])
    return g.uniform(-bound, bound, dim).astype(np.float32)                 # (E,)


# ----------------------------------------------------------------------------- the table
def _string(a: np.ndarray) -> str:
    return array_to_text(a)


def _text(a: np.ndarray) -> list[str]:
    return _string(a).split("\n")


class AugmentationTable:
    """Augmentation vectors of a vocabulary plus what they were built from.

    Attributes
    ----------
    words : list of str (N), the vocabulary; ``index[word]`` is its row
    vectors : (N, E) float32, the augmentation vector of each word
    in_lexicon : (N,) bool, whether the word (or its lower-case form) was found
    matched : list of str or None (N), the lexicon form used for each word
    neighbour_ids : (N, k) int64 lexicon rows of the neighbours, -1 for out-of-lexicon words
    neighbour_words : list of list of str (N × k; empty lists for out-of-lexicon words)
    similarities, weights : (N, k) float32 (zeros for out-of-lexicon words)
    meta : dict (lexicon fingerprint and source, vocabulary hash, k, case, oov, seed,
        E, counts, build seconds, format version)
    """

    def __init__(self, words, vectors, in_lexicon, matched, neighbour_ids, neighbour_words, similarities,
                 weights, meta):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.vectors = np.asarray(vectors, dtype=np.float32)                 # (N, E)
        self.in_lexicon = np.asarray(in_lexicon, dtype=bool)                 # (N,)
        self.matched = list(matched)
        self.neighbour_ids = np.asarray(neighbour_ids, dtype=np.int64)       # (N, k)
        self.neighbour_words = [list(r) for r in neighbour_words]
        self.similarities = np.asarray(similarities, dtype=np.float32)       # (N, k)
        self.weights = np.asarray(weights, dtype=np.float32)                 # (N, k)
        self.meta = dict(meta)
        N = len(self.words)
        for name, a in (("vectors", self.vectors), ("in_lexicon", self.in_lexicon),
                        ("neighbour_ids", self.neighbour_ids), ("similarities", self.similarities),
                        ("weights", self.weights)):
            if a.shape[0] != N:
                raise ValueError(f"augmentation table: {name} has {a.shape[0]} rows for {N} words")

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return (f"AugmentationTable({len(self)} words, dim {self.dim}, k {self.k}, "
                f"{int(self.in_lexicon.sum())} in the lexicon)")

    @property
    def dim(self) -> int:
        """E, the augmentation vector size (the ``in_features`` of ``maug_linear``)."""
        return int(self.vectors.shape[1])

    @property
    def k(self) -> int:
        return int(self.neighbour_ids.shape[1])

    # -------------------------------------------------------------- lookups
    def vector(self, word: str) -> np.ndarray:
        """(E,) float32: the table row, or the word's OOV vector (random or zero) when not in the table."""
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        if self.meta.get("oov", "random") == "zero":
            return np.zeros(self.dim, dtype=np.float32)
        return oov_vector(word, self.dim, int(self.meta.get("seed", 0)))

    def lookup(self, words: Sequence[str]):
        """Vectors and lexicon mask for a list of words (e.g. the words of a sentence).

        Returns
        -------
        vectors : (n, E) float32; words outside the table get their OOV vector
        mask : (n,) bool, True where the vector comes from lexicon neighbours
        """
        out = np.empty((len(words), self.dim), dtype=np.float32)             # (n, E)
        mask = np.zeros(len(words), dtype=bool)                              # (n,)
        for j, w in enumerate(words):
            out[j] = self.vector(w)
            i = self.index.get(w)
            mask[j] = i is not None and bool(self.in_lexicon[i])
        return out, mask

    def neighbours_of(self, word: str) -> list[dict]:
        """Inspection: ``[{"word", "similarity", "weight"}, ...]`` best first ([] when not in the lexicon).

        Raises
        ------
        KeyError if ``word`` is not in the table's vocabulary.
        """
        if word not in self.index:
            raise KeyError(f"{word!r} is not in this augmentation table's vocabulary")
        i = self.index[word]
        return [{"word": n, "similarity": float(s), "weight": float(a)}
                for n, s, a in zip(self.neighbour_words[i], self.similarities[i], self.weights[i])]

    def describe(self, word: str) -> dict:
        """Inspection: ``{"word", "matched", "in_lexicon", "neighbours": [...], "norm"}`` for one word."""
        i = self.index[word] if word in self.index else None
        if i is None:
            raise KeyError(f"{word!r} is not in this augmentation table's vocabulary")
        return {"word": word, "matched": self.matched[i], "in_lexicon": bool(self.in_lexicon[i]),
                "neighbours": self.neighbours_of(word), "norm": float(np.linalg.norm(self.vectors[i]))}

    # -------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write the table to ``path`` (``.npz``) atomically; every array plain (no pickle)."""
        flat = [n for row in self.neighbour_words for n in (row + [""] * (self.k - len(row)))]
        return write_npz_atomic(path, {
            "words": text_to_array("\n".join(self.words)),
            "vectors": self.vectors,
            "in_lexicon": self.in_lexicon,
            "matched": text_to_array("\n".join(m or "" for m in self.matched)),
            "neighbour_ids": self.neighbour_ids,
            "neighbour_words": text_to_array("\n".join(flat)),
            "similarities": self.similarities,
            "weights": self.weights,
            "meta": text_to_array(json.dumps(self.meta, sort_keys=True)),
        })

    @classmethod
    def load(cls, path) -> "AugmentationTable":
        """Read a table written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        FileNotFoundError; ValueError naming the file for a malformed table.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"augmentation table not found: {p}")
        need = ("words", "vectors", "in_lexicon", "matched", "neighbour_ids", "neighbour_words",
                "similarities", "weights", "meta")
        try:
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in need if k not in z.files]
                if missing:
                    raise ValueError(f"{p}: not an augmentation table (missing {missing})")
                arrays = {k: z[k] for k in need}
        except (OSError, EOFError) as e:
            raise ValueError(f"{p}: unreadable augmentation table ({e})") from None
        meta = json.loads(_string(arrays["meta"]))
        words = _text(arrays["words"])
        ids = arrays["neighbour_ids"]
        N, k = ids.shape
        flat = _text(arrays["neighbour_words"]) if N * k else []
        if len(flat) != N * k and N * k:
            raise ValueError(f"{p}: {len(flat)} neighbour words for {N} words × k={k}")
        nwords = [[n for n in flat[i * k:(i + 1) * k] if n] for i in range(N)]
        matched = [m or None for m in _text(arrays["matched"])]
        return cls(words, arrays["vectors"], arrays["in_lexicon"], matched, ids, nwords, arrays["similarities"],
                   arrays["weights"], meta)


# ----------------------------------------------------------------------------- building
def _check_vocab(words: Sequence[str]) -> list[str]:
    words = [str(w) for w in words]
    seen: set[str] = set()
    for i, w in enumerate(words):
        if not w or "\n" in w:
            raise ValueError(f"vocabulary word {i} ({w!r}) is empty or contains a newline")
        if w in seen:
            raise ValueError(f"vocabulary word {w!r} appears twice")
        seen.add(w)
    return words


def build_table(words: Sequence[str], lexicon: Lexicon, k: int = 4, case: str = "auto", oov: str = "random",
                seed: int = 0, backend_name: str | None = None, progress: bool = False,
                chunk_bytes: int | None = None) -> AugmentationTable:
    """Build the augmentation table of a vocabulary (docs/augmentation.md §1, minimner's OOV rule).

    Each distinct lexicon row is searched once, even when several vocabulary words
    map to it (``Paris``, ``PARIS`` and ``paris`` under ``case="auto"``).

    Parameters
    ----------
    words : sequence of str (N), distinct, non-empty
    lexicon : Lexicon (V, E)
    k : int, neighbours per word
    case : one of :data:`minimner.lexicon.neighbours.CASE_POLICIES`
    oov : one of :data:`OOV_POLICIES`
    seed : int, seed of the out-of-lexicon vectors
    backend_name : where the neighbour search runs (default: the current backend)
    progress : show progress bars
    chunk_bytes : memory budget of one similarity block (default 128 MiB)

    Returns
    -------
    AugmentationTable with vectors (N, E) float32
    """
    if oov not in OOV_POLICIES:
        raise ValueError(f"unknown OOV policy {oov!r}; expected one of {', '.join(OOV_POLICIES)}")
    if case not in CASE_POLICIES:
        raise ValueError(f"unknown case policy {case!r}; expected one of {', '.join(CASE_POLICIES)}")
    words = _check_vocab(words)
    t0 = time.perf_counter()
    N, E = len(words), lexicon.dim
    lex_ids, forms = resolve_words(lexicon, words, case)                     # (N,), N forms
    found = lex_ids >= 0                                                     # (N,) bool
    uniq, inverse = np.unique(lex_ids[found], return_inverse=True)           # (U,), (Nf,) row of each found word
    kw = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    if uniq.size:
        res = find_neighbours(lexicon, uniq, k, backend_name=backend_name, progress=progress, **kw)
    vectors = np.zeros((N, E), dtype=np.float32)                             # (N, E)
    nb_ids = np.full((N, k), -1, dtype=np.int64)                             # (N, k)
    sims = np.zeros((N, k), dtype=np.float32)                                # (N, k)
    weights = np.zeros((N, k), dtype=np.float32)                             # (N, k)
    if uniq.size:
        rows = np.flatnonzero(found)                                         # (Nf,)
        vectors[rows] = res.vectors[inverse]                                 # (Nf, E)
        nb_ids[rows] = res.ids[inverse]                                      # (Nf, k)
        sims[rows] = res.similarities[inverse]
        weights[rows] = res.weights[inverse]
    if oov == "random":
        for i in np.flatnonzero(~found):
            vectors[i] = oov_vector(words[i], E, seed)
    nwords = [[lexicon.words[j] for j in row] if f else [] for row, f in zip(nb_ids.tolist(), found)]
    meta = {"format_version": TABLE_FORMAT_VERSION, "lexicon_sha256": lexicon.fingerprint(),
            "lexicon_source": Path(lexicon.source).name, "lexicon_words": len(lexicon), "dim": E,
            "vocab_sha256": vocabulary_hash(words), "words": N, "in_lexicon": int(found.sum()),
            "lexicon_rows_searched": int(uniq.size), "k": int(k), "case": case, "oov": oov, "seed": int(seed),
            "build_seconds": round(time.perf_counter() - t0, 3)}
    return AugmentationTable(words, vectors, found, forms, nb_ids, nwords, sims, weights, meta)


def table_cache_key(lexicon: Lexicon, words: Sequence[str], k: int, case: str, oov: str, seed: int) -> str:
    """Hex SHA-256 naming a cached table: lexicon content + vocabulary + every build setting."""
    text = json.dumps({"v": TABLE_FORMAT_VERSION, "lexicon": lexicon.fingerprint(), "vocab": vocabulary_hash(words),
                       "k": int(k), "case": case, "oov": oov, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_or_build_table(words: Sequence[str], lexicon: Lexicon, k: int = 4, case: str = "auto",
                        oov: str = "random", seed: int = 0, cache_dir=None, backend_name: str | None = None,
                        progress: bool = False, verbose: bool = False) -> AugmentationTable:
    """The cached table for these settings, building and caching it on first use.

    The file is ``<cache_dir>/aug-<key[:20]>.npz`` with ``key`` from
    :func:`table_cache_key` (default ``cache_dir``: ``<MINIMNER_HOME>/augment``). A
    cached file whose metadata does not match, or that cannot be read, is rebuilt
    (with a warning); writes are atomic, so concurrent builders never see half a file.

    Returns
    -------
    AugmentationTable (``meta["cache_path"]`` says where it lives, ``meta["cached"]``
    whether it was read from the cache)
    """
    words = _check_vocab(words)
    key = table_cache_key(lexicon, words, k, case, oov, seed)
    folder = Path(cache_dir) if cache_dir is not None else minimner_home() / "augment"
    path = folder / f"aug-{key[:20]}.npz"
    if path.is_file():
        try:
            table = AugmentationTable.load(path)
            m = table.meta
            if (m.get("lexicon_sha256"), m.get("vocab_sha256"), m.get("k"), m.get("case"), m.get("oov"),
                    m.get("seed")) == (lexicon.fingerprint(), vocabulary_hash(words), k, case, oov, seed) \
                    and table.words == words:
                table.meta.update(cache_path=str(path), cached=True)
                return table
            warnings.warn(f"{path}: cached augmentation table does not match its key; rebuilding")
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            warnings.warn(f"{path}: unreadable cached augmentation table ({e}); rebuilding")
    if verbose:
        print(f"building the augmentation table for {len(words)} words from {lexicon.source} "
              f"(k={k}, case={case}, oov={oov}) -> {path}", file=sys.stderr)
    table = build_table(words, lexicon, k=k, case=case, oov=oov, seed=seed, backend_name=backend_name,
                        progress=progress)
    table.save(path)
    table.meta.update(cache_path=str(path), cached=False)
    return table


# ----------------------------------------------------------------------------- CLI helpers
def open_lexicon(path=None, progress: bool = True, verbose: bool = True) -> Lexicon:
    """Load ``path``, or the offline default (converting it on first use; see
    :func:`minimner.lexicon.glove.ensure_default_lexicon`)."""
    if path is None:
        path = ensure_default_lexicon(verbose=verbose)
    return load_lexicon(path, progress=progress)


def add_augment_arguments(parser: argparse.ArgumentParser, default_mode: str = "add",
                          default_help: str | None = None) -> None:
    """Add the augmentation flags to a command (``train``, ``evaluate``…).

    ``--aug {add,gate,embed,none}``, ``--lexicon FILE``, ``--aug-k``, ``--aug-case``,
    ``--aug-oov``, ``--aug-seed``, ``--aug-cache DIR``. Read them back with
    :func:`augment_config_from_args`. ``default_mode`` is ``--aug``'s default (the
    paper's ``add``; ``train`` uses ``none`` so the plain BERT-CRF stays the default);
    ``default_help`` replaces its wording in the help (``train``: it depends on ``--model``).
    """
    if default_mode not in AUG_MODES:
        raise ValueError(f"unknown augmentation mode {default_mode!r}; expected one of {', '.join(AUG_MODES)}")
    g = parser.add_argument_group("semantic augmentation (docs/augmentation.md)")
    g.add_argument("--aug", choices=AUG_MODES, default=default_mode,
                   help=f"fusion of the augmentation vectors: add after BERT (the paper's), gate after BERT, "
                        f"embed (inside the BERT embeddings, before LayerNorm) or none (default: "
                        f"{default_help or default_mode})")
    g.add_argument("--lexicon", default=None, metavar="FILE",
                   help=f"word vectors (.npz, GloVe/word2vec text, word2vec .bin); default: "
                        f"{default_lexicon_path()} (made by `python -m minimner convert glove`)")
    g.add_argument("--aug-k", type=int, default=4, metavar="K", help="neighbours per word (default 4)")
    g.add_argument("--aug-case", choices=CASE_POLICIES, default="auto",
                   help="lexicon lookup: auto = word then lower-case (default), exact = the paper's")
    g.add_argument("--aug-oov", choices=OOV_POLICIES, default="random",
                   help="out-of-lexicon words: seeded random vector per word (default) or zero + mask")
    g.add_argument("--aug-seed", type=int, default=0, help="seed of the out-of-lexicon vectors")
    g.add_argument("--aug-cache", default=None, metavar="DIR",
                   help="where augmentation tables are cached (default: $MINIMNER_HOME/augment)")


def augment_config_from_args(args) -> AugmentConfig:
    """The :class:`AugmentConfig` described by flags added with :func:`add_augment_arguments`."""
    if args.aug_k < 1:
        raise ValueError(f"--aug-k must be at least 1, got {args.aug_k}")
    return AugmentConfig(mode=args.aug, lexicon=args.lexicon, k=args.aug_k, case=args.aug_case,
                         oov=args.aug_oov, seed=args.aug_seed, cache_dir=args.aug_cache)


def config_dict(cfg: AugmentConfig) -> dict:
    """A JSON-ready copy of ``cfg`` (for run records)."""
    return asdict(cfg)
