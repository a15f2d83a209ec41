"""Thin modules around the op pairs: Linear, Embedding, LayerNorm, GELU, Dropout, ReLU, Tanh, Sigmoid.

Dimension legend: B batch, T word-piece tokens, R image regions, C hidden,
H heads, D head size (C = H·D), K tags, V vocab.

Each module follows the conventions of :mod:`minimner.nn.module`:

* parameter names and layouts are PyTorch's (``weight`` (Out, In), ``bias``),
  so a torch state dict loads by name;
* ``forward(x)`` stores exactly one pending cache; ``backward(dy)`` consumes it
  (calling it without a forward raises), *adds* parameter gradients into
  ``.grad`` and returns ``dx`` (``Embedding.backward`` returns None: ids have no
  gradient).

The maths is in :mod:`minimner.ops`; nothing here computes more than glue.
"""
from __future__ import annotations

from minimner import backend
from minimner.nn import init
from minimner.nn.module import Module, Parameter
from minimner.ops.activations import (relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                                      tanh_backward, tanh_forward)
from minimner.ops.dropout import dropout_backward, dropout_forward
from minimner.ops.embedding import embedding_backward, embedding_forward
from minimner.ops.gelu import gelu_backward, gelu_forward
from minimner.ops.layernorm import layernorm_backward, layernorm_forward
from minimner.ops.linear import linear_backward, linear_forward

__all__ = ["Linear", "Embedding", "LayerNorm", "GELU", "Dropout", "ReLU", "Tanh", "Sigmoid"]


class Linear(Module):
    """``y = x Wᵀ + b`` (PyTorch ``nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, whether to hold a ``bias`` parameter
    rng : numpy/CuPy Generator for the init (default: a fresh unseeded one on the
        current backend). Init as torch: weight and bias ~ U(-1/sqrt(In), 1/sqrt(In)).

    Parameters held: ``weight`` (Out, In) float32, ``bias`` (Out,) float32 or absent.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        g = init.generator(rng)
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = init.fan_in_bound(in_features)
        self.weight = Parameter(init.uniform(g, (out_features, in_features), bound))  # (Out, In)
        self.bias = Parameter(init.uniform(g, (out_features,), bound)) if bias else None  # (Out,)

    def forward(self, x):
        """x (..., In) -> y (..., Out)."""
        y, cache = linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._save_cache(cache)
        return y

    def backward(self, dy, need_dx: bool = True):
        """dy (..., Out) -> dx (..., In) (None when ``need_dx`` is False); adds into ``weight.grad`` / ``bias.grad``."""
        dx, dw, db = linear_backward(dy, self._pop_cache(), need_dx)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Lookup table (PyTorch ``nn.Embedding``).

    Parameters
    ----------
    num_embeddings : int, V
    embedding_dim : int, C
    padding_idx : int or None; that row is initialised to zero and never gets gradient
    rng : Generator for the N(0, 1) init (as torch)

    Parameters held: ``weight`` (V, C) float32.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, rng=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} out of range for {num_embeddings} embeddings")
            padding_idx = padding_idx % num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = int(num_embeddings), int(embedding_dim), padding_idx
        w = init.normal(rng, (num_embeddings, embedding_dim))                       # (V, C) ~ N(0, 1)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(w)

    def forward(self, ids):
        """ids int (...) -> (..., C)."""
        out, cache = embedding_forward(ids, self.weight.data, self.padding_idx)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        """dout (..., C); adds into ``weight.grad``; returns None (ids are not differentiable)."""
        embedding_backward(dout, self._pop_cache(), dweight=self.weight.grad)   # accumulates in place
        return None

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}"


class LayerNorm(Module):
    """Layer normalisation over the last axis (docs/modules.md §1), PyTorch ``nn.LayerNorm``.

    Parameters
    ----------
    normalized_shape : int or 1-tuple, C
    eps : float, inside the square root (BERT: 1e-12)

    Parameters held: ``weight`` (C,) ones, ``bias`` (C,) zeros, float32.
    """

    def __init__(self, normalized_shape, eps: float = 1e-12):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            if len(normalized_shape) != 1:
                raise ValueError(f"LayerNorm normalises the last axis only; got normalized_shape={normalized_shape}")
            normalized_shape = normalized_shape[0]
        C = int(normalized_shape)
        self.normalized_shape, self.eps = (C,), float(eps)
        xp = backend.xp()
        self.weight = Parameter(xp.ones((C,), dtype=backend.DEFAULT_FLOAT))   # (C,) gamma
        self.bias = Parameter(xp.zeros((C,), dtype=backend.DEFAULT_FLOAT))    # (C,) beta

    def forward(self, x):
        """x (..., C) -> (..., C)."""
        y, cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (..., C) -> dx (..., C); adds into ``weight.grad`` / ``bias.grad``."""
        dx, dw, db = layernorm_backward(dy, self._pop_cache())
        self.weight.grad += dw
        self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class _Elementwise(Module):
    """A parameter-free elementwise op: forward/backward straight from an op pair."""

    _fwd = _bwd = None  # set by subclasses (staticmethod)

    def forward(self, x):
        y, cache = type(self)._fwd(x)
        self._save_cache(cache)
        return y

    def backward(self, dy):
        return type(self)._bwd(dy, self._pop_cache())


class GELU(_Elementwise):
    """Exact erf GELU (PyTorch ``nn.GELU(approximate='none')``)."""
    _fwd, _bwd = staticmethod(gelu_forward), staticmethod(gelu_backward)


class ReLU(_Elementwise):
    """``max(x, 0)``."""
    _fwd, _bwd = staticmethod(relu_forward), staticmethod(relu_backward)


class Tanh(_Elementwise):
    """``tanh(x)``."""
    _fwd, _bwd = staticmethod(tanh_forward), staticmethod(tanh_backward)


class Sigmoid(_Elementwise):
    """Stable logistic sigmoid."""
    _fwd, _bwd = staticmethod(sigmoid_forward), staticmethod(sigmoid_backward)


class Dropout(Module):
    """Inverted dropout with its own generator; the identity in ``eval()`` mode.

    Parameters
    ----------
    p : float in [0, 1], drop probability
    rng : Generator the masks are drawn from (default: a fresh unseeded one on the
        current backend). Reusing a seed reproduces the masks.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = init.generator(rng)

    def forward(self, x):
        """x (...) -> (...); draws a fresh mask on every training-mode call."""
        y, cache = dropout_forward(x, self.p, self.rng, self.training)
        self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (...) -> dx (...), through the mask of the last forward."""
        return dropout_backward(dy, self._pop_cache())

    def extra_repr(self) -> str:
        return f"p={self.p}"
