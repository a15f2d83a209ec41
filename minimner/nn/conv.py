"""Thin modules for vision: Conv2d, BatchNorm2d, MaxPool2d (PyTorch names and layouts).

Dimension legend: B batch, C input channels, O output channels, Hi×Wi input and
Ho×Wo output height/width, kh×kw kernel. Arrays are NCHW float32.

Conventions (see :mod:`minimner.nn.module`): parameter and buffer names are
PyTorch's (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), so a torchvision state dict loads by name. ``forward``
stores one pending cache and ``backward`` consumes it, *adds* parameter gradients
into ``.grad`` and returns the input gradient.

``forward(x, keep_cache=False)`` is the inference path: the same maths, but no
cache is kept (so a frozen 152-layer encoder does not hold every im2col buffer),
and a following ``backward`` raises. The maths lives in :mod:`minimner.ops`.
"""
from __future__ import annotations

import numpy as np

from minimner import backend
from minimner.nn import init as init_
from minimner.nn.module import Module, Parameter
from minimner.ops.batchnorm2d import (BatchNormEvalCache, batchnorm2d_eval_backward, batchnorm2d_eval_forward,
                                      batchnorm2d_train_backward, batchnorm2d_train_forward,
                                      batchnorm2d_update_running)
from minimner.ops.conv2d import conv2d_backward, conv2d_forward
from minimner.ops.pool import maxpool2d_backward, maxpool2d_forward

__all__ = ["Conv2d", "BatchNorm2d", "MaxPool2d"]


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(e) for e in v)


class Conv2d(Module):
    """2-D convolution (PyTorch ``nn.Conv2d`` without groups/dilation).

    Parameters
    ----------
    in_channels, out_channels : int, C and O
    kernel_size, stride, padding : int or (int, int)
    bias : bool (torch's default True; ResNet convolutions use False)
    rng : Generator for the init (default: fresh, unseeded, current backend).
        Init as torch: weight and bias ~ U(−1/√fan_in, 1/√fan_in), fan_in = C·kh·kw.
    init : bool, False leaves zeros (cheap, when weights are loaded over them anyway)

    Parameters held: ``weight`` (O, C, kh, kw) float32, ``bias`` (O,) or absent.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 init=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        kh, kw = self.kernel_size
        bound = init_.fan_in_bound(in_channels * kh * kw)
        f32, shape = backend.DEFAULT_FLOAT, (out_channels, in_channels, kh, kw)
        if init:
            g = init_.generator(rng)
            w = init_.uniform_float32(g, shape, bound)                              # (O, C, kh, kw)
            b = init_.uniform_float32(g, (out_channels,), bound)                    # (O,)
        else:
            w, b = backend.xp().zeros(shape, dtype=f32), backend.xp().zeros((out_channels,), dtype=f32)
        self.weight = Parameter(w)
        self.bias = Parameter(b) if bias else None
        #: ``(weight, bias)`` with a following eval-mode BN merged in, set by ResNet.fold_bn(); not state.
        self.folded = None

    def forward(self, x, keep_cache=True):
        """x (B, C, Hi, Wi) -> (B, O, Ho, Wo)."""
        y, cache = conv2d_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                  self.stride, self.padding)
        if keep_cache:
            self._save_cache(cache)
        return y

    def forward_folded(self, x):
        """Inference with the folded (conv ∘ BN) weights from :attr:`folded`, no cache.

        x is in the GEMM-native CNHW layout (C, B, Hi, Wi) -> (O, B, Ho, Wo) (see
        :mod:`minimner.ops.conv2d`); the model swaps axes once at each end.
        """
        if self.folded is None:
            raise RuntimeError("Conv2d.forward_folded: no folded weights (call fold_bn() on the model first)")
        return conv2d_forward(x, self.folded[0], self.folded[1], self.stride, self.padding, layout="CNHW")[0]

    def backward(self, dy):
        """dy (B, O, Ho, Wo) -> dx (B, C, Hi, Wi); adds into ``weight.grad`` / ``bias.grad``."""
        dx, dw, db = conv2d_backward(dy, self._pop_cache())
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class BatchNorm2d(Module):
    """Batch normalisation over (B, Hi, Wi) per channel (PyTorch ``nn.BatchNorm2d``).

    Train mode (``module.train()``) normalises with the batch statistics and
    updates the running statistics (momentum, unbiased variance, and
    ``num_batches_tracked += 1``, as torch); eval mode uses the running statistics.

    Parameters
    ----------
    num_features : int, C
    eps : float (torch default 1e-5)
    momentum : float (torch default 0.1)

    Parameters held: ``weight`` (C,) ones, ``bias`` (C,) zeros. Buffers:
    ``running_mean`` (C,) zeros, ``running_var`` (C,) ones, ``num_batches_tracked``
    () int64 (it is part of torchvision state dicts; older checkpoints lack it).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        xp = backend.xp()
        C = int(num_features)
        self.num_features, self.eps, self.momentum = C, float(eps), float(momentum)
        self.weight = Parameter(xp.ones((C,), dtype=backend.DEFAULT_FLOAT))   # (C,) gamma
        self.bias = Parameter(xp.zeros((C,), dtype=backend.DEFAULT_FLOAT))    # (C,) beta
        self.register_buffer("running_mean", xp.zeros((C,), dtype=backend.DEFAULT_FLOAT))  # (C,)
        self.register_buffer("running_var", xp.ones((C,), dtype=backend.DEFAULT_FLOAT))    # (C,)
        self.register_buffer("num_batches_tracked", xp.zeros((), dtype=np.int64))          # ()

    def forward(self, x, keep_cache=True):
        """x (B, C, Hi, Wi) -> (B, C, Hi, Wi); in train mode also updates the running statistics."""
        if self.training:
            y, cache = batchnorm2d_train_forward(x, self.weight.data, self.bias.data, self.eps)
            mean, var = batchnorm2d_update_running(self.running_mean, self.running_var, cache, self.momentum)
            # object.__setattr__: plain assignment would unregister the buffer (Module.__setattr__)
            object.__setattr__(self, "running_mean", mean)
            object.__setattr__(self, "running_var", var)
            object.__setattr__(self, "num_batches_tracked", self.num_batches_tracked + 1)
        else:
            y, cache = batchnorm2d_eval_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                                self.running_var, self.eps)
        if keep_cache:
            self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (B, C, Hi, Wi) -> dx; adds into ``weight.grad`` / ``bias.grad`` (mode of the forward call)."""
        cache = self._pop_cache()
        bwd = batchnorm2d_eval_backward if isinstance(cache, BatchNormEvalCache) else batchnorm2d_train_backward
        dx, dgamma, dbeta = bwd(dy, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class MaxPool2d(Module):
    """Max pooling (PyTorch ``nn.MaxPool2d``, floor mode); ties go to the first maximum in row-major order."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)

    def forward(self, x, keep_cache=True):
        """x (B, C, Hi, Wi) -> (B, C, Ho, Wo)."""
        y, cache = maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        if keep_cache:
            self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (B, C, Ho, Wo) -> dx (B, C, Hi, Wi)."""
        return maxpool2d_backward(dy, self._pop_cache())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
