"""2-D batch normalisation (PyTorch ``nn.BatchNorm2d``), train and eval mode, and conv folding.

Dimension legend: B batch, C channels, Hi×Wi spatial size, M = B·Hi·Wi the number of values
each channel is normalised over. Statistics are per channel, broadcast as (1, C, 1, 1).

Eval mode uses the stored running statistics, so it is an affine map per channel::

    y = (x − μ_run) / √(σ²_run + ε) · γ + β  =  x · a + t,
    a = γ / √(σ²_run + ε),   t = β − μ_run · a
    dx = dy · a,   dγ = Σ dy · x̂,   dβ = Σ dy       (x̂ = (x − μ_run) / √(σ²_run + ε); Σ over B, Hi, Wi)

Train mode normalises with the batch's own statistics (biased variance), which
couples all M values of a channel::

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / √(σ² + ε),  y = γ x̂ + β
    dx̂ = dy · γ
    dx = (1 / √(σ² + ε)) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))     (means over B, Hi, Wi)

and PyTorch's running-statistics update (momentum m, *unbiased* variance)::

    μ_run ← (1 − m) μ_run + m μ,   σ²_run ← (1 − m) σ²_run + m σ² · M / (M − 1)

Folding: an eval-mode BN after a convolution is itself a per-output-channel affine
map, so it can be merged into the convolution's weight and bias once, ahead of time
(:func:`fold_batchnorm`): ``w' = w · a[o]``, ``b' = (b − μ_run) · a + β``.
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp

__all__ = ["BatchNormEvalCache", "BatchNormTrainCache", "batchnorm2d_eval_forward", "batchnorm2d_eval_backward",
           "batchnorm2d_train_forward", "batchnorm2d_train_backward", "batchnorm2d_update_running",
           "fold_batchnorm"]


def _check(x, gamma, beta, *stats):
    C = gamma.shape[0] if gamma.ndim == 1 else None
    if x.ndim != 4 or C is None or x.shape[1] != C or any(tuple(a.shape) != (C,) for a in (beta, *stats)):
        raise ValueError(f"batchnorm2d: expected x (B, C, H, W) and per-channel (C,) parameters, got x "
                         f"{tuple(x.shape)}, " + ", ".join(str(tuple(a.shape)) for a in (gamma, beta, *stats)))
    if x.dtype != gamma.dtype:
        raise ValueError(f"batchnorm2d: x is {x.dtype} but the parameters are {gamma.dtype}")


# --------------------------------------------------------------------------------- eval mode
class BatchNormEvalCache(NamedTuple):
    x: object           # (B, C, Hi, Wi) stored (a reference to the input): x̂ for dγ is recomputed from it
    mean: object        # (C,) running mean
    inv_std: object     # (C,) 1 / √(σ²_run + ε)
    gamma: object       # (C,)


def batchnorm2d_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Eval-mode BN: ``y = (x − μ_run) / √(σ²_run + ε) · γ + β`` per channel.

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float
    gamma, beta, running_mean, running_var : arrays (C,), dtype of ``x``
    eps : float (PyTorch's default 1e-5; take it from the checkpoint's model)

    Returns
    -------
    y : array (B, C, Hi, Wi), dtype of ``x``
    cache : BatchNormEvalCache
    """
    _check(x, gamma, beta, running_mean, running_var)
    xp = get_xp(x)
    inv_std = 1 / xp.sqrt(running_var + x.dtype.type(eps))  # (C,)
    a = gamma * inv_std                                    # (C,) the per-channel scale
    t = beta - running_mean * a                            # (C,) the per-channel shift
    y = x * a[:, None, None]                               # (B, C, Hi, Wi) * (C, 1, 1)
    y += t[:, None, None]                                  # (B, C, Hi, Wi) + (C, 1, 1), in place on the fresh y
    return y, BatchNormEvalCache(x, running_mean, inv_std, gamma)


def batchnorm2d_eval_backward(dy, cache):
    """Gradients of :func:`batchnorm2d_eval_forward` (the running statistics are constants).

    Returns
    -------
    dx : array (B, C, Hi, Wi)
    dgamma, dbeta : arrays (C,)
    """
    x, mean, inv_std, gamma = cache
    xhat = (x - mean[:, None, None]) * inv_std[:, None, None]  # (B, C, Hi, Wi), recomputed
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))               # (C,): y = γ x̂ + β
    dbeta = dy.sum(axis=(0, 2, 3))                         # (C,)
    dx = dy * (gamma * inv_std)[:, None, None]             # (B, C, Hi, Wi): y = x · a + t
    return dx, dgamma, dbeta


# -------------------------------------------------------------------------------- train mode
class BatchNormTrainCache(NamedTuple):
    xhat: object        # (B, C, Hi, Wi) stored: the normalised input, used by every gradient
    inv_std: object     # (C,) 1 / √(σ² + ε) of the batch
    gamma: object       # (C,)
    mean: object        # (C,) batch mean (for the running update, not for backward)
    var: object         # (C,) biased batch variance (for the running update)
    count: int          # M = B·Hi·Wi values per channel


