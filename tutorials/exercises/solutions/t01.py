"""Reference solutions of tutorial 01 (layer normalisation)."""
import math

import numpy as np

from minimner._erf import erf_numpy


def layernorm_backward(dy, x, gamma, eps):
    C = x.shape[-1]
    mu = x.mean(-1, keepdims=True)                               # (…, 1)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)   # (…, 1)
    xhat = (x - mu) * r                                          # (…, C)
    g = dy * gamma                                               # (…, C) dL/dxhat
    dx = r * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    return dx, (dy * xhat).sum(axis=rows), dy.sum(axis=rows)


def gelu_grad(x):
    cdf = 0.5 * (1 + erf_numpy(x / math.sqrt(2)))               # Φ(x)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)          # φ(x)
    return cdf + x * pdf                                         # d/dx x Φ(x)


def rmsnorm_backward(dy, x, gamma, eps):
    r = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)   # (…, 1)
    xhat = x * r
    g = dy * gamma
    dx = r * (g - xhat * (g * xhat).mean(-1, keepdims=True))     # no mean term: nothing is centred
    return dx, (dy * xhat).sum(axis=tuple(range(x.ndim - 1)))
