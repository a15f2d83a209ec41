"""Array-module backend: the only file in minimner that imports CuPy.

Everything that touches arrays asks this module which array library to use:

* ``get_xp(a)`` returns ``numpy`` or ``cupy`` for an existing array (ops use this,
  so an op always computes where its inputs live);
* ``xp()`` / ``set_backend(name)`` / ``MINIMNER_BACKEND=numpy|cupy|strict`` choose
  the library used to *create* new arrays (parameters, data batches);
* ``'strict'`` is a CPU stand-in for CuPy's rules (:mod:`minimner._strict`): device
  arrays that refuse implicit conversion to NumPy and mixing with host arrays, 0-d
  results from reductions, and counters of transfers and synchronisations. Tests
  run the CuPy code paths through it without a GPU;
* ``asarray`` / ``asnumpy`` / ``to_device`` are the explicit device moves. They are
  called at API edges (loading weights, building a batch, reporting a number),
  never inside an op.
* ``rng(seed)`` builds an explicit random generator on a backend; ops that need
  randomness (dropout, init) take one as an argument and never touch global seeds.
* The few spellings that differ between NumPy and CuPy live here once:
  ``scatter_add`` (embedding gradients), ``erf`` and ``normal_cdf`` (exact GELU).

Dimension letters: the package's one legend, in :mod:`minimner` (``minimner/__init__.py``).
"""
from __future__ import annotations

import os
import types

import numpy as np

from minimner import _strict
from minimner._erf import erf_numpy, normal_cdf_float32

try:  # CuPy is optional: the `gpu` extra.
    import cupy as _cupy  # type: ignore
    import cupyx as _cupyx  # type: ignore
    import cupyx.scipy.special as _cupyx_special  # type: ignore

    CUPY_IMPORTED = True
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None
    _cupyx = None
    _cupyx_special = None
    CUPY_IMPORTED = False

__all__ = [
    "CUPY_IMPORTED", "cupy_available", "set_backend", "get_backend", "xp", "get_xp",
    "asarray", "asnumpy", "to_device", "device_of", "rng", "scatter_add", "erf",
    "normal_cdf",
    "DEFAULT_FLOAT", "is_cupy_array", "is_device_array", "BACKENDS", "synchronize", "rng_to",
]

#: The backend names ``set_backend`` accepts.
BACKENDS = ("numpy", "cupy", "strict")

#: The compute dtype of every parameter and activation (float64 only in gradchecks).
DEFAULT_FLOAT = np.float32


def cupy_available() -> bool:
    """True when CuPy imported *and* at least one CUDA device is visible."""
    if not CUPY_IMPORTED:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover - driver missing, etc.
        return False


def _check_name(name: str) -> str:
    name = str(name).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected 'numpy', 'cupy' or 'strict'")
    if name == "cupy" and not cupy_available():
        why = ("CuPy is not installed (pip install 'minimner[gpu]' or the cupy-cudaXXx wheel "
               "matching your CUDA)") if not CUPY_IMPORTED else "CuPy is installed but no CUDA GPU is visible"
        raise RuntimeError(f"backend 'cupy' requested but {why}")
    return name


_BACKEND = _check_name(os.environ.get("MINIMNER_BACKEND", "numpy"))


def set_backend(name: str) -> None:
    """Select the library used to create new arrays: ``'numpy'``, ``'cupy'`` or ``'strict'``.

    Raises
    ------
    ValueError
        for an unknown name.
    RuntimeError
        for ``'cupy'`` when CuPy is not installed or no GPU is visible.
    """
    global _BACKEND
    _BACKEND = _check_name(name)


def get_backend() -> str:
    """Name of the current default backend (``'numpy'``, ``'cupy'`` or ``'strict'``)."""
    return _BACKEND


def xp() -> types.ModuleType:
    """The array module (``numpy``, ``cupy`` or the strict namespace) of the current backend."""
    if _BACKEND == "cupy":
        return _cupy
    return _strict.xp if _BACKEND == "strict" else np


def is_cupy_array(a) -> bool:
    return CUPY_IMPORTED and isinstance(a, _cupy.ndarray)


def is_device_array(a) -> bool:
    """True for an array that lives off the host: CuPy's, or the strict backend's stand-in.

    Code that must not sync on a device (a host-side check, a NumPy-only fast path)
    asks this, so the strict backend takes the CuPy branch and tests can see it.
    """
    return isinstance(a, _strict.StrictArray) or is_cupy_array(a)


