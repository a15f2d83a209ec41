"""A CPU stand-in for CuPy's rules: the ``'strict'`` backend (for tests; no GPU needed).

CuPy differs from NumPy in ways a CPU run never notices, and each of them breaks a
GPU run or slows it down:

* it refuses implicit conversion to a host array: ``np.asarray(a)`` (and anything
  that calls ``a.__array__``) raises ``TypeError``; ``cupy.asnumpy`` / ``a.get()``
  are the explicit ways to the host;
* it refuses arithmetic and array functions that mix a host ``numpy.ndarray`` with
  a device array (NumPy *scalars* and Python numbers are fine);
* reductions and scalar indexing return 0-d device arrays, not NumPy scalars;
* ``float(a)``, ``int(a)``, ``bool(a)`` (an ``if`` on an array), ``a.item()`` and
  ``a.tolist()`` copy to the host and wait for the device: a synchronisation; so do
  functions whose output shape depends on the data (``nonzero``, ``unique``, indexing
  with a boolean mask), which must read the data to size their result.

``StrictArray`` wraps a ``numpy.ndarray`` and enforces exactly these rules, so
code that runs under ``set_backend('strict')`` keeps them on a CPU. The counters in
:data:`COUNTS` record every host→device transfer (``asarray`` of host data),
device→host transfer (``asnumpy``/``get``) and synchronisation, so a test can pin
how many a train step needs. The arithmetic itself is NumPy's, so results equal the
NumPy backend's wherever the code takes the same branch.

:data:`xp` is the module namespace (the ``cupy`` of this backend): creation
functions (``zeros``, ``arange``, ``asarray``, ``random.default_rng``...) return
``StrictArray``; every other name is NumPy's own, which dispatches to
``StrictArray`` through the ``__array_ufunc__`` / ``__array_function__`` protocols,
as CuPy arrays do.
"""
from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["StrictArray", "COUNTS", "Counts", "counting", "xp", "to_device", "to_host"]


@dataclass
class Counts:
    """Host↔device traffic seen by the strict backend since the last ``reset()``."""

    to_device: int = 0   # host data wrapped into a device array (asarray / array of host data)
    to_host: int = 0     # device array copied to a host ndarray (asnumpy / .get())
    syncs: int = 0       # float() / int() / bool() / index / .item() / .tolist() on a device array

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def copy(self) -> "Counts":
        return Counts(self.to_device, self.to_host, self.syncs)

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(self.to_device - other.to_device, self.to_host - other.to_host, self.syncs - other.syncs)


#: Global counters (one process, tests only).
COUNTS = Counts()


@contextlib.contextmanager
def counting():
    """``with counting() as c: ...``: ``c`` holds the traffic inside the block on exit."""
    before = COUNTS.copy()
    out = Counts()
    try:
        yield out
    finally:
        d = COUNTS - before
        out.to_device, out.to_host, out.syncs = d.to_device, d.to_host, d.syncs


def _mixed(where: str):
    return TypeError(f"{where}: a host numpy.ndarray cannot be mixed with a device array "
                     "(CuPy raises here too); move it once with backend.asarray")


def _unwrap(obj, where: str):
    """Strict arrays → their ndarray; a host ndarray → TypeError; containers recursively."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise _mixed(where)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, where) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, where) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """ndarray and NumPy scalars (what NumPy returns from a reduction) → StrictArray."""
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, np.generic) and not isinstance(obj, (np.str_, np.bytes_, np.void)):
        return StrictArray(np.asarray(obj))                # CuPy: a 0-d device array
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _sync():
    COUNTS.syncs += 1


#: Functions whose output *shape* depends on the data: CuPy must read the data back to size
#: the result, a synchronisation (boolean-mask indexing is the same, see ``__getitem__``).
_DATA_DEPENDENT = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract"}


def _is_bool_key(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, StrictArray) and k.dtype == np.bool_ for k in keys)


class StrictArray:
    """A ``numpy.ndarray`` that obeys CuPy's rules (see the module docstring).

    Attributes and methods are the wrapped array's; arguments are unwrapped (a host
    ndarray among them raises) and array results are wrapped again, so views share
    memory with the original exactly as on NumPy.
    """

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: np.ndarray):
        assert isinstance(a, np.ndarray), type(a)
        self._a = a

    # -- the rules ---------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (strict backend, as CuPy). "
                        "Use backend.asnumpy(a) at an API edge.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy.{ufunc.__name__}.{method}" if method != "__call__" else f"numpy.{ufunc.__name__}"
        out = kwargs.get("out")
        inputs, kwargs = _unwrap(inputs, where), _unwrap(kwargs, where)
        res = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(res)

    def __array_function__(self, func, types_, args, kwargs):
        where = f"numpy.{func.__name__}"
        if func.__name__ in _DATA_DEPENDENT:
            _sync()
        out = kwargs.get("out")
        args, kwargs = _unwrap(args, where), _unwrap(kwargs, where)
        res = func(*args, **kwargs)
        if out is not None:
            return out
        return _wrap(res)

    def get(self) -> np.ndarray:
        """The explicit device→host copy (CuPy's spelling)."""
        COUNTS.to_host += 1
        return self._a.copy()

    def item(self):
        _sync()
        return self._a.item()

    def tolist(self):
        _sync()
        return self._a.tolist()

    def __float__(self):
        _sync()
        return float(self._a)

    def __int__(self):
        _sync()
        return int(self._a)

    def __index__(self):
        _sync()
        return self._a.__index__()

    def __bool__(self):
        _sync()
        return bool(self._a)

    def __complex__(self):
        _sync()
        return complex(self._a)

    # -- plumbing ----------------------------------------------------------------
    def __getattr__(self, name):
        # `_a` before it is set (copy/unpickle) and the dunders NumPy probes for
        # (`__array_interface__`, `__array_struct__`: a silent host view) are not forwarded.
        if name == "_a" or name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                where = f"ndarray.{name}"
                if name in _DATA_DEPENDENT:
                    _sync()
                return _wrap(attr(*_unwrap(args, where), **_unwrap(kwargs, where)))
            return method
        return _wrap(attr)

    def __getitem__(self, key):
        if _is_bool_key(key):
            _sync()
        return _wrap(self._a[_unwrap(key, "indexing")])

    def __setitem__(self, key, value):
        if _is_bool_key(key):
            _sync()
        self._a[_unwrap(key, "indexing")] = _unwrap(value, "item assignment")

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for row in self._a:
            yield _wrap(row)

    def __repr__(self):
        return "strict:" + repr(self._a)

    def __str__(self):
        return str(self._a)

    def __copy__(self):
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._a.copy())

    def __reduce__(self):                       # pickling copies to the host, as for CuPy
        return (_from_host_pickle, (self.get(),))

    # `shape`, `dtype`... are plain attributes and go through __getattr__; these are
    # listed so that `x.T`, `x.shape = ...` and friends are fast and explicit.
    @property
    def shape(self):
        return self._a.shape

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def T(self):
        return StrictArray(self._a.T)


