"""WordPiece tokenisation of pre-tokenised tweets, with word → word-piece alignment.

The tokenizer is the model's own: its ``tokenizer.json`` (or, failing that, its
``vocab.txt``) run by the Hugging Face ``tokenizers`` library, with the BERT
normaliser configured from the model's ``tokenizer_config.json`` / ``config.json``
(``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``). So an uncased
model (MiniLM) lower-cases and a cased one (bert-base-cased, the paper's encoder)
does not.

Alignment (docs/data.md §3, with the fix of docs/differences.md §2):

* every word is tokenised on its own (normalise → split on whitespace and
  punctuation → WordPiece), exactly like ``BertTokenizerFast`` with
  ``is_split_into_words=True``;
* the sequence is ``[CLS] pieces(w_0) … pieces(w_{W-1}) [SEP]``;
* a word's label goes on its **first** piece: ``first_piece[w]`` is that position;
* a word that yields **zero** pieces (e.g. a lone zero-width joiner, or a control
  character that the cleaner deletes) becomes a single ``[UNK]`` piece, so it keeps
  its position and its gold tag instead of vanishing (docs/differences.md §2);
* no silent truncation: a sequence longer than ``max_length`` (512 for BERT) is a
  ``ValueError``.

Dimension legend: B batch, T word-piece tokens (incl. [CLS]/[SEP]), W words.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from minimner.files import META_PREFIX, array_to_text, read_npz

__all__ = ["WordEncoding", "BertWordPieceTokenizer", "pad_batch", "padded_length", "infer_lowercase"]

_SPECIAL_DEFAULTS = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"}


@dataclass
class WordEncoding:
    """One sentence's word pieces and their alignment to the words.

    Attributes
    ----------
    input_ids : np.ndarray, (T,) int64
        ``[CLS] pieces… [SEP]`` ids.
    first_piece : np.ndarray, (W,) int64
        ``first_piece[w]`` is the position in ``input_ids`` of word w's first piece
        (the position that carries the word's label).
    word_ids : np.ndarray, (T,) int64
        ``word_ids[t]`` is the word that piece t belongs to, -1 for [CLS]/[SEP].
    unk_words : list of int
        Words that produced zero pieces and were mapped to one ``[UNK]``.
    """

    input_ids: np.ndarray
    first_piece: np.ndarray
    word_ids: np.ndarray
    unk_words: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def infer_lowercase(vocab: Mapping[str, int]) -> bool:
    """Guess ``do_lower_case`` from a vocabulary: cased vocabularies hold upper-case pieces.

    Used only when neither tokenizer_config.json, config.json nor tokenizer.json says.
    Special tokens such as ``[CLS]`` and ``[unused0]`` are skipped.
    """
    for tok in vocab:
        if tok.startswith("[") and tok.endswith("]"):
            continue
        if any(c.isupper() for c in tok):
            return False
    return True


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def _parse_vocab(text: str, where: str) -> dict:
    """vocab.txt → {piece: id}; one piece per line, id = line number (as BERT reads it)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    vocab = {}
    for i, tok in enumerate(lines):
        vocab[tok.rstrip("\r")] = i
    if not vocab:
        raise ValueError(f"{where}: empty vocabulary")
    return vocab


class BertWordPieceTokenizer:
    """BERT WordPiece via the ``tokenizers`` library, with word alignment.

    Build it with :meth:`from_pretrained` (a model folder or a converted ``.npz``),
    :meth:`from_tokenizer_json` or :meth:`from_vocab`.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        A WordPiece tokenizer; its normaliser is replaced by a ``BertNormalizer``
        with the settings below, and truncation/padding/post-processing are off.
    lowercase : bool
        ``do_lower_case`` of the model.
    strip_accents : bool or None
        None means "follow ``lowercase``" (as in the original BERT).
    tokenize_chinese_chars : bool
    special_tokens : mapping, optional
        Names of ``cls_token``, ``sep_token``, ``pad_token``, ``unk_token``.
    max_length : int
        Longest allowed sequence including [CLS]/[SEP] (BERT's max positions).
    """

    def __init__(self, tokenizer, lowercase: bool, strip_accents=None, tokenize_chinese_chars: bool = True,
                 special_tokens: Mapping[str, str] | None = None, max_length: int = 512):
        from tokenizers import normalizers

        model = tokenizer.model
        if type(model).__name__ != "WordPiece":
            raise ValueError(f"expected a WordPiece tokenizer, got a {type(model).__name__} model")
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(tokenize_chinese_chars),
            strip_accents=strip_accents, lowercase=bool(lowercase))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.lowercase = bool(lowercase)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.max_length = int(max_length)
        names = dict(_SPECIAL_DEFAULTS)
        names.update({k: v for k, v in (special_tokens or {}).items() if k in names and isinstance(v, str)})
        self.special_tokens = names
        ids = {}
        for key, name in names.items():
            i = tokenizer.token_to_id(name)
            if i is None:
                raise ValueError(f"special token {key}={name!r} is not in the vocabulary")
            ids[key] = int(i)
        self.cls_id, self.sep_id = ids["cls_token"], ids["sep_token"]
        self.pad_id, self.unk_id = ids["pad_token"], ids["unk_token"]

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_tokenizer_json(cls, text: str, **settings) -> "BertWordPieceTokenizer":
        """From the text of a ``tokenizer.json``; unspecified settings come from its normaliser."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(text)
        norm = json.loads(text).get("normalizer") or {}
        if norm.get("type") == "BertNormalizer":
            settings.setdefault("lowercase", norm.get("lowercase", True))
            settings.setdefault("strip_accents", norm.get("strip_accents"))
            settings.setdefault("tokenize_chinese_chars", norm.get("handle_chinese_chars", True))
        if settings.get("lowercase") is None:
            settings["lowercase"] = infer_lowercase(tok.get_vocab())
        return cls(tok, **settings)

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], lowercase: bool | None = None,
                   **settings) -> "BertWordPieceTokenizer":
        """From a ``{piece: id}`` vocabulary (what ``vocab.txt`` holds).

        ``lowercase=None`` guesses from the vocabulary (:func:`infer_lowercase`).
        """
        from tokenizers import Tokenizer, pre_tokenizers
        from tokenizers.models import WordPiece

        unk = (settings.get("special_tokens") or {}).get("unk_token", "[UNK]")
        tok = Tokenizer(WordPiece(dict(vocab), unk_token=unk, max_input_chars_per_word=100))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        if lowercase is None:
            lowercase = infer_lowercase(vocab)
        return cls(tok, lowercase=lowercase, **settings)

    @classmethod
    def from_pretrained(cls, path, lowercase: bool | None = None) -> "BertWordPieceTokenizer":
        """From a model folder (tokenizer.json or vocab.txt) or a converted minimner ``.npz``.

        ``do_lower_case`` is taken, in order, from ``lowercase``, the folder's
        tokenizer_config.json, its config.json, the tokenizer.json normaliser, or a
        guess from the vocabulary.

        Raises
        ------
        FileNotFoundError
            when the folder has neither tokenizer.json nor vocab.txt (or the .npz
            carries no tokenizer).
        """
        p = Path(path)
        if p.suffix == ".npz" and p.is_file():
            z = read_npz(p)
            texts = {k[len(META_PREFIX):]: array_to_text(v) for k, v in z.items() if k.startswith(META_PREFIX)}
            tok_json, vocab_txt = texts.get("tokenizer.json"), texts.get("vocab.txt")
            tok_cfg = json.loads(texts["tokenizer_config.json"]) if "tokenizer_config.json" in texts else {}
            model_cfg = json.loads(texts["config.json"]) if "config.json" in texts else {}
            where = str(p)
        elif p.is_dir():
            tok_json = (p / "tokenizer.json").read_text(encoding="utf-8") if (p / "tokenizer.json").is_file() else None
            vocab_txt = (p / "vocab.txt").read_text(encoding="utf-8") if (p / "vocab.txt").is_file() else None
            tok_cfg = _read_json(p / "tokenizer_config.json") if (p / "tokenizer_config.json").is_file() else {}
            model_cfg = _read_json(p / "config.json") if (p / "config.json").is_file() else {}
            where = str(p)
        else:
            raise FileNotFoundError(f"tokenizer source not found: {p} (expected a model folder or a converted .npz)")
        if tok_json is None and vocab_txt is None:
            raise FileNotFoundError(f"{where}: no tokenizer.json or vocab.txt to build the WordPiece tokenizer from")
        settings = {
            "lowercase": lowercase if lowercase is not None
            else tok_cfg.get("do_lower_case", model_cfg.get("do_lower_case")),
            "tokenize_chinese_chars": tok_cfg.get("tokenize_chinese_chars", True),
            "special_tokens": {k: tok_cfg[k] for k in _SPECIAL_DEFAULTS if isinstance(tok_cfg.get(k), str)},
            "max_length": int(model_cfg.get("max_position_embeddings", 512)),
        }
        if "strip_accents" in tok_cfg:
            settings["strip_accents"] = tok_cfg["strip_accents"]
        if tok_json is not None:
            if settings["lowercase"] is None:
                del settings["lowercase"]
            if "tokenize_chinese_chars" not in tok_cfg:
                del settings["tokenize_chinese_chars"]
            return cls.from_tokenizer_json(tok_json, **settings)
        return cls.from_vocab(_parse_vocab(vocab_txt, where), **settings)

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def word_pieces(self, word: str) -> list[int]:
        """The raw piece ids of one word (possibly empty; no [UNK] substitution)."""
        return list(self._tok.encode([word], is_pretokenized=True, add_special_tokens=False).ids)

    def _from_pieces(self, ids: Sequence[int], wids: Sequence, n_words: int) -> WordEncoding:
        """Assemble ``[CLS] … [SEP]`` from the library's per-piece ids and word ids."""
        first = np.full(n_words, -1, dtype=np.int64)  # (W,)
        out_ids, out_wids, unk_words = [self.cls_id], [-1], []
        w_next = 0  # next word whose pieces we expect; words skipped on the way had none
        for i, w in zip(ids, wids):
            while w_next < w:  # zero-piece word(s) before this piece: give each one [UNK]
                first[w_next] = len(out_ids)
                out_ids.append(self.unk_id), out_wids.append(w_next), unk_words.append(w_next)
                w_next += 1
            if w == w_next:  # first piece of word w
                first[w] = len(out_ids)
                w_next += 1
            out_ids.append(int(i)), out_wids.append(int(w))
        while w_next < n_words:  # trailing zero-piece words
            first[w_next] = len(out_ids)
            out_ids.append(self.unk_id), out_wids.append(w_next), unk_words.append(w_next)
            w_next += 1
        out_ids.append(self.sep_id), out_wids.append(-1)
        if len(out_ids) > self.max_length:
            raise ValueError(f"sentence of {n_words} words needs {len(out_ids)} word pieces with [CLS]/[SEP], "
                             f"more than the model's {self.max_length} positions; split it (minimner never "
                             "truncates silently)")
        return WordEncoding(np.asarray(out_ids, dtype=np.int64),  # (T,)
                            first,                                 # (W,)
                            np.asarray(out_wids, dtype=np.int64),  # (T,)
                            unk_words)

    def encode_words(self, words: Sequence[str]) -> WordEncoding:
        """Tokenise one pre-tokenised sentence.

        Parameters
        ----------
        words : sequence of str, length W

        Returns
        -------
        WordEncoding with ``input_ids`` (T,), ``first_piece`` (W,), ``word_ids`` (T,).

        Raises
        ------
        ValueError
            when the sentence needs more than ``max_length`` pieces.
        """
        return self.encode_batch([words])[0]

    def encode_batch(self, sentences: Sequence[Sequence[str]]) -> list[WordEncoding]:
        """:meth:`encode_words` for many sentences (the library runs them in one call)."""
        sentences = [list(s) for s in sentences]
        for s in sentences:
            for w in s:
                if not isinstance(w, str):
                    raise ValueError(f"words must be str, got {type(w).__name__}: {w!r}")
        nonempty = [s for s in sentences if s]
        encs = iter(self._tok.encode_batch(nonempty, is_pretokenized=True, add_special_tokens=False)
                    if nonempty else [])
        out = []
        for s in sentences:
            if not s:
                out.append(self._from_pieces([], [], 0))
                continue
            e = next(encs)
            out.append(self._from_pieces(e.ids, e.word_ids, len(s)))
        return out

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self._tok.id_to_token(int(i)) for i in ids]