def get_xp(*arrays) -> types.ModuleType:
    """The array module that owns ``arrays`` (NumPy for anything that is not a device array)."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy
        if isinstance(a, _strict.StrictArray):
            return _strict.xp
    return np


def device_of(a) -> str:
    """``'cupy'`` or ``'strict'`` for a device array, else ``'numpy'``."""
    if isinstance(a, _strict.StrictArray):
        return "strict"
    return "cupy" if is_cupy_array(a) else "numpy"


def asarray(a, dtype=None, backend: str | None = None):
    """Move/convert ``a`` to ``backend`` (default: the current one). An explicit transfer."""
    name = _check_name(backend) if backend is not None else _BACKEND
    if name == "cupy":
        return _cupy.asarray(a, dtype=dtype)
    if name == "strict":
        return _strict.to_device(asnumpy(a) if is_cupy_array(a) else a, dtype)
    return np.asarray(asnumpy(a) if is_device_array(a) else a, dtype=dtype)


to_device = asarray


def asnumpy(a):
    """Return a NumPy copy/view of ``a`` (device → host when ``a`` is a CuPy array)."""
    if is_cupy_array(a):
        return _cupy.asnumpy(a)
    if isinstance(a, _strict.StrictArray):
        return _strict.to_host(a)
    return np.asarray(a)


def synchronize() -> None:
    """Wait until the GPU has finished the work queued so far (a no-op off CuPy).

    For timing only: CuPy launches kernels asynchronously, so a stopwatch must wait for them.
    """
    if CUPY_IMPORTED and _BACKEND == "cupy":
        _cupy.cuda.get_current_stream().synchronize()


def rng(seed=None, backend: str | None = None):
    """A seeded random generator on ``backend`` (``numpy.random.Generator`` or CuPy's).

    Pass it explicitly to anything random (dropout masks, parameter init).
    """
    name = _check_name(backend) if backend is not None else _BACKEND
    if name == "cupy":
        return _cupy.random.default_rng(seed)
    if name == "strict":
        return _strict.xp.random.default_rng(seed)
    return np.random.default_rng(seed)


def rng_to(gen, backend: str):
    """A generator on ``backend`` that continues from ``gen`` (the device move of a generator).

    Dropout draws its masks where the data lives, so :meth:`minimner.nn.module.Module.to` moves
    the generators with the parameters. Host and strict generators share one NumPy stream (the
    strict one wraps it: the same masks as on the host); a move to or from CuPy's different
    generator family seeds the new one with a draw from ``gen``, which is deterministic but
    gives other masks.
    """
    name = _check_name(backend)
    if isinstance(gen, _strict.xp.random.Generator):
        host = gen._g
    elif isinstance(gen, np.random.Generator):
        host = gen
    else:                                                  # a CuPy generator
        if name == "cupy":
            return gen
        host = np.random.default_rng(int(gen.integers(0, 2**62, size=1)[0]))   # one sync, at an API edge
    if name == "numpy":
        return host
    if name == "strict":
        return gen if isinstance(gen, _strict.xp.random.Generator) else _strict.xp.random.default_rng(host)
    return _cupy.random.default_rng(int(host.integers(2**62)))


def scatter_add(target, indices, values) -> None:
    """In place ``target[indices] += values`` with repeated indices accumulated.

    NumPy spells this ``np.add.at``; CuPy spells it ``cupyx.scatter_add``.
    ``target``: (V, C), ``indices``: (N,) int, ``values``: (N, C).
    """
    if is_cupy_array(target):
        _cupyx.scatter_add(target, indices, values)
    else:                                  # NumPy, and the strict backend through __array_ufunc__
        np.add.at(target, indices, values)


def erf(x):
    """Elementwise error function in the dtype of ``x`` (no SciPy on the NumPy path).

    CuPy has a native kernel (``cupyx.scipy.special.erf``). For NumPy we evaluate
    the rational approximations of :mod:`minimner._erf` (accurate to float64
    round-off), so the exact-erf GELU matches PyTorch without SciPy.
    """
    if is_cupy_array(x):
        return _cupyx_special.erf(x)
    if isinstance(x, _strict.StrictArray):  # the strict backend's stand-in for CuPy's kernel
        return _strict.StrictArray(erf_numpy(x._a))
    return erf_numpy(x)


def normal_cdf(x):
    """Standard normal CDF ``Phi(x) = 0.5 * (1 + erf(x / sqrt 2))`` in the dtype of ``x``.

    The GELU's only transcendental. A float32 NumPy array takes the fast path
    :func:`minimner._erf.normal_cdf_float32` (a fitted sigmoid form, within 1.3e-7 of
    Phi and 3x cheaper than an erf-based float32 GELU); CuPy arrays
    (and the strict backend's stand-in) and float64 (gradient checks) use the erf formula, exact to round-off.
    This CPU-only branch exists because NumPy has no erf ufunc.
    """
    if not is_device_array(x) and x.dtype == np.float32:
        return normal_cdf_float32(x)
    cdf = erf(x * x.dtype.type(1.0 / np.sqrt(2.0)))        # (...) erf(x/√2), dtype of x
    cdf += 1                                               # in place on the fresh array
    cdf *= 0.5
    return cdf
