"""Hugging Face BERT checkpoints → minimner ``.npz`` (+ JSON manifest), with strict key accounting.

Reading the source and the name map (:data:`RENAME`, :data:`IGNORE`) live in
:mod:`minimner.models.bert_source` (beside the model, which loads its weights through it),
re-exported here; the converter builds on the model, the model never imports the converter.

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

from minimner import files
from minimner.models.bert_source import (IGNORE, RENAME, TOKENIZER_FILES, accountant,  # noqa: F401 (re-exported)
                                          default_minilm_dir, find_weights_file, has_pooler, load_source)
from minimner.models.bert import BertConfig, BertModel

__all__ = ["RENAME", "IGNORE", "TOKENIZER_FILES", "DEFAULT_MINILM_NPZ", "default_minilm_dir",
           "find_weights_file", "load_source", "accountant", "has_pooler", "convert_file", "manifest_path",
           "verify_npz"]

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
    state = acc.apply(arrays, files.expected_shapes(model), where=meta["where"])
    out = OrderedDict(state)
    out[files.META_PREFIX + "config.json"] = files.text_to_array(json.dumps(config_dict, indent=2))
    for name, text in meta["texts"].items():
        out[files.META_PREFIX + name] = files.text_to_array(text)
    folder = Path(meta["weights"]).parent
    source_files = OrderedDict((name, files.sha256_file(folder / name))
                               for name in ("config.json",) + TOKENIZER_FILES if (folder / name).is_file())
    digest = files.sha256_file(meta["weights"])
    source_files[Path(meta["weights"]).name] = digest
    extra = OrderedDict(
        model_type="bert",
        config=config.to_dict(),
        source_files=source_files,
        renamed=acc.report()["renamed"],
        ignored=acc.report()["ignored"],
    )
    manifest = files.make_manifest(meta["weights"], out, source_sha256=digest, extra=extra)
    files.write_npz_atomic(dst, out)
    files.write_manifest(manifest_path(dst), manifest)
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
    m = files.read_manifest(manifest) if not isinstance(manifest, dict) else manifest
    z = files.read_npz(npz_path)
    tensors = {k: v for k, v in z.items() if not k.startswith(files.META_PREFIX)}
    want = m["tensors"]
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        raise ValueError(f"{npz_path}: tensors differ from the manifest: missing {missing}, unexpected {extra}")
    for name, spec in want.items():
        a = tensors[name]
        if list(a.shape) != list(spec["shape"]) or str(a.dtype) != spec["dtype"]:
            raise ValueError(f"{npz_path}: {name!r} is {a.dtype}{list(a.shape)}, manifest says "
                             f"{spec['dtype']}{spec['shape']}")
        if "sha256" in spec and files.sha256_array(a) != spec["sha256"]:
            raise ValueError(f"{npz_path}: checksum of {name!r} differs from the manifest")
