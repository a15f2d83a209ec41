"""Finiteness checks: which tensor first holds a NaN or an infinity.

One NaN spreads: a NaN input value, weight, loss or learning rate turns almost
every weight into NaN within a step or two, and the run then writes checkpoints
that decode nothing. Training, checkpoints, converters and loaders therefore
refuse non-finite values where they first appear, naming the tensor (or file),
with :class:`NonFiniteError`, a ``ValueError`` so the CLI prints it as one line.

The checks are reductions over data that is read anyway (a weight file, a
feature grid) or a single host scalar per training step (the loss and the global
gradient norm, see :mod:`minimner.train`), so they cost next to nothing; the
name of the first bad tensor is looked up only after something was found.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from minimner import backend

__all__ = ["NonFiniteError", "count_nonfinite", "first_nonfinite", "check_finite"]


class NonFiniteError(ValueError):
    """A NaN or an infinity where only finite numbers make sense (the message names where)."""


def count_nonfinite(a) -> int:
    """Number of NaN / ±inf entries of a NumPy or CuPy array (0 for integer and bool arrays)."""
    if a is None or getattr(a, "dtype", np.dtype(np.int64)).kind not in "fc":
        return 0
    xp = backend.get_xp(a)
    finite = xp.isfinite(a)                       # same shape, bool
    if bool(finite.all()):                        # the common case: one reduction, one host transfer
        return 0
    return int(a.size - finite.sum())


def first_nonfinite(named: Mapping[str, object] | Iterable[tuple[str, object]]):
    """``(name, count)`` of the first array holding NaN/inf in iteration order, or None."""
    items = named.items() if isinstance(named, Mapping) else named
    for name, a in items:
        n = count_nonfinite(a)
        if n:
            return name, n
    return None


def check_finite(named, where: str) -> None:
    """Raise :class:`NonFiniteError` ``"{where}: tensor 'NAME' holds N NaN/inf value(s)"`` for the first bad one.

    Parameters
    ----------
    named : mapping or iterable of (name, array) pairs; integer arrays are skipped.
    where : what the arrays are (usually a file path), put first in the message.
    """
    bad = first_nonfinite(named)
    if bad is not None:
        name, n = bad
        raise NonFiniteError(f"{where}: tensor {name!r} holds {n} NaN/inf value{'s' if n != 1 else ''}")
