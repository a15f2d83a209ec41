"""General file I/O on the ground floor: safe readers, hashes, manifests, and key accounting.

Every layer that touches a file uses these helpers: the converters (:mod:`minimner.convert`),
``BertModel.from_pretrained`` and the other weight loaders, the lexicon, the tokenizer and the
``features`` command. Writers are atomic and live in :mod:`minimner.atomic` (re-exported here),
so one import gives the whole toolbox. This module imports nothing of minimner but the atomic
writers and :mod:`minimner.finite`.

Loading a file must never run code that the file carries. So:

* ``.safetensors`` is read with the ``safetensors`` library in NumPy mode (a flat
  header plus raw bytes: nothing to execute). This is the preferred weight format.
* ``.npz`` (what minimner writes) is read with ``allow_pickle=False``: an object
  array inside it is refused instead of being unpickled.
* ``.bin`` / ``.pth`` / ``.pt`` (PyTorch pickles) are read only through
  ``torch.load(weights_only=True)``, whose restricted unpickler accepts tensors and
  plain containers and refuses anything else. Without torch installed they are an
  error, never a fallback to ``pickle``.

Writers are atomic (write ``.<dst>.tmp-…`` in the same folder, then ``os.replace``)
so a crash never leaves a half-written ``.npz`` or manifest behind.

:class:`KeyAccountant` turns a source state dict into the target module's state dict
by *explicit* rules — regex renames, an ignore list with a reason per entry, a short
list of tensors to transpose — and then checks the books: every source tensor is
used exactly once or deliberately ignored, every target tensor is filled, and every
shape matches. Anything else is an error that names the key (docs/style.md §1, nanoGPT's
``from_pretrained``).

Example (a converter for a ResNet, say)::

    src = read_weights("resnet152.safetensors")                 # {name: np.ndarray}
    acc = KeyAccountant(
        rename=[(r"^module\\.", "")],                          # strip a DataParallel prefix
        ignore=[(r"^fc\\.", "classifier head, not used")],
    )
    target = acc.apply(src, expected_shapes(model))              # OrderedDict in model order
    model.load_state_dict(target)
    print(acc.report())                                          # which keys were renamed/ignored

Arrays pass through unchanged in shape (no dimension legend applies: nothing here computes).
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from safetensors.numpy import load_file

from minimner.atomic import (atomic_write, remove_stale_temporaries, write_json_atomic,  # noqa: F401 (re-exported)
                             write_npy_atomic, write_npz_atomic, write_text_atomic)
from minimner.finite import check_finite

__all__ = [
    "MANIFEST_FORMAT_VERSION", "META_PREFIX", "sha256_file", "sha256_array",
    "read_safetensors", "read_npz", "read_torch", "read_weights",
    "atomic_write", "write_text_atomic", "write_json_atomic", "write_npz_atomic", "write_npy_atomic",
    "remove_stale_temporaries", "require_file", "make_manifest", "write_manifest", "read_manifest",
    "text_to_array", "array_to_text", "expected_shapes", "KeyAccountant",
]

#: Version of the manifest layout written by :func:`make_manifest`.
MANIFEST_FORMAT_VERSION = 1

#: Keys of a converted ``.npz`` that start with this prefix hold metadata
#: (UTF-8 text stored as uint8 arrays, e.g. the model's config.json), not tensors.
META_PREFIX = "__meta__."

_TORCH_SUFFIXES = (".bin", ".pth", ".pt")


# ----------------------------------------------------------------------------- hashing
def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (streamed, so big checkpoints do not sit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """Hex SHA-256 of an array's C-order bytes (its dtype and shape are recorded separately)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ----------------------------------------------------------------------------- readers
def require_file(path, what: str = "weight file") -> Path:
    """``path`` as a Path; FileNotFoundError naming it when it is missing or not a regular file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    if not p.is_file():
        raise FileNotFoundError(f"expected a {what} but {p} is not a regular file")
    return p


def read_safetensors(path) -> "OrderedDict[str, np.ndarray]":
    """Read every tensor of a ``.safetensors`` file as a NumPy array.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    OrderedDict name -> np.ndarray, in the file's order, dtypes as stored.

    Raises
    ------
    FileNotFoundError
        when the file does not exist.
    ValueError
        when the file is truncated, corrupt, or holds a dtype NumPy cannot represent
        (e.g. bfloat16); the message names the file.
    """
    p = require_file(path)
    size = p.stat().st_size
    if size < 8:
        raise ValueError(f"{p}: not a safetensors file (only {size} bytes; the 8-byte header length is missing)")
    try:
        arrays = load_file(str(p))
    except Exception as e:  # SafetensorError, OSError, TypeError for unsupported dtypes ...
        raise ValueError(f"{p}: cannot read safetensors file (truncated or corrupt?): {type(e).__name__}: {e}") from e
    return OrderedDict(arrays)


def read_npz(path) -> "OrderedDict[str, np.ndarray]":
    """Read a ``.npz`` archive with pickling disabled.

    Returns
    -------
    OrderedDict name -> np.ndarray (metadata keys included; see :data:`META_PREFIX`).

    Raises
    ------
    FileNotFoundError
        when the file does not exist.
    ValueError
        when the file is not a valid ``.npz`` or contains an object (pickled) array;
        the message names the file and, where known, the key.
    """
    p = require_file(path)
    out = OrderedDict()
    try:
        with np.load(p, allow_pickle=False) as z:
            for name in z.files:
                try:
                    out[name] = z[name]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise ValueError(f"{p}: array {name!r} is a pickled object array; refusing to "
                                         "unpickle it (weights must be plain numeric arrays)") from e
                    raise ValueError(f"{p}: cannot read array {name!r}: {e}") from e
    except ValueError as e:
        if str(e).startswith(str(p)):
            raise
        raise ValueError(f"{p}: not a readable .npz archive: {e}") from e
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{p}: not a readable .npz archive (truncated or corrupt?): {e}") from e
    return out


def read_torch(path) -> "OrderedDict[str, np.ndarray]":
    """Read a PyTorch ``.bin``/``.pth``/``.pt`` state dict via ``torch.load(weights_only=True)``.

    The restricted unpickler refuses any object that is not a tensor or a plain
    container, so a malicious pickle raises instead of running. A checkpoint that
    wraps its state dict as ``{"state_dict": {...}}`` or ``{"model": {...}}`` is
    unwrapped.

    Returns
    -------
    OrderedDict name -> np.ndarray (bfloat16 tensors are widened to float32).

    Raises
    ------
    FileNotFoundError, RuntimeError (torch not installed), ValueError (refused or
    corrupt file, or a non-tensor entry; the message names the file and key).
    """
    p = require_file(path)
    try:
        import torch
    except ImportError as e:
        raise RuntimeError(f"{p}: reading PyTorch pickles needs torch (pip install torch), or convert the "
                           "checkpoint to .safetensors; minimner never unpickles without torch's "
                           "weights_only loader") from e
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for refused globals, RuntimeError for corrupt zips
        raise ValueError(f"{p}: refused or unreadable PyTorch checkpoint (loaded with weights_only=True, "
                         f"which never executes code from the file): {type(e).__name__}: {e}") from e
    if isinstance(obj, Mapping) and len(obj) == 1:
        (only_key, only_val), = obj.items()
        if only_key in ("state_dict", "model") and isinstance(only_val, Mapping):
            obj = only_val
    if not isinstance(obj, Mapping):
        raise ValueError(f"{p}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    out = OrderedDict()
    for name, t in obj.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{p}: entry {name!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16
            t = t.float()
        out[str(name)] = t.numpy().copy()
    return out


def read_weights(path) -> "OrderedDict[str, np.ndarray]":
    """Read a weight file, choosing the safe reader from its suffix.

    ``.safetensors`` → :func:`read_safetensors`; ``.npz`` → :func:`read_npz`;
    ``.bin``/``.pth``/``.pt`` → :func:`read_torch`.

    Raises
    ------
    ValueError
        for any other suffix (naming it and the accepted ones).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(p)
    if suffix == ".npz":
        return read_npz(p)
    if suffix in _TORCH_SUFFIXES:
        return read_torch(p)
    raise ValueError(f"{p}: unknown weight file type {suffix!r}; expected .safetensors, .npz, "
                     f"or (with torch installed) {', '.join(_TORCH_SUFFIXES)}")


