"""Atomic file writes: a file that exists is complete.

Every writer here writes to a temporary file in the destination's folder, flushes
and fsyncs it, then ``os.replace``-s it onto the destination (atomic on POSIX and
Windows). A crash or Ctrl-C at any point leaves either the old file or the new one,
never a half-written one, and no stray temporary file. Checkpoints, caches,
converted weights, manifests, features and prediction files all go through it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic", "write_npz_atomic", "write_npy_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[object], None], mode: str = "wb", mkdir: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then move it into place.

    Parameters
    ----------
    path : destination file.
    write : callable receiving the open temporary file.
    mode : ``"wb"`` or ``"w"`` (text, UTF-8).
    mkdir : create the destination's folder when missing (else it must exist).
    """
    dst = Path(path)
    folder = dst.parent if str(dst.parent) else Path(".")
    if mkdir:
        folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=str(folder))
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dst


def write_text_atomic(path, text: str, mkdir: bool = True) -> Path:
    """Write UTF-8 ``text`` (``\\n`` line ends kept as given) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), "wb", mkdir)


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as indented JSON (trailing newline) atomically; short number lists stay on one line."""
    text = json.dumps(obj, indent=2, sort_keys=False)
    text = re.sub(r"\[\s*([-\d.eE+,\s]*?)\s*\]",  # [\n 30522,\n 384\n] -> [30522, 384]
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text) + "\n"
    return write_text_atomic(path, text)


def write_npz_atomic(path, arrays: Mapping[str, object], compress: bool = False) -> Path:
    """Write host arrays to ``path`` as a ``.npz`` atomically (no pickled objects allowed).

    Raises
    ------
    ValueError
        if ``path`` does not end in ``.npz`` or an array has dtype ``object``.
    """
    dst = Path(path)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: output must end in .npz")
    plain = OrderedDict()
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; only numeric/text arrays are written")
        plain[name] = a
    saver = np.savez_compressed if compress else np.savez
    return atomic_write(dst, lambda f: saver(f, **plain), "wb")


def write_npy_atomic(path, array) -> Path:
    """``np.save`` (no pickle) atomically: a ``.npy`` that exists is complete."""
    return atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False), "wb")
