"""Elementwise activations: ReLU, tanh and a numerically stable logistic sigmoid.

    relu(x)    = max(x, 0)                    relu'(x)    = [x > 0]
    tanh(x)                                   tanh'(x)    = 1 - tanh(x)^2
    sigmoid(x) = 1 / (1 + exp(-x))            sigmoid'(x) = s (1 - s)

Shapes are free (``...``). The sigmoid never evaluates exp of a positive number:
with e = exp(-|x|) in (0, 1], sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) for
x < 0, so |x| = 1000 gives exactly 1 or ~0 without overflow warnings.
"""
from __future__ import annotations

from minimner.backend import get_xp

__all__ = ["relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
           "sigmoid_forward", "sigmoid_backward"]


def relu_forward(x):
    """``y = max(x, 0)``. Returns ``(y, cache)``; cache is the bool mask ``x > 0`` (...)."""
    xp = get_xp(x)
    mask = x > 0                                           # (...) bool, 1 byte/entry: all backward needs
    return xp.where(mask, x, 0).astype(x.dtype, copy=False), mask


def relu_backward(dy, cache):
    """``dx = dy * [x > 0]`` (the subgradient at 0 is taken as 0, like PyTorch)."""
    xp = get_xp(dy)
    return xp.where(cache, dy, 0).astype(dy.dtype, copy=False)


def tanh_forward(x):
    """``y = tanh(x)``. Returns ``(y, cache)``; cache is ``y`` itself (...)."""
    xp = get_xp(x)
    y = xp.tanh(x)
    return y, y                                            # the output is all backward needs


def tanh_backward(dy, cache):
    """``dx = dy * (1 - y^2)``."""
    y = cache
    return dy * (1.0 - y * y)


def sigmoid_forward(x):
    """Stable ``y = 1 / (1 + exp(-x))``. Returns ``(y, cache)``; cache is ``y`` (...)."""
    xp = get_xp(x)
    e = xp.exp(-xp.abs(x))                                 # (...) in (0, 1]: never overflows
    y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))   # (...) both forms equal sigmoid(x)
    return y, y


def sigmoid_backward(dy, cache):
    """``dx = dy * y * (1 - y)``."""
    y = cache
    return dy * y * (1.0 - y)
