"""Numerical gradient checks (central differences), shipped in the package so the
tutorials can use them.

The recipe (docs/style.md §2):

1. cast inputs and parameters to float64 and run the *same* code;
2. draw a random upstream gradient ``dout`` (never all ones: a ones vector can
   cancel exactly the term under test) and form the scalar
   ``L = sum(forward(...) * dout)``;
3. compare the hand-written backward with ``(L(x + h e_i) − L(x − h e_i)) / 2h`` (h = 1e-5:
   its truncation error ~h² and its round-off ~ε·|L|/h balance there in float64)
   for every entry of every input and parameter, or, for big blocks, along one
   random unit direction ``v``: ``∇L · v`` vs ``(L(x + h v) − L(x − h v)) / 2h``.

Relative error, used everywhere here::

    err = max_i |a_i − n_i| / max(|a_i|, |n_i|, floor),  floor = 1e-3 · max(‖a‖∞, ‖n‖∞)

The floor keeps entries that are exactly zero analytically (a masked key, a
padding row) from dividing round-off by zero; they are then held to an absolute
error of 1e-3·scale·tol.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from minimner import backend

__all__ = ["rel_error", "numerical_grad", "check_grads", "directional_check", "check_module",
           "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def rel_error(analytic, numeric) -> float:
    """Max elementwise relative error with a scale-aware floor (see module docstring)."""
    a = backend.asnumpy(analytic).astype(np.float64)
    n = backend.asnumpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shape mismatch: analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(n).max())
    if scale == 0.0:
        return 0.0
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-3 * scale)
    return float((np.abs(a - n) / denom).max())


def _require_float64(name, x):
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks run in float64; {name!r} is {x.dtype} (cast it with .astype(np.float64))")


def numerical_grad(f: Callable[[], float], x, h: float = 1e-5):
    """Central-difference gradient of the scalar ``f()`` with respect to array ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored. It must be
    float64. Works for NumPy and CuPy arrays (the loop is over entries on purpose:
    this is a test utility, not an op).
    """
    _require_float64("x", x)
    xp = backend.get_xp(x)
    grad = xp.zeros_like(x)
    if not x.flags.c_contiguous:  # reshape(-1) would copy and the perturbation would be lost
        raise ValueError("numerical_grad needs a C-contiguous array (use xp.ascontiguousarray)")
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i].copy()
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def check_grads(loss: Callable[[], float], arrays: Mapping[str, object], analytic: Mapping[str, object],
                h: float = 1e-5, tol: float = 1e-6) -> dict:
    """Compare ``analytic[name]`` with the numerical gradient of ``loss`` w.r.t. ``arrays[name]``.

    Returns ``{name: relative error}``; raises :class:`GradcheckError` naming the
    worst array, its error and the worst index when any error exceeds ``tol``.
    """
    errors, worst = {}, None
    for name, x in arrays.items():
        _require_float64(name, x)
        num = numerical_grad(loss, x, h)
        a = analytic[name]
        if tuple(a.shape) != tuple(x.shape):
            raise GradcheckError(f"{name}: analytic gradient shape {tuple(a.shape)} != input shape {tuple(x.shape)}")
        err = rel_error(a, num)
        errors[name] = err
        if err > tol and (worst is None or err > errors[worst]):
            worst = name
            an, nn = backend.asnumpy(a), backend.asnumpy(num)
            idx = np.unravel_index(np.argmax(np.abs(an - nn)), an.shape) if an.size else ()
            detail = f"worst index {idx}: analytic {an[idx]!r} numeric {nn[idx]!r}"
    if worst is not None:
        raise GradcheckError(f"gradient check failed for {worst!r}: relative error {errors[worst]:.3e} > {tol:.1e}; "
                             f"{detail}; all errors: { {k: f'{v:.2e}' for k, v in errors.items()} }")
    return errors


def directional_check(loss: Callable[[], float], arrays: Mapping[str, object], analytic: Mapping[str, object],
                      rng=None, h: float = 1e-5, tol: float = 1e-6) -> float:
    """One random-direction check over all ``arrays`` jointly (cheap at any size).

    Draws a unit vector ``v`` spread over every array, and compares ``Σ ∇L·v``
    with ``(L(x + h v) − L(x − h v)) / 2h``. Returns the relative error and raises
    :class:`GradcheckError` above ``tol``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    names = list(arrays)
    dirs = {}
    for n in names:
        _require_float64(n, arrays[n])
        d = rng.standard_normal(arrays[n].shape)
        dirs[n] = backend.asarray(d, dtype=np.float64, backend=backend.device_of(arrays[n]))
    norm = np.sqrt(sum(float((dirs[n] ** 2).sum()) for n in names))
    for n in names:
        dirs[n] /= norm
    predicted = sum(float((analytic[n] * dirs[n]).sum()) for n in names)

    def shift(sign):
        for n in names:
            arrays[n] += sign * h * dirs[n]

    shift(+1)
    fp = float(loss())
    shift(-2)
    fm = float(loss())
    shift(+1)
    numeric = (fp - fm) / (2 * h)
    err = abs(predicted - numeric) / max(abs(predicted), abs(numeric), 1e-300)
    if err > tol:
        raise GradcheckError(f"directional check failed: analytic {predicted!r} vs numeric {numeric!r} "
                             f"(relative error {err:.3e} > {tol:.1e})")
    return err


def check_module(module, forward: Callable, backward: Callable, inputs: Sequence, rng,
                 differentiable: Sequence[bool] | None = None, directional: bool = False,
                 h: float = 1e-5, tol: float = 1e-6) -> dict:
    """Gradient-check a module's backward against its forward, inputs and parameters.

    Parameters
    ----------
    module : Module already cast to float64 (``module.double()``).
    forward : callable ``forward(*inputs) -> out`` (an array).
    backward : callable ``backward(dout) -> tuple`` of input gradients, aligned
        with ``inputs`` (``None`` for non-differentiable inputs such as masks/ids).
    inputs : the float64 input arrays (ids/masks may be integer/bool).
    rng : numpy Generator used for the random upstream gradient (and direction).
    differentiable : which inputs to check (default: every floating-point one).
    directional : one random-direction check instead of every entry.

    Returns ``{name: relative error}`` with names ``input<i>`` and parameter names.
    """
    inputs = list(inputs)
    if differentiable is None:
        differentiable = [getattr(x, "dtype", None) is not None and x.dtype.kind == "f" for x in inputs]
    out = forward(*inputs)
    dout = backend.asarray(rng.standard_normal(out.shape), dtype=np.float64, backend=backend.device_of(out))
    module.zero_grad()
    out = forward(*inputs)
    dins = backward(dout)
    if not isinstance(dins, tuple):
        dins = (dins,)

    def loss():
        return float((forward(*inputs) * dout).sum())

    arrays, analytic = {}, {}
    for i, (x, d) in enumerate(zip(inputs, differentiable)):
        if d:
            arrays[f"input{i}"] = x
            analytic[f"input{i}"] = dins[i]
    for name, p in module.named_parameters():
        arrays[name] = p.data
        analytic[name] = p.grad.copy()
    if directional:
        return {"direction": directional_check(loss, arrays, analytic, rng, h, tol)}
    return check_grads(loss, arrays, analytic, h, tol)
