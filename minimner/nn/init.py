"""Initial weights, in one place: every distribution minimner draws parameters from.

Each helper draws from the caller's generator (a NumPy or CuPy ``Generator``; None: a fresh
unseeded one on the current backend) exactly once per call, in the caller's order, so one seed
gives the same weights every time. The distributions are the ones the PyTorch code uses (not
its random stream, docs/training.md §1):

=============================  ==========================================  =========================
helper                         draws                                       used for
=============================  ==========================================  =========================
:func:`normal`                 N(0, std²) in float64, stored float32       BERT's ``init_bert_weights``
:func:`uniform`                U(−bound, bound) in float64, stored float32  PyTorch's default Linear,
                                                                            Conv1d, ``reset_parameters``
:func:`uniform_float32`        U(−bound, bound) drawn in float32           Conv2d (ResNet without weights)
:func:`kaiming_normal_fan_out` N(0, 2 / fan_out) drawn in float32          torchvision's ResNet convs
:func:`fan_in_bound`           1/√fan_in (0 for an empty input)            the bound of the defaults
=============================  ==========================================  =========================

BERT's init of a whole sub-tree of modules (these weights N(0, 0.02²), zero biases, LayerNorm 1/0,
zero padding row) is :func:`minimner.models.bert.bert_init_`, built on :func:`normal`. The CRFs keep
pytorch-crf's own U(−0.1, 0.1) (:meth:`minimner.nn.crf.CRF.reset_parameters`).
"""
from __future__ import annotations

import math

from minimner import backend

__all__ = ["generator", "normal", "uniform", "uniform_float32", "kaiming_normal_fan_out", "fan_in_bound", "zeros"]


def generator(rng):
    """``rng`` if given, else a fresh unseeded generator on the current backend."""
    return backend.rng() if rng is None else rng


def fan_in_bound(fan_in: int) -> float:
    """1/√fan_in, the bound of PyTorch's default U(±bound) init (0 when there is no input)."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def normal(rng, shape, std: float = 1.0, dtype=backend.DEFAULT_FLOAT):
    """N(0, std²) of ``shape``, drawn in float64 and stored in ``dtype``."""
    return (generator(rng).standard_normal(shape) * std).astype(dtype)


def uniform(rng, shape, bound: float, dtype=backend.DEFAULT_FLOAT):
    """U(−bound, bound) of ``shape``, drawn in float64 and stored in ``dtype``."""
    return generator(rng).uniform(-bound, bound, shape).astype(dtype)


def uniform_float32(rng, shape, bound: float):
    """U(−bound, bound) of ``shape`` drawn directly in float32 (``2u − 1`` scaled, u ~ U[0, 1))."""
    f32 = backend.DEFAULT_FLOAT
    return (generator(rng).random(shape, dtype=f32) * 2 - 1) * f32(bound)


def kaiming_normal_fan_out(rng, shape):
    """N(0, 2 / fan_out) of a (O, C, k, k) kernel, fan_out = O·k·k, drawn in float32 (torchvision's ResNet)."""
    f32 = backend.DEFAULT_FLOAT
    o, _, kh, kw = shape
    w = generator(rng).standard_normal(shape, dtype=f32)                    # (O, C, k, k)
    w *= f32(math.sqrt(2.0 / (o * kh * kw)))                                # std = √(2 / fan_out)
    return w


def zeros(like, shape=None):
    """Zeros of ``shape`` (default: ``like``'s) in ``like``'s dtype, on ``like``'s device."""
    return backend.get_xp(like).zeros(like.shape if shape is None else shape, dtype=like.dtype)
