"""Modules for the semantic-augmentation fusion variants of docs/augmentation.md §3.

==========  ===========================  ========================  ===============================
mode        original flags               where                     parameters (original names)
==========  ===========================  ========================  ===============================
``add``     aug_before=1, aug_gate=1     after BERT (default)      ``maug_linear.weight/.bias``
``gate``    aug_before=1, aug_gate=0     after BERT                ``aug_w1``, ``aug_w2``,
                                                                   ``aug_bias``, ``maug_linear.*``
``embed``   aug_before=0                 inside BERT's embeddings  ``bert.embeddings.aug_linear.*``
``none``    aug_before=2                 nowhere                   (none)
==========  ===========================  ========================  ===============================

The post-BERT modules (:class:`AugmentAdd`, :class:`AugmentGate`,
:class:`AugmentNone`) take ``forward(s0, aug) -> S`` and ``backward(dS) -> (dS⁰,
daug)``. The model applies ``drop_0.1`` to S afterwards (docs/augmentation.md §3). Their
parameter leaves carry the original names: a model that holds the fusion as
``self.augment`` exposes ``augment.maug_linear.weight`` and ``augment.aug_w1``,
and a converter maps the original top-level keys with a one-line rename
(``^(maug_linear|aug_w1|aug_w2|aug_bias)`` → ``augment.\\1``).

**The embeddings hook (mode ``embed``).** :class:`EmbeddingAugment` is a
``Linear(E, C)`` whose forward returns the *term* ``a W_eaᵀ + b_ea`` (B, T, C) that
BERT's embedding layer adds to its sum before LayerNorm. BERT's embeddings hold it
as the attribute ``aug_linear``, which yields exactly the original keys
``bert.embeddings.aug_linear.weight`` / ``.bias``. The hook as
:class:`minimner.models.bert.BertEmbeddings` implements it::

    # attach_augment(aug_dim, rng), called after the pretrained weights are loaded:
    self.aug_linear = EmbeddingAugment(aug_dim, C, rng)     # None until then
    # forward(ids, token_type_ids, aug=None):
    e = word + position + token_type                        # (B, T, C)
    if self.aug_linear is not None:
        e = e + self.aug_linear(aug)                        # (B, T, E) -> (B, T, C)
    out = dropout(layernorm(e))
    # backward(dout):
    de = layernorm.backward(dropout.backward(dout))         # (B, T, C)
    daug = self.aug_linear.backward(de)                     # (B, T, E); adds into weight/bias grads
    ...                                                     # then the embedding tables, as before

With mode ``embed`` there is no post-BERT fusion (:func:`make_augment_fusion` gives
:class:`AugmentNone`; :class:`minimner.models.text_crf.TextCRFTagger` holds none).

Dimension legend: B batch, T word-piece tokens, C hidden, E augmentation vector size.
"""
from __future__ import annotations

import math

from minimner.nn import init
from minimner.nn.layers import Linear
from minimner.nn.module import Module, Parameter
from minimner.ops.augment import aug_add_backward, aug_add_forward, aug_gate_backward, aug_gate_forward

__all__ = ["AUG_MODES", "mode_from_flags", "flags_from_mode", "AugmentAdd", "AugmentGate", "AugmentNone",
           "EmbeddingAugment", "make_augment_fusion"]

#: The fusion variants, selectable from the CLI (``--aug``).
AUG_MODES = ("add", "gate", "embed", "none")


def mode_from_flags(aug_before: int, aug_gate: int = 1) -> str:
    """The mode for the original ``config.py`` flags (docs/augmentation.md §3; note their inverted meaning).

    ``aug_before = 0`` → ``embed``; ``aug_before = 1`` → ``add`` if ``aug_gate = 1``
    else ``gate``; any other ``aug_before`` → ``none``.
    """
    if aug_before == 0:
        return "embed"
    if aug_before == 1:
        return "add" if aug_gate == 1 else "gate"
    return "none"


def flags_from_mode(mode: str) -> tuple[int, int]:
    """``(aug_before, aug_gate)`` of a mode (inverse of :func:`mode_from_flags`)."""
    table = {"add": (1, 1), "gate": (1, 0), "embed": (0, 1), "none": (2, 1)}
    if mode not in table:
        raise ValueError(f"unknown augmentation mode {mode!r}; expected one of {', '.join(AUG_MODES)}")
    return table[mode]


