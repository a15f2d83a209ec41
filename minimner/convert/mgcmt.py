"""``python -m minimner convert mgcmt SRC DST``: the authors' MSCMT checkpoint → minimner's MGCMT file.

The authors' fine-tuned ``pytorch_model.bin`` (docs/parameters.md §5) is the full 509-key
MSCMT state dict. It is read without executing anything from the file
(``torch.load(weights_only=True)`` for ``.bin`` / ``.pt`` / ``.pth``; ``.safetensors``
and ``.npz`` need no torch), mapped by :meth:`minimner.models.mgcmt.MGCMT.from_original`
(strict key accounting: every key of the layout present with its shape, no key
outside it, finite values in every used tensor) and written as one atomic
minimner checkpoint (:mod:`minimner.checkpoint`)::

    model/<minimner name>     the tensors the flags use
    extra/<original key>      the tensors no configuration reads (kept for to_original)
    __meta__                  {"model": "mgcmt", "mgcmt_config", "bert_config", "original_flags", "source", ...}

plus ``<DST stem>.manifest.json`` (names, shapes, SHA-256 of the source and of every
tensor, the unused keys). The flags are not stored in the original checkpoint
(docs/model.md §1, docs/parameters.md §5): pass them with ``--ffusion-method 2`` etc. (defaults: the
original's). The BERT ``config.json`` shipped beside the checkpoint gives the
attention heads (default C/64 with C the hidden size, as bert-base).

:func:`load_mgcmt` reads the file back into an :class:`MGCMT` (eval mode).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from minimner.checkpoint import load_checkpoint, save_checkpoint
from minimner import files as io
from minimner.models.bert import BertConfig, BertModel
from minimner.models.mgcmt import MGCMT, MGCMTConfig

__all__ = ["convert_file", "save_mgcmt", "load_mgcmt", "manifest_path"]

FLAG_DEFAULTS = OrderedDict(use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0, alpha_seg=1,
                            seg_task=0)


def manifest_path(dst) -> Path:
    dst = Path(dst)
    return dst.with_name(dst.stem + ".manifest.json")


def _read_bert_config(path):
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"BERT config not found: {p}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON: {e}") from None


def save_mgcmt(model, path, meta: dict | None = None) -> None:
    """Write ``model`` (weights, configs, unused original tensors) as one atomic checkpoint."""
    info = dict(meta or {}, model="mgcmt", mgcmt_config=model.config.to_dict(),
                bert_config=model.bert.config.to_dict(), original_flags=model.config.original_flags(),
                unused_original_keys=list(model.original_unused))
    save_checkpoint(path, model.state_dict(), info, extra=model.original_unused)


def load_mgcmt(path, rng=None):
    """Read a file written by :func:`save_mgcmt` / ``convert mgcmt`` back into an MGCMT (eval mode).

    Raises
    ------
    FileNotFoundError / ValueError
        naming the file when it is missing, unreadable or not an MGCMT file.
    """
    state, _, meta, extra = load_checkpoint(path, with_extra=True)
    if meta.get("model") != "mgcmt":
        raise ValueError(f"{path}: not an MGCMT file (model = {meta.get('model')!r})")
    bert = BertModel(BertConfig.from_dict(meta["bert_config"], where=f"{path} (bert_config)"),
                     add_pooling_layer=False, rng=rng, init=False)
    model = MGCMT(bert, MGCMTConfig.from_dict(meta["mgcmt_config"]), rng=rng)
    model.load_state_dict(state, strict=True)
    model.original_unused = OrderedDict((k, extra[k]) for k in meta.get("unused_original_keys", []))
    return model.eval()


def convert_file(src, dst, bert_config=None, verbose: bool = False, **flags) -> dict:
    """Convert the authors' checkpoint ``src`` to ``dst`` (.npz) and its manifest.

    Parameters
    ----------
    src : ``pytorch_model.bin`` (or .pt/.pth, .safetensors, .npz with the original keys).
    dst : output ``.npz``.
    bert_config : the checkpoint's BERT ``config.json`` (path or folder), or None.
    flags : the original ``config.py`` flags (defaults: the original's).

    Returns
    -------
    dict, the manifest.

    Raises
    ------
    ValueError / KeyError
        naming the file and the key for a truncated or malformed file, a missing key,
        a key outside the layout, a wrong shape or non-finite used values.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: the output must end in .npz")
    sd = io.read_weights(src)
    try:
        model = MGCMT.from_original(sd, bert_config=_read_bert_config(bert_config), **flags)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise type(e)(f"{src}: {msg}") from None
    report = model.load_report
    save_mgcmt(model, dst, meta={"source": src.name})
    arrays = OrderedDict((f"model/{k}", np.asarray(v)) for k, v in model.state_dict().items())
    manifest = io.make_manifest(src, arrays, extra=OrderedDict(
        model_type="mgcmt", original_flags=report["flags"], used=report["used"], unused=report["unused"],
        nonfinite_unused=report["nonfinite_unused"]))
    io.write_manifest(manifest_path(dst), manifest)
    if verbose:
        print(f"converted MSCMT: {report['used']} tensors used by the flags {report['flags']}, "
              f"{len(report['unused'])} kept aside unused"
              + (f" ({len(report['nonfinite_unused'])} of them hold NaN/inf, as the original's uninitialised "
                 "*_aux_w do)" if report["nonfinite_unused"] else ""))
        print(f"wrote {dst} and {manifest_path(dst)}")
    return manifest