def batchnorm2d_train_forward(x, gamma, beta, eps=1e-5):
    """Train-mode BN: normalise each channel with the batch's mean and biased variance.

    Parameters
    ----------
    x : array (B, C, Hi, Wi), float, with B·Hi·Wi > 1
    gamma, beta : arrays (C,), dtype of ``x``
    eps : float

    Returns
    -------
    y : array (B, C, Hi, Wi), dtype of ``x``
    cache : BatchNormTrainCache (also carries the batch statistics for
        :func:`batchnorm2d_update_running`)

    Raises
    ------
    ValueError
        when a channel has a single value (B·Hi·Wi = 1): its variance is undefined,
        as in PyTorch.
    """
    _check(x, gamma, beta)
    xp = get_xp(x)
    B, C, Hi, Wi = x.shape
    M = B * Hi * Wi
    if M < 2:
        raise ValueError(f"batchnorm2d_train_forward: need more than 1 value per channel, got x {tuple(x.shape)}")
    mean = x.mean(axis=(0, 2, 3))                          # (C,)
    xc = x - mean[:, None, None]                           # (B, C, Hi, Wi) centred
    var = (xc * xc).mean(axis=(0, 2, 3))                   # (C,) biased: divides by M
    inv_std = 1 / xp.sqrt(var + x.dtype.type(eps))         # (C,)
    xhat = xc * inv_std[:, None, None]                     # (B, C, Hi, Wi)
    y = xhat * gamma[:, None, None] + beta[:, None, None]  # (B, C, Hi, Wi)
    return y, BatchNormTrainCache(xhat, inv_std, gamma, mean, var, M)


def batchnorm2d_train_backward(dy, cache):
    """Gradients of :func:`batchnorm2d_train_forward` (through the batch statistics).

    Returns
    -------
    dx : array (B, C, Hi, Wi)
    dgamma, dbeta : arrays (C,)
    """
    xhat, inv_std, gamma, _, _, _ = cache
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))               # (C,): y = γ x̂ + β
    dbeta = dy.sum(axis=(0, 2, 3))                         # (C,)
    dxhat = dy * gamma[:, None, None]                      # (B, C, Hi, Wi)
    # x̂ = (x − μ)/σ depends on x directly and through μ and σ: the two mean terms are those paths
    mean_dxhat = dxhat.mean(axis=(0, 2, 3))                # (C,)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=(0, 2, 3))  # (C,)
    dx = (dxhat - mean_dxhat[:, None, None] - xhat * mean_dxhat_xhat[:, None, None]) * inv_std[:, None, None]
    return dx, dgamma, dbeta                               # dx: (B, C, Hi, Wi)


def batchnorm2d_update_running(running_mean, running_var, cache, momentum=0.1):
    """PyTorch's running-statistics update after a train-mode forward; returns new arrays.

    ``μ_run ← (1 − m) μ_run + m μ`` and ``σ²_run ← (1 − m) σ²_run + m σ² M/(M − 1)``
    (the stored variance is the unbiased estimate, the normalisation used the biased one).

    Returns
    -------
    new_mean, new_var : arrays (C,), dtype of ``running_mean``
    """
    m = running_mean.dtype.type(momentum)
    unbiased = cache.var * running_var.dtype.type(cache.count / (cache.count - 1))  # (C,)
    return (1 - m) * running_mean + m * cache.mean, (1 - m) * running_var + m * unbiased


# ----------------------------------------------------------------------------------- folding
def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    """Merge an eval-mode BN that follows a convolution into the convolution.

    ``BN(conv(x; w, b)) = conv(x; w', b')`` with ``a = γ / √(σ²_run + ε)``,
    ``w'[o] = w[o] · a[o]`` and ``b' = (b − μ_run) · a + β``. The folded conv gives
    the same output up to float32 rounding (one multiply fewer per value).

    Parameters
    ----------
    weight : array (O, C, kh, kw)
    bias : array (O,) or None (treated as zeros)
    gamma, beta, running_mean, running_var : arrays (O,)
    eps : float

    Returns
    -------
    weight_folded : array (O, C, kh, kw), new array, dtype of ``weight``
    bias_folded : array (O,)
    """
    xp = get_xp(weight)
    if weight.ndim != 4 or any(tuple(a.shape) != (weight.shape[0],) for a in (gamma, beta, running_mean, running_var)):
        raise ValueError(f"fold_batchnorm: weight {tuple(weight.shape)} needs (O,) BN parameters, got "
                         + ", ".join(str(tuple(a.shape)) for a in (gamma, beta, running_mean, running_var)))
    a = gamma / xp.sqrt(running_var + weight.dtype.type(eps))  # (O,)
    b = bias if bias is not None else xp.zeros_like(running_mean)  # (O,)
    return weight * a[:, None, None, None], (b - running_mean) * a + beta