def _from_host_pickle(a):
    return to_device(a)


def _binary(name):
    op = getattr(np.ndarray, name)

    def f(self, other):
        return _wrap(op(self._a, _unwrap(other, name)))

    f.__name__ = name
    return f


def _inplace(name):
    op = getattr(np.ndarray, name)

    def f(self, other):
        op(self._a, _unwrap(other, name))
        return self

    f.__name__ = name
    return f


def _unary(name):
    op = getattr(np.ndarray, name)

    def f(self):
        return _wrap(op(self._a))

    f.__name__ = name
    return f


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
           "lshift", "rshift"):
    setattr(StrictArray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(StrictArray, f"__r{_n}__", _binary(f"__r{_n}__"))
    setattr(StrictArray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(StrictArray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_n}__", _unary(f"__{_n}__"))
StrictArray.__hash__ = None


# -- explicit moves ----------------------------------------------------------------
def to_device(a, dtype=None) -> StrictArray:
    """Host data (ndarray, list, scalar) → a new StrictArray: one counted transfer."""
    if isinstance(a, StrictArray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    COUNTS.to_device += 1
    return StrictArray(np.array(a, dtype=dtype))


def to_host(a) -> np.ndarray:
    """A StrictArray → a NumPy copy: one counted transfer."""
    return a.get()


# -- the module namespace ------------------------------------------------------------
def _creation(fn):
    def f(*args, **kwargs):
        return _wrap(fn(*_unwrap(args, fn.__name__), **_unwrap(kwargs, fn.__name__)))

    f.__name__ = fn.__name__
    return f


def _asarray(a, dtype=None, order=None):
    if isinstance(a, StrictArray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return to_device(a, dtype)


def _array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, StrictArray):
        return StrictArray(np.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    COUNTS.to_device += 1
    return StrictArray(np.array(a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def _ascontiguousarray(a, dtype=None):
    if isinstance(a, StrictArray):
        return StrictArray(np.ascontiguousarray(a._a, dtype=dtype))
    return to_device(np.ascontiguousarray(a, dtype=dtype))


class _Generator:
    """``numpy.random.Generator`` whose draws are StrictArrays (same streams as NumPy's)."""

    def __init__(self, seed=None):
        self._g = seed._g if isinstance(seed, _Generator) else np.random.default_rng(seed)

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        if not callable(attr):
            return attr

        def method(*args, **kwargs):
            return _wrap(attr(*_unwrap(args, name), **_unwrap(kwargs, name)))

        return method


class _Namespace(types.ModuleType):
    """The strict ``xp``: NumPy's names, with creation functions returning StrictArray."""

    def __getattr__(self, name):
        return getattr(np, name)


xp = _Namespace("minimner._strict.xp")
for _name in ("zeros", "ones", "empty", "full", "arange", "linspace", "eye", "identity", "tri",
              "indices", "zeros_like", "ones_like", "empty_like", "full_like", "frombuffer"):
    setattr(xp, _name, _creation(getattr(np, _name)))
xp.asarray = _asarray
xp.asanyarray = _asarray
xp.array = _array
xp.ascontiguousarray = _ascontiguousarray
xp.ndarray = StrictArray
xp.random = types.SimpleNamespace(default_rng=_Generator, Generator=_Generator)
xp.asnumpy = to_host
