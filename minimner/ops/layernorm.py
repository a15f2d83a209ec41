"""Layer normalisation over the last axis (docs/modules.md §1, TF/BERT style).

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
    x2 = x.reshape(-1, C)                                  # (..., C) -> (N, C) rows
    avg = xp.full((C,), 1.0 / C, dtype=x.dtype)            # (C,) averaging vector
    # Row means as matrix-vector products: NumPy's mean over a short last axis pays a
    # per-row overhead (measured 8x slower than the BLAS gemv at (1536, 384)).
    mu = x2 @ avg                                          # (N, C) @ (C,) -> (N,)
    xhat = x2 - mu[:, None]                                # (N, C) centred (a fresh array, normalised in place below)
    var = xp.einsum("nc,nc->n", xhat, xhat) / x.dtype.type(C)  # (N,) biased variance, no (N, C) temporary
    rstd = 1.0 / xp.sqrt(var + x.dtype.type(eps))          # (N,) eps in the data dtype
    xhat *= rstd[:, None]                                  # (N, C) zero mean, unit variance rows
    y = xhat * weight                                      # (N, C) * (C,)
    y += bias                                              #        + (C,)
    shape = x.shape
    y = y.reshape(shape)                                   # (N, C) -> (..., C)
    xhat = xhat.reshape(shape)                             # (N, C) -> (..., C)
    rstd = rstd.reshape(shape[:-1] + (1,))                 # (N,) -> (..., 1)
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
    g = (dy * weight).reshape(-1, C)                       # (N, C) dL/dxhat
    xh2 = xhat.reshape(-1, C)                              # (N, C)
    avg = xp.full((C,), 1.0 / C, dtype=dy.dtype)           # (C,) averaging vector (gemv: see forward)
    g_mean = g @ avg                                       # (N,) from d mu / dx
    gx_mean = xp.einsum("nc,nc->n", g, xh2) / dy.dtype.type(C)  # (N,) from d var / dx
    g -= g_mean[:, None]                                   # (N, C) in place: g − mean(g)
    g -= xh2 * gx_mean[:, None]                            #          − xhat · mean(g · xhat)
    g *= rstd.reshape(-1, 1)                               #          · rstd
    dx = g.reshape(dy.shape)                               # (N, C) -> (..., C)
    return dx, dweight, dbias
