"""Atomic file writes: a file that exists is complete.

Every writer here writes to a temporary file in the destination's folder, flushes
and fsyncs it, then ``os.replace``-s it onto the destination (atomic on POSIX and
Windows). A crash or Ctrl-C at any point leaves either the old file or the new one,
never a half-written one. Checkpoints, caches, converted weights, manifests,
features and prediction files all go through it.

An exception or Ctrl-C removes the temporary file on the way out; ``kill -9`` or a
power cut cannot. The temporary file is therefore named ``.NAME.tmp-<pid>-<random>``
after the process writing it, and :func:`remove_stale_temporaries` deletes those
whose process is gone (a live writer's file is left alone): every write removes
the stale temporaries of its own destination first, and ``train --resume`` and
``features`` clean their whole output folder. Names from before the pid was
recorded (``.NAME.tmp-<random>``) count as stale.
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

__all__ = ["atomic_write", "write_text_atomic", "write_json_atomic", "write_npz_atomic", "write_npy_atomic",
           "remove_stale_temporaries"]

#: ``.NAME.tmp-<pid>-<random>``: the temporary files of :func:`atomic_write` (pid optional in older names).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<pid>\d+)-)?[^.]+$")


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
    remove_stale_temporaries(folder, name=dst.name)     # a killed earlier write of the same file
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=str(folder))
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, dst)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            # Report the file the caller asked for, not the temporary name (e.g. a full disk).
            raise OSError(e.errno, e.strerror, str(dst)) from e
        raise
    return dst


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):   # exists but belongs to someone else (or cannot be asked): keep
        return True
    return True


def remove_stale_temporaries(folder, recursive: bool = False, name: str | None = None) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_write` left in ``folder``.

    A file ``.NAME.tmp-<pid>-<random>`` is stale when process ``pid`` no longer
    runs; one without a pid (an older name) is always stale. A missing folder holds
    nothing. Returns the paths removed.

    Parameters
    ----------
    folder : the folder to clean.
    recursive : also clean its sub-folders (e.g. a features folder's ``train/``).
    name : only the temporaries of this destination file name (what :func:`atomic_write` cleans).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*.tmp-*") if recursive else (Path(e.path) for e in os.scandir(folder))
    removed = []
    for path in candidates:
        m = _TEMPORARY.match(path.name)
        if m is None or (name is not None and m.group("name") != name) or not path.is_file():
            continue
        if m.group("pid") is not None and _process_alive(int(m.group("pid"))):
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:          # another cleaner was quicker
            pass
    return removed


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