class AugmentAdd(Module):
    """``S = S⁰ + maug_linear(aug)`` (docs/augmentation.md §3 default).

    Parameters
    ----------
    aug_dim : int, E
    hidden : int, C
    rng : Generator for the init (PyTorch default for ``maug_linear``: U(±1/√E))

    Parameters held: ``maug_linear.weight`` (C, E), ``maug_linear.bias`` (C,), float32.
    """

    mode = "add"

    def __init__(self, aug_dim: int, hidden: int, rng=None):
        super().__init__()
        self.maug_linear = Linear(aug_dim, hidden, rng=rng)

    def forward(self, s0, aug):
        """s0 (B, T, C), aug (B, T, E) -> S (B, T, C)."""
        lin = self.maug_linear
        s, cache = aug_add_forward(s0, aug, lin.weight.data, lin.bias.data)
        self._save_cache(cache)
        return s

    def backward(self, ds):
        """ds (B, T, C) -> (ds0 (B, T, C), daug (B, T, E)); adds into ``maug_linear`` grads."""
        ds0, daug, dw, db = aug_add_backward(ds, self._pop_cache())
        self.maug_linear.weight.grad += dw
        self.maug_linear.bias.grad += db
        return ds0, daug


class AugmentGate(Module):
    """``S = g ⊙ S⁰ + (1 − g) ⊙ N``, ``g = σ(S⁰ W_1ᵀ + N W_2ᵀ + b_g)``, ``N = maug_linear(aug)``.

    Parameters
    ----------
    aug_dim : int, E
    hidden : int, C
    rng : Generator for the init: ``aug_w1``, ``aug_w2``, ``aug_bias`` ~ U(±1/√C)
        (the original ``reset_parameters``), ``maug_linear`` as PyTorch's default.

    Parameters held (in the original key order): ``aug_w1`` (C, C), ``aug_w2`` (C, C),
    ``aug_bias`` (C,), ``maug_linear.weight`` (C, E), ``maug_linear.bias`` (C,), float32.
    """

    mode = "gate"

    def __init__(self, aug_dim: int, hidden: int, rng=None):
        super().__init__()
        bound = 1.0 / math.sqrt(hidden)
        self.aug_w1 = Parameter(init.uniform(rng, (hidden, hidden), bound))     # (C, C)
        self.aug_w2 = Parameter(init.uniform(rng, (hidden, hidden), bound))     # (C, C)
        self.aug_bias = Parameter(init.uniform(rng, (hidden,), bound))          # (C,)
        self.maug_linear = Linear(aug_dim, hidden, rng=rng)

    def forward(self, s0, aug):
        """s0 (B, T, C), aug (B, T, E) -> S (B, T, C)."""
        lin = self.maug_linear
        s, cache = aug_gate_forward(s0, aug, lin.weight.data, lin.bias.data, self.aug_w1.data, self.aug_w2.data,
                                    self.aug_bias.data)
        self._save_cache(cache)
        return s

    def backward(self, ds):
        """ds (B, T, C) -> (ds0 (B, T, C), daug (B, T, E)); adds into every parameter's grad."""
        ds0, daug, dw, db, dw1, dw2, dgb = aug_gate_backward(ds, self._pop_cache())
        self.maug_linear.weight.grad += dw
        self.maug_linear.bias.grad += db
        self.aug_w1.grad += dw1
        self.aug_w2.grad += dw2
        self.aug_bias.grad += dgb
        return ds0, daug


class AugmentNone(Module):
    """No augmentation after BERT: ``S = S⁰`` (modes ``none`` and ``embed``). No parameters."""

    mode = "none"

    def forward(self, s0, aug=None):
        """s0 (B, T, C) -> s0 (the augmentation input is ignored)."""
        self._save_cache(True)
        return s0

    def backward(self, ds):
        """ds (B, T, C) -> (ds, None): the augmentation input gets no gradient."""
        self._pop_cache()
        return ds, None


class EmbeddingAugment(Linear):
    """``bert.embeddings.aug_linear``: returns the term ``a W_eaᵀ + b_ea`` added before LayerNorm.

    A :class:`~minimner.nn.layers.Linear` (E -> C) with BERT's init (weight
    N(0, 0.02), bias 0; docs/training.md §1). See the module docstring for the hook in
    BERT's embeddings.

    Parameters held: ``weight`` (C, E), ``bias`` (C,), float32.
    """

    mode = "embed"

    def __init__(self, aug_dim: int, hidden: int, rng=None, initializer_range: float = 0.02):
        super().__init__(aug_dim, hidden, rng=rng)
        self.weight.data = init.normal(rng, (hidden, aug_dim), initializer_range)      # (C, E)
        self.bias.data = init.zeros(self.weight.data, (hidden,))                        # (C,)


def make_augment_fusion(mode: str, aug_dim: int, hidden: int, rng=None) -> Module:
    """The post-BERT fusion module for ``mode`` (``embed`` and ``none`` give :class:`AugmentNone`).

    Raises
    ------
    ValueError for an unknown mode.
    """
    if mode == "add":
        return AugmentAdd(aug_dim, hidden, rng)
    if mode == "gate":
        return AugmentGate(aug_dim, hidden, rng)
    if mode in ("embed", "none"):
        return AugmentNone()
    raise ValueError(f"unknown augmentation mode {mode!r}; expected one of {', '.join(AUG_MODES)}")
