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
    cdf = erf(x * _INV_SQRT2)                              # (...) erf(x/√2), dtype of x
    cdf += 1.0                                             # in place on the fresh array: fewer
    cdf *= 0.5                                             # temporaries, same maths -> Phi(x)
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
    g = x * x                                              # (...) x², then in place:
    g *= -0.5
    xp.exp(g, out=g)                                       # exp(-x²/2)
    g *= x * _INV_SQRT_2PI                                 # x·phi(x)
    g += cdf                                               # Phi(x) + x·phi(x) = gelu'(x)
    g *= dy
    return g
