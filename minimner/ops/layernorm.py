"""Layer normalisation over the last axis (SPEC §4.1, TF/BERT style).

    mu   = mean(x)                       over the last axis (size C)
    var  = mean((x - mu)^2)              biased variance (divide by C, not C - 1)
    rstd = 1 / sqrt(var + eps)           eps *inside* the square root (BERT: 1e-12)
    xhat = (x - mu) * rstd
    y    = weight * xhat + bias

Dimension legend: B batch, T word-piece tokens, R image regions, C hidden,
H heads, D head size (C = H·D), K tags, V vocab. ``...`` is any leading dims.

Backward (one row, g = dy * weight is the gradient reaching xhat)::

    dbias   = Σ_rows dy
    dweight = Σ_rows dy * xhat
    dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))

The last line is the whole Jacobian of xhat(x) applied to g: the ``mean(g)``
term comes from mu depending on every x_j, the ``xhat * mean(g * xhat)`` term
from var depending on every x_j (see tutorials/01_layernorm.ipynb).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["LayerNormCache", "layernorm_forward", "layernorm_backward"]


class LayerNormCache(NamedTuple):
    xhat: object    # (..., C) stored: used by dweight and by the variance term of dx
    rstd: object    # (..., 1) stored: 1/sqrt(var + eps); recomputing it would need x and a second pass
    weight: object  # (C,) stored reference: g = dy * weight


def layernorm_forward(x, weight, bias, eps):
    """Normalise each row of ``x`` over its last axis, then scale and shift.

    Parameters
    ----------
    x : array (..., C), float
    weight : array (C,), same dtype (gamma; PyTorch ``LayerNorm.weight``)
    bias : array (C,), same dtype (beta; PyTorch ``LayerNorm.bias``)
    eps : float, added to the biased variance inside the square root

    Returns
    -------
    y : array (..., C), dtype of ``x``
    cache : LayerNormCache

    Raises
    ------
    ValueError
        if ``weight`` / ``bias`` are not of shape (C,).
    """
    C = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if tuple(p.shape) != (C,):
            raise ValueError(f"layernorm_forward: {name} has shape {tuple(p.shape)}, expected ({C},) "
                             f"for x of shape {tuple(x.shape)}")
    xp = get_xp(x)
    mu = xp.mean(x, axis=-1, keepdims=True)                # (..., C) -> (..., 1)
    xc = x - mu                                            # (..., C) centred
    var = xp.mean(xc * xc, axis=-1, keepdims=True)         # (..., C) -> (..., 1) biased variance
    rstd = 1.0 / xp.sqrt(var + x.dtype.type(eps))          # (..., 1) eps in the data dtype
    xhat = xc * rstd                                       # (..., C) zero mean, unit variance rows
    y = xhat * weight + bias                               # (..., C) * (C,) + (C,) -> (..., C)
    return y, LayerNormCache(xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """Gradients of :func:`layernorm_forward`.

    Parameters
    ----------
    dy : array (..., C), upstream gradient dL/dy
    cache : LayerNormCache

    Returns
    -------
    dx : array (..., C)
    dweight : array (C,)
    dbias : array (C,)
    """
    xhat, rstd, weight = cache
    xp = get_xp(dy)
    C = dy.shape[-1]
    # y = xhat * weight + bias: the parameter gradients sum over every leading row.
    dbias = xp.sum(dy.reshape(-1, C), axis=0)              # (N, C) -> (C,)
    dweight = xp.sum((dy * xhat).reshape(-1, C), axis=0)  # (N, C) -> (C,)
    # xhat = (x - mu) * rstd: push g = dL/dxhat through the normalisation.
    g = dy * weight                                        # (..., C) dL/dxhat
    g_mean = xp.mean(g, axis=-1, keepdims=True)            # (..., 1) from d mu / dx
    gx_mean = xp.mean(g * xhat, axis=-1, keepdims=True)    # (..., 1) from d var / dx
    dx = rstd * (g - g_mean - xhat * gx_mean)              # (..., C)
    return dx, dweight, dbias
