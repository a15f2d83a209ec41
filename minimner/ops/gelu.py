"""GELU, the exact erf form used by BERT (docs/modules.md §2; not the tanh approximation).

    gelu(x)  = x * Phi(x),      Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))   (standard normal CDF)
    gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)  (standard normal PDF)

Elementwise, so shapes are free: ``...`` is any shape (typically (B, T, 4C)).
Phi comes from :func:`minimner.backend.normal_cdf`: ``0.5 (1 + erf(x/√2))`` with
CuPy's erf kernel on GPU and the fdlibm erf of :mod:`minimner._erf` for float64;
float32 NumPy arrays use the equivalent sigmoid form ``1 / (1 + exp(x A(x²)))``
with a fitted degree-6 polynomial A (within 1.3e-7 of Phi in float32; see :mod:`minimner._erf`),
3x cheaper on a CPU than the erf-based form, for the largest elementwise op of BERT.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from minimner._erf import normal_cdf_float32
from minimner.backend import get_xp, normal_cdf

__all__ = ["GeluCache", "gelu_forward", "gelu_backward"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_BLOCK = 1 << 15     # values per block of the CPU backward: 128 KiB per float32 temporary


class GeluCache(NamedTuple):
    x: object    # (...) stored: needed for the x * phi(x) term
    cdf: object  # (...) stored Phi(x): recomputing it would cost a second CDF evaluation


def gelu_forward(x):
    """``y = 0.5 * x * (1 + erf(x / sqrt(2)))``, elementwise.

    Parameters
    ----------
    x : array (...), float

    Returns
    -------
    y : array (...), dtype of ``x``
    cache : GeluCache
    """
    if get_xp(x) is np and x.dtype == np.float32:
        # CPU float32: Phi and x·Phi come out of one blocked pass (see minimner._erf).
        cdf, y = normal_cdf_float32(x, times_x=True)       # (...) Phi(x), x Phi(x)
        return y, GeluCache(x, cdf)
    cdf = normal_cdf(x)                                    # (...) Phi(x), dtype of x
    return x * cdf, GeluCache(x, cdf)                      # (...) x Phi(x)


def gelu_backward(dy, cache):
    """``dx = dy * (Phi(x) + x * phi(x))``.

    Parameters
    ----------
    dy : array (...), upstream gradient
    cache : GeluCache

    Returns
    -------
    dx : array (...), same shape and dtype as ``dy``
    """
    x, cdf = cache
    xp = get_xp(dy)
    if xp is np and x.size > _BLOCK:
        # CPU only: the same five passes, run block by block so the temporaries stay in the core's
        # cache instead of streaming 3 full-size arrays through memory (2x faster at (1536, 1536));
        # a GPU runs each pass as one kernel, where blocking would only add launches.
        out = np.empty_like(dy)
        xf, cf, df, of = (a.reshape(-1) for a in (np.ascontiguousarray(x), np.ascontiguousarray(cdf),
                                                  np.ascontiguousarray(dy), out))
        for s in range(0, xf.size, _BLOCK):
            e = s + _BLOCK
            _gelu_grad(xf[s:e], cf[s:e], df[s:e], np, out=of[s:e])
        return out
    return _gelu_grad(x, cdf, dy, xp)


def _gelu_grad(x, cdf, dy, xp, out=None):
    """``dy * (Phi(x) + x phi(x))`` on one array (or block)."""
    g = x * x                                              # (...) x², then in place:
    g *= -0.5
    xp.exp(g, out=g)                                       # exp(-x²/2)
    g *= x * _INV_SQRT_2PI                                 # x·phi(x)
    g += cdf                                               # Phi(x) + x·phi(x) = gelu'(x)
    if out is None:
        g *= dy
        return g
    return xp.multiply(g, dy, out=out)