def padded_length(lengths: Sequence[int], pad_to: int | None = None) -> int:
    """The padded length T of a batch: its longest sequence, or ``pad_to`` when given.

    Raises
    ------
    ValueError
        if ``pad_to`` is shorter than the longest sequence (nothing is ever cut).
    """
    T = max(lengths)
    if pad_to is not None:
        if pad_to < T:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({T} pieces)")
        T = pad_to
    return T


def pad_batch(encodings: Sequence[WordEncoding], pad_id: int = 0, pad_to: int | None = None) -> dict:
    """Pad encodings to one batch (right padding).

    Parameters
    ----------
    encodings : sequence of WordEncoding, length B
    pad_id : int
        Id written at padded positions ([PAD], 0 for BERT vocabularies).
    pad_to : int, optional
        Pad to this T instead of the longest sequence (must be ≥ the longest).

    Returns
    -------
    dict of np.ndarray:
        ``input_ids`` (B, T) int64, ``attention_mask`` (B, T) int64 (1 = real piece),
        ``token_type_ids`` (B, T) int64 zeros, ``word_ids`` (B, T) int64 (-1 for
        specials and padding), ``first_piece`` (B, W) int64 (-1 past a sentence's
        words), ``word_mask`` (B, W) bool.
    """
    if not encodings:
        raise ValueError("pad_batch needs at least one encoding")
    B = len(encodings)
    T = padded_length([len(e) for e in encodings], pad_to)
    W = max(e.first_piece.shape[0] for e in encodings)
    input_ids = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((B, T), dtype=np.int64)                # (B, T)
    word_ids = np.full((B, T), -1, dtype=np.int64)         # (B, T)
    first = np.full((B, W), -1, dtype=np.int64)            # (B, W)
    word_mask = np.zeros((B, W), dtype=bool)               # (B, W)
    for b, e in enumerate(encodings):
        n, w = len(e), e.first_piece.shape[0]
        input_ids[b, :n], mask[b, :n], word_ids[b, :n] = e.input_ids, 1, e.word_ids
        first[b, :w], word_mask[b, :w] = e.first_piece, True
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids),
            "word_ids": word_ids, "first_piece": first, "word_mask": word_mask}
