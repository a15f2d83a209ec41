"""Module conventions shared by every layer and model in minimner.

The names follow PyTorch so that state dicts convert by renaming only:

* :class:`Parameter` carries ``.data`` (the array) and ``.grad`` (same shape and
  dtype, accumulated by ``backward`` and cleared by ``zero_grad``).
* :class:`Module` registers parameters, buffers (e.g. BatchNorm running
  statistics) and sub-modules by attribute assignment, and offers
  ``named_parameters()``, ``parameters()``, ``state_dict()``,
  ``load_state_dict(mapping, strict=True)``, ``zero_grad()``, ``train()``,
  ``eval()`` and ``to(backend)``.
* A module's ``forward`` stores one pending cache; its ``backward`` consumes it
  and raises if there is none (see :meth:`Module._pop_cache`).
* Inside ``with no_grad():`` forwards keep no cache at all, so each layer's
  intermediate arrays are freed as soon as the next layer has read them (inference
  memory is then one layer's worth instead of the whole network's); a backward
  after such a forward raises.

Modules are thin: the maths lives in the ``<op>_forward`` / ``<op>_backward``
pairs of :mod:`minimner.ops`.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Mapping

import numpy as np

from minimner import backend


_GRAD = {"enabled": True}    # whether forwards keep their caches for a backward (see no_grad)


@contextmanager
def no_grad():
    """Forwards inside keep no caches (inference: less memory, no backward possible)."""
    old = _GRAD["enabled"]
    _GRAD["enabled"] = False
    try:
        yield
    finally:
        _GRAD["enabled"] = old


def grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return _GRAD["enabled"]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : array, float32 (float64 inside gradient checks)
    grad : array, same shape/dtype as ``data``; backward passes *add* into it.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        xp = backend.get_xp(data)
        self.grad = xp.zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, device={backend.device_of(self.data)})"


class Module:
    """Base class: parameter/buffer/sub-module registry plus train/eval state."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    # ------------------------------------------------------------------ registry
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name!r}")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        for d in (params, modules, buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """A non-trainable array that is part of the state dict (e.g. ``running_mean``)."""
        self.__setattr__(name, array)
        self._buffers[name] = True

    def _buffer_items(self):
        for name in self._buffers:
            yield name, getattr(self, name)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, Parameter)`` in registration order, like PyTorch."""
        for mod_prefix, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        for mod_prefix, m in self.named_modules(prefix):
            for name, b in m._buffer_items():
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    # ---------------------------------------------------------------- state dict
    def state_dict(self) -> "OrderedDict[str, object]":
        """``{name: array}`` for every parameter and buffer (the arrays themselves, not copies)."""
        out = OrderedDict()
        for mod_prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                out[f"{mod_prefix}.{name}" if mod_prefix else name] = p.data
            for name, b in m._buffer_items():
                out[f"{mod_prefix}.{name}" if mod_prefix else name] = b
        return out

    def _state_slots(self):
        """name -> (owner module, attribute name, is_parameter)."""
        slots = OrderedDict()
        for mod_prefix, m in self.named_modules():
            for name in m._parameters:
                slots[f"{mod_prefix}.{name}" if mod_prefix else name] = (m, name, True)
            for name in m._buffers:
                slots[f"{mod_prefix}.{name}" if mod_prefix else name] = (m, name, False)
        return slots

    def load_state_dict(self, mapping: Mapping[str, object], strict: bool = True) -> dict:
        """Copy arrays from ``mapping`` into this module's parameters and buffers.

        Each array is converted to the destination's backend and dtype; shapes must
        match exactly.

        Returns
        -------
        dict with ``missing_keys`` and ``unexpected_keys`` (both empty when strict).

        Raises
        ------
        KeyError
            (strict) naming every missing and every unexpected key.
        ValueError
            naming the key, the expected shape and the received shape.
        """
        slots = self._state_slots()
        missing = [k for k in slots if k not in mapping]
        unexpected = [k for k in mapping if k not in slots]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {missing}")
            if unexpected:
                parts.append(f"unexpected keys: {unexpected}")
            raise KeyError(f"{type(self).__name__}.load_state_dict: " + "; ".join(parts))
        for key, (m, name, is_param) in slots.items():
            if key not in mapping:
                continue
            current = m._parameters[name].data if is_param else getattr(m, name)
            src = mapping[key]
            src_shape = tuple(getattr(src, "shape", np.shape(src)))
            if src_shape != tuple(current.shape):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: shape mismatch for {key!r}: "
                    f"expected {tuple(current.shape)}, got {src_shape}")
            new = backend.asarray(src, dtype=current.dtype, backend=backend.device_of(current))
            if new is src:  # never alias the caller's array
                new = new.copy()
            if is_param:
                p = m._parameters[name]
                p.data = new
                p.grad = backend.get_xp(new).zeros_like(new)
            else:
                object.__setattr__(m, name, new)
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    # ------------------------------------------------------------ train / device
    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(self, backend_name: str, dtype=None) -> "Module":
        """Move every parameter, buffer and dropout generator to ``backend_name`` (and optionally cast).

        This is the explicit device move; nothing inside ``forward`` transfers data.
        """
        moved = {}                                 # id(generator) -> its move: a shared generator stays shared
        for _, m in self.named_modules():
            for name, p in m._parameters.items():
                p.data = backend.asarray(p.data, dtype=dtype or p.data.dtype, backend=backend_name)
                p.grad = backend.get_xp(p.data).zeros_like(p.data)
            gen = m.__dict__.get("rng")            # Dropout's mask generator draws where the data lives
            if gen is not None:
                if id(gen) not in moved:
                    moved[id(gen)] = backend.rng_to(gen, backend_name)
                object.__setattr__(m, "rng", moved[id(gen)])
            for name in m._buffers:
                b = getattr(m, name)
                object.__setattr__(m, name, backend.asarray(b, dtype=dtype or b.dtype, backend=backend_name))
            object.__setattr__(m, "_cache", None)
        return self

    def double(self) -> "Module":
        """Cast every parameter and buffer to float64, in place (gradient checks only)."""
        for _, m in self.named_modules():
            for p in m._parameters.values():
                p.data = p.data.astype(np.float64)
                p.grad = p.grad.astype(np.float64)
            for name in m._buffers:
                b = getattr(m, name)
                if b.dtype.kind == "f":
                    object.__setattr__(m, name, b.astype(np.float64))
        return self

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    # ------------------------------------------------------------------- caches
    def _save_cache(self, cache) -> None:
        object.__setattr__(self, "_cache", cache if _GRAD["enabled"] else None)

    def _pop_cache(self):
        """Return and clear the pending forward cache; backward without one is an error."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a pending forward "
                               "(call forward first, outside no_grad(); each forward supports one backward)")
        object.__setattr__(self, "_cache", None)
        return cache

    # ------------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class ModuleList(Module):
    """An indexable list of sub-modules named ``0``, ``1``, … (as in PyTorch state dicts)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._modules)), module)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