# ----------------------------------------------------------------------------- writers
# The atomic writers live in minimner.atomic (re-exported above).


def make_manifest(source, arrays: Mapping[str, np.ndarray], source_sha256: str | None = None,
                  extra: Mapping | None = None) -> dict:
    """Describe converted arrays: ``{format_version, source, source_sha256, tensors, ...}``.

    Parameters
    ----------
    source : str or Path
        The file the arrays came from (recorded by name only, so manifests do not
        leak local paths).
    arrays : mapping name -> np.ndarray
        The tensors as written (metadata keys starting with :data:`META_PREFIX` are
        listed under ``"metadata"`` instead of ``"tensors"``).
    source_sha256 : str, optional
        Hex digest of the source file; computed from ``source`` when omitted.
    extra : mapping, optional
        More top-level fields (e.g. ``ignored`` keys, ``renamed`` keys, config).

    Returns
    -------
    dict with ``tensors[name] = {"shape": [...], "dtype": "float32", "sha256": hex}``.
    """
    src = Path(source)
    digest = source_sha256 if source_sha256 is not None else sha256_file(src)
    tensors, meta = OrderedDict(), []
    for name, a in arrays.items():
        if name.startswith(META_PREFIX):
            meta.append(name)
            continue
        a = np.asarray(a)
        tensors[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256_array(a)}
    manifest = OrderedDict(format_version=MANIFEST_FORMAT_VERSION, source=src.name,
                           source_sha256=digest, tensors=tensors)
    if meta:
        manifest["metadata"] = meta
    manifest["num_tensors"] = len(tensors)
    manifest["num_scalars"] = int(sum(int(np.prod(t["shape"])) for t in tensors.values()))
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(path, manifest: Mapping) -> Path:
    """Write a manifest (see :func:`make_manifest`) atomically as JSON."""
    for field in ("format_version", "source", "source_sha256", "tensors"):
        if field not in manifest:
            raise ValueError(f"manifest lacks the required field {field!r}")
    return write_json_atomic(path, manifest)


