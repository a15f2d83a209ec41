"""Atomic, pickle-free checkpoints.

A checkpoint is **one** ``.npz`` file, so a single ``os.replace`` makes it appear
all at once: a crash while saving leaves the previous checkpoint intact.

Layout of the archive (every entry a plain array; loaded with ``allow_pickle=False``):

* ``model/<param or buffer name>``: the model's state dict;
* ``optim/<name>``: optimiser arrays (e.g. Adam moments), when saved;
* ``extra/<name>``: other arrays that travel with the weights (e.g. the original
  checkpoint's tensors no configuration reads, kept for a lossless round trip);
* ``__meta__``: UTF-8 JSON (epoch, step, best score, RNG states, config, ...)
  stored as a ``uint8`` array.

The ``model`` and ``optim`` arrays must be finite: saving refuses a NaN or an
infinity (so a diverged run never replaces its last good checkpoint) and loading
refuses a file holding one, naming the file and the tensor. ``extra`` arrays are
kept as they are (the original MSCMT checkpoint has uninitialised, unused ones).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.atomic import write_npz_atomic
from minimner.finite import check_finite

FORMAT_VERSION = 1


def save_checkpoint(path, model_state: Mapping[str, object], meta: dict,
                    optim_state: Mapping[str, object] | None = None,
                    extra: Mapping[str, object] | None = None) -> None:
    """Save model arrays, optional optimiser and extra arrays and JSON ``meta`` in one atomic file.

    Raises
    ------
    NonFiniteError (a ValueError)
        naming ``path`` and the first model or optimiser tensor holding NaN or inf;
        nothing is written then.
    """
    arrays = {f"model/{k}": v for k, v in model_state.items()}
    for k, v in (optim_state or {}).items():
        arrays[f"optim/{k}"] = v
    check_finite(arrays, f"{path}: refusing to save")
    for k, v in (extra or {}).items():
        arrays[f"extra/{k}"] = v
    meta = dict(meta, format_version=FORMAT_VERSION)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    write_npz_atomic(path, {k: backend.asnumpy(v) for k, v in arrays.items()})


def load_checkpoint(path, with_extra: bool = False):
    """Return ``(model_state, optim_state, meta)`` from :func:`save_checkpoint`'s file.

    With ``with_extra`` the ``extra`` arrays come fourth: ``(model, optim, meta, extra)``.

    Raises
    ------
    FileNotFoundError
        when ``path`` does not exist.
    ValueError
        when the file is not a minimner checkpoint, or a model or optimiser tensor
        holds NaN or inf (names the file and the problem).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, ...
        raise ValueError(f"{path}: not a readable .npz checkpoint ({type(e).__name__}: {e})") from e
    if "__meta__" not in files:
        raise ValueError(f"{path}: not a minimner checkpoint (no __meta__ entry)")
    try:
        meta = json.loads(files.pop("__meta__").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the __meta__ entry is not UTF-8 JSON ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format_version {meta.get('format_version')!r}, "
                         f"this minimner reads {FORMAT_VERSION}")
    model = {k[len("model/"):]: v for k, v in files.items() if k.startswith("model/")}
    optim = {k[len("optim/"):]: v for k, v in files.items() if k.startswith("optim/")}
    check_finite({k: v for k, v in files.items() if k.startswith(("model/", "optim/"))}, str(path))
    if with_extra:
        extra = {k[len("extra/"):]: v for k, v in files.items() if k.startswith("extra/")}
        return model, optim, meta, extra
    return model, optim, meta
