"""GELU, the exact erf form used by BERT (SPEC §4.2; not the tanh approximation).

    gelu(x)  = x * Phi(x),      Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))   (standard normal CDF)
    gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)  (standard normal PDF)

Elementwise, so shapes are free: ``...`` is any shape (typically (B, T, 4C)).
erf comes from :func:`minimner.backend.erf` (CuPy's kernel on GPU, the fdlibm
rational approximation of :mod:`minimner._erf` on CPU).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from minimner.backend import erf, get_xp

__all__ = ["GeluCache", "gelu_forward", "gelu_backward"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GeluCache(NamedTuple):
    x: object    # (...) stored: needed for the x * phi(x) term
    cdf: object  # (...) stored Phi(x): recomputing it would cost a second erf


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
    cdf = 0.5 * (1.0 + erf(x * _INV_SQRT2))                # (...) Phi(x), dtype of x
    return x * cdf, GeluCache(x, cdf)


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
    pdf = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI             # (...) phi(x)
    return dy * (cdf + x * pdf)