def read_manifest(path) -> dict:
    """Read a manifest JSON and check its required fields and format version."""
    p = require_file(path)
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON: {e}") from e
    for field in ("format_version", "source", "source_sha256", "tensors"):
        if field not in m:
            raise ValueError(f"{p}: manifest lacks the required field {field!r}")
    if m["format_version"] != MANIFEST_FORMAT_VERSION:
        raise ValueError(f"{p}: manifest format_version {m['format_version']} is not supported "
                         f"(this minimner reads {MANIFEST_FORMAT_VERSION})")
    return m


def text_to_array(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as a uint8 array (how text metadata rides in an ``.npz``)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def array_to_text(a: np.ndarray) -> str:
    """Inverse of :func:`text_to_array`."""
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"text metadata must be a 1-d uint8 array, got dtype {a.dtype} shape {a.shape}")
    return a.tobytes().decode("utf-8")


# ----------------------------------------------------------------------------- accounting
def expected_shapes(module) -> "OrderedDict[str, tuple]":
    """``{name: shape}`` of every parameter and buffer of a minimner :class:`Module`."""
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


class KeyAccountant:
    """Map a source state dict onto a target's names with explicit rules, and check the books.

    Parameters
    ----------
    rename : sequence of (pattern, replacement)
        Regex substitutions applied *in order* to each source key (each with
        ``re.sub``) to obtain the target key. Keep them few and readable, e.g.
        ``(r"^bert\\.", "")`` or ``(r"LayerNorm\\.gamma$", "LayerNorm.weight")``.
    ignore : sequence of (pattern, reason)
        Source keys (matched with ``re.fullmatch`` on the *original* key) that are
        deliberately not used, each with the reason recorded in :meth:`report`.
    transpose : iterable of str
        Target keys whose source tensor is stored transposed (2-d, swapped with
        ``.T``). Empty for PyTorch checkpoints, whose layout minimner keeps.
    dtype : numpy dtype or None
        Floating tensors are cast to this dtype (default float32); integer tensors
        are left alone. ``None`` keeps the source dtypes.

    After :meth:`apply`: ``used`` (source → target), ``ignored`` (source → reason),
    ``renamed`` (source → target where the name changed).
    """

    def __init__(self, rename: Sequence[tuple[str, str]] = (), ignore: Sequence[tuple[str, str]] = (),
                 transpose: Iterable[str] = (), dtype=np.float32):
        self.rename = [(re.compile(p), r) for p, r in rename]
        self.ignore = [(re.compile(p), why) for p, why in ignore]
        self.transpose = frozenset(transpose)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.used: "OrderedDict[str, str]" = OrderedDict()
        self.ignored: "OrderedDict[str, str]" = OrderedDict()
        self.renamed: "OrderedDict[str, str]" = OrderedDict()

    def target_name(self, key: str) -> str:
        """The target key that ``key`` becomes after the rename rules."""
        for pat, rep in self.rename:
            key = pat.sub(rep, key)
        return key

    def ignore_reason(self, key: str) -> str | None:
        for pat, why in self.ignore:
            if pat.fullmatch(key):
                return why
        return None

    def apply(self, source: Mapping[str, np.ndarray], expected: Mapping[str, tuple],
              where: str = "source") -> "OrderedDict[str, np.ndarray]":
        """Rename, check and return the target state dict, ordered like ``expected``.

        Parameters
        ----------
        source : mapping name -> array (shape as stored in the source)
        expected : mapping target name -> shape (e.g. :func:`expected_shapes`)
        where : str
            How to name the source in error messages (usually its file path).

        Returns
        -------
        OrderedDict target name -> np.ndarray with exactly the keys of ``expected``.

        Raises
        ------
        KeyError
            for a source key that is neither a target (after renaming) nor ignored,
            for two source keys that fill the same target, and for targets left
            unfilled; the message names the keys.
        ValueError
            for a shape mismatch, naming the source key, the target key and both shapes;
            :class:`~minimner.finite.NonFiniteError` (a ValueError) naming the source key
            of a tensor holding NaN or inf (after the cast to ``dtype``).
        """
        self.used.clear(), self.ignored.clear(), self.renamed.clear()
        filled: dict[str, str] = {}  # target -> source that filled it
        out: dict[str, np.ndarray] = {}
        unknown = []
        for key, arr in source.items():
            why = self.ignore_reason(key)
            if why is not None:
                self.ignored[key] = why
                continue
            tgt = self.target_name(key)
            if tgt not in expected:
                unknown.append(key if tgt == key else f"{key} (renamed to {tgt})")
                continue
            if tgt in filled:
                raise KeyError(f"{where}: target {tgt!r} would be filled twice, from {filled[tgt]!r} and "
                               f"{key!r}; fix the rename rules or ignore one of them")
            arr = np.asarray(arr)
            if tgt in self.transpose:
                if arr.ndim != 2:
                    raise ValueError(f"{where}: {key!r} is listed for transposing but has shape {arr.shape}")
                arr = arr.T
            want = tuple(expected[tgt])
            if tuple(arr.shape) != want:
                raise ValueError(f"{where}: shape mismatch for {key!r} -> {tgt!r}: expected {want}, "
                                 f"got {tuple(arr.shape)}")
            if self.dtype is not None and arr.dtype.kind == "f" and arr.dtype != self.dtype:
                with np.errstate(over="ignore"):             # an overflow to inf is reported just below
                    arr = arr.astype(self.dtype)
            check_finite([(key, arr)], where)            # before anything is written or loaded
            out[tgt] = np.ascontiguousarray(arr)
            filled[tgt] = key
            self.used[key] = tgt
            if tgt != key:
                self.renamed[key] = tgt
        if unknown:
            raise KeyError(f"{where}: unknown key(s) {unknown}: not a parameter of the target and not in "
                           "the ignore list")
        missing = [k for k in expected if k not in out]
        if missing:
            raise KeyError(f"{where}: target parameter(s) not filled by any source tensor: {missing}")
        return OrderedDict((k, out[k]) for k in expected)

    def report(self) -> dict:
        """``{"used": n, "renamed": {src: tgt}, "ignored": {src: reason}}`` of the last :meth:`apply`."""
        return {"used": len(self.used), "renamed": dict(self.renamed), "ignored": dict(self.ignored)}
