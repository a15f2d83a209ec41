"""BERT (Devlin et al. 2019) composed from minimner layers, with a hand-written backward pass.

docs/modules.md §6 (bert-base-cased as used by MSCMT); the names of every parameter are
those of ``transformers.BertModel``, so a Hugging Face checkpoint loads by name::

    E   = word_emb[ids] + pos_emb[0..T-1] + type_emb[token_type_ids]      embeddings.*
  ( E  ← char_cnn_linear(drop([E; CharCNN(c)]))   only with the char hook  embeddings.char_cnn_model.*,
                                                                          embeddings.char_cnn_linear.* )
  ( E  ← E + a W_eaᵀ + b_ea     only with the augmentation hook          embeddings.aug_linear.* )
    X_0 = drop(LN(E))
    X_l = BertLayer_l(X_{l-1}; mask)            l = 1..L                  encoder.layer.{l-1}.*
    pooled = tanh(X_L[:, 0] W_pᵀ + b_p)                                   pooler.dense.*

Backward mirrors forward: the encoder's backward, then the embeddings' (dropout →
LayerNorm [→ aug term → char branch] → the three lookups; the word row ``pad_token_id`` gets no gradient,
position gradients are summed over the batch first). The pooler sits outside the
main path: :meth:`BertModel.pooled` / :meth:`BertModel.pool_backward` are a
separate pair whose gradient the caller adds to ``d_last_hidden``.

**Semantic augmentation inside the embeddings** (docs/augmentation.md §3, mode ``embed``,
original flag ``aug_before = 0``): :meth:`BertEmbeddings.attach_augment` adds the
sub-module ``aug_linear`` (an :class:`~minimner.nn.augment.EmbeddingAugment`,
E → C), whose term ``a W_eaᵀ + b_ea`` joins the embedding sum before LayerNorm.
:meth:`BertModel.forward` then takes the per-position augmentation input ``aug``
(B, T, E) and :meth:`BertModel.backward` returns its gradient. Without the hook
(every Hugging Face checkpoint) nothing changes: no extra parameters, ``aug`` must
be None and backward returns None.

**The char-CNN inside the embeddings** (docs/modules.md §8, original flag ``use_char_cnn = 0``):
:meth:`BertEmbeddings.attach_char_cnn` adds ``char_cnn_model`` (a
:class:`~minimner.nn.charcnn.CharCNN`, (B, T, Lw) char ids → (B, T, C)) and
``char_cnn_linear`` (Linear 2C → C). The word + position + type sum is then
concatenated with the char vector, dropped out (p = ``hidden_dropout_prob``) and
projected back to C, *before* the augmentation term is added (the original's
order). :meth:`BertModel.forward` takes ``char_ids`` (B, T, Lw) int; they have no
gradient, so backward's return value is unchanged.

Dimension legend: B batch, T word-piece tokens, C hidden (``hidden_size``), H heads,
D head size (C = H·D), F feed-forward size, V vocab, P max positions, E augmentation
vector size, Lw characters per word, Vc character vocabulary.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.files import expected_shapes
from minimner.models import bert_source
from minimner.nn.attention import BertEncoder
from minimner.nn.augment import EmbeddingAugment
from minimner.nn import init
from minimner.nn.charcnn import CharCNN
from minimner.nn.layers import Dropout, Embedding, LayerNorm, Linear, Tanh
from minimner.nn.module import Module

__all__ = ["BertConfig", "BertEmbeddings", "BertPooler", "BertModel"]



def bert_init_(modules, rng, std: float = 0.02) -> None:
    """BERT's ``init_bert_weights`` on every module under ``modules`` (in place, ``named_modules`` order).

    Linear / Embedding weights N(0, std²) (:func:`minimner.nn.init.normal`), Linear biases 0, an
    Embedding's padding row 0, LayerNorm weight 1 and bias 0.
    """
    for m in (m for part in modules for _, m in part.named_modules()):
        if isinstance(m, (Linear, Embedding)):
            w = m.weight.data
            w[...] = init.normal(rng, w.shape, std, dtype=w.dtype)
            if isinstance(m, Linear) and m.bias is not None:
                m.bias.data[...] = 0
            if isinstance(m, Embedding) and m.padding_idx is not None:
                w[m.padding_idx] = 0
        elif isinstance(m, LayerNorm):
            m.weight.data[...] = 1
            m.bias.data[...] = 0

@dataclass
class BertConfig:
    """The architecture fields of a Hugging Face BERT ``config.json``.

    Defaults are bert-base's; :meth:`from_dict` requires the five structural
    fields (vocab, hidden, layers, heads, intermediate) to be present.
    """

    vocab_size: int = 28996                  # V: 28996 bert-base-cased, 30522 uncased / MiniLM
    hidden_size: int = 768                   # C: 768 bert-base, 384 MiniLM-L6-H384
    num_hidden_layers: int = 12              # L: 12 bert-base, 6 MiniLM-L6
    num_attention_heads: int = 12            # H: 12 (D = C/H = 64 bert-base, 32 MiniLM)
    intermediate_size: int = 3072            # F: 4·C
    hidden_act: str = "gelu"                 # exact erf GELU (docs/modules.md §2); nothing else is supported
    hidden_dropout_prob: float = 0.1         # embeddings, attention output, FFN output
    attention_probs_dropout_prob: float = 0.1  # attention probabilities
    max_position_embeddings: int = 512      # P
    type_vocab_size: int = 2                 # segment ids 0/1
    initializer_range: float = 0.02          # std of the normal init
    layer_norm_eps: float = 1e-12            # inside the sqrt (docs/modules.md §1)
    pad_token_id: int = 0                    # word_embeddings padding_idx
    position_embedding_type: str = "absolute"  # only absolute positions are supported

    _REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "config") -> "BertConfig":
        """Build from a parsed ``config.json``; unknown fields are ignored.

        Raises
        ------
        KeyError
            naming a missing required field.
        ValueError
            for an unsupported activation / position type, non-integer sizes, or a
            hidden size that the head count does not divide.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in cls._REQUIRED if k not in d]
        if missing:
            raise KeyError(f"{where}: missing required field(s) {missing}")
        if d.get("model_type", "bert") not in ("bert",):
            raise ValueError(f"{where}: model_type {d['model_type']!r} is not 'bert'")
        kw = {}
        for f in fields(cls):
            if f.name in d and d[f.name] is not None:
                kw[f.name] = d[f.name]
        cfg = cls(**kw)
        cfg.validate(where)
        return cfg

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """Read a Hugging Face ``config.json`` (or a folder that holds one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        if not p.is_file():
            raise FileNotFoundError(f"config.json not found: {p}")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON: {e}") from e
        return cls.from_dict(d, where=str(p))

    def validate(self, where: str = "config") -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "pad_token_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{where}: {name} must be a non-negative integer, got {v!r}")
        if self.hidden_size <= 0 or self.num_attention_heads <= 0 or self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{where}: hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act != "gelu":
            raise ValueError(f"{where}: hidden_act {self.hidden_act!r} is not supported (only the exact 'gelu')")
        if self.position_embedding_type != "absolute":
            raise ValueError(f"{where}: position_embedding_type {self.position_embedding_type!r} is not "
                             "supported (only 'absolute')")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"{where}: pad_token_id {self.pad_token_id} outside the vocabulary")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_type"] = "bert"
        return d


class BertEmbeddings(Module):
    """``drop(LN(E [+ aug_linear(a)]))`` with ``E = word_emb[ids] + pos_emb[0..T-1] + type_emb[tt]``.

    With the char hook, ``E ← char_cnn_linear(drop([E; char_cnn_model(c)]))`` first.

    Sub-modules (``transformers`` names): ``word_embeddings`` (V, C) with
    ``padding_idx = pad_token_id``, ``position_embeddings`` (P, C),
    ``token_type_embeddings`` (2, C), ``LayerNorm``, ``dropout``; and, only after
    :meth:`attach_augment` (docs/augmentation.md §3 mode ``embed``), ``aug_linear`` (C, E) + (C,),
    whose keys are the original ``bert.embeddings.aug_linear.weight`` / ``.bias``;
    only after :meth:`attach_char_cnn` (docs/modules.md §8), ``char_cnn_model`` (the original's
    ``bert.embeddings.char_cnn_model.*`` keys), ``char_cnn_linear`` (C, 2C) + (C,)
    and ``char_dropout`` (no parameters; the original reuses ``dropout``, but one
    module holds one pending cache, so the second use gets its own module).
    """

    def __init__(self, config: BertConfig, rng=None):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, C, padding_idx=config.pad_token_id, rng=rng)
        self.position_embeddings = Embedding(config.max_position_embeddings, C, rng=rng)
        self.token_type_embeddings = Embedding(config.type_vocab_size, C, rng=rng)
        self.LayerNorm = LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob, rng=rng)
        self.aug_linear = None                                     # docs/augmentation.md §3 'embed' hook, off
        self.char_cnn_model = self.char_cnn_linear = self.char_dropout = None  # the docs/modules.md §8 hook, off
        self._initializer_range = float(config.initializer_range)  # the std the hooks' N(0, σ) init uses

    def attach_augment(self, aug_dim: int, rng=None) -> None:
        """Add ``aug_linear`` (E → C, BERT's init N(0, 0.02) / 0) for augmentation inside the embeddings.

        Called after the pretrained weights are loaded (the checkpoint has no such
        tensors), or before loading a run's state dict that has them.

        Raises
        ------
        ValueError
            when the hook is already attached or ``aug_dim`` is not a positive int.
        """
        if self.aug_linear is not None:
            raise ValueError("these BERT embeddings already hold aug_linear")
        if isinstance(aug_dim, bool) or not isinstance(aug_dim, (int, np.integer)) or aug_dim < 1:
            raise ValueError(f"aug_dim must be a positive integer, got {aug_dim!r}")
        C = self.LayerNorm.weight.data.shape[0]
        lin = EmbeddingAugment(int(aug_dim), C, rng=rng)           # weight (C, E), bias (C,)
        if lin.weight.data.dtype != self.LayerNorm.weight.data.dtype:  # e.g. after .double() (gradchecks)
            lin.double()
        self.aug_linear = lin.to(backend.device_of(self.LayerNorm.weight.data))

    def attach_char_cnn(self, char_vocab_size: int, char_dim: int = 128, max_wordlen: int = 12, rng=None) -> None:
        """Add the char-CNN branch: ``char_cnn_model``, ``char_cnn_linear`` (2C → C) and ``char_dropout``.

        Init as the original (docs/training.md §1): BERT's N(0, initializer_range) for the
        char embedding (row 0 included), both MLP layers and ``char_cnn_linear``,
        zero biases; the convolutions keep PyTorch's default. Like
        :meth:`attach_augment`, call it after loading pretrained weights, or before
        loading a state dict that has these keys. The new parameters follow the
        embeddings' dtype (e.g. after ``.double()``) and device.

        Parameters
        ----------
        char_vocab_size : int, Vc (:func:`minimner.data.chars.build_char_vocab`'s size)
        char_dim : int, the char embedding size (the original's ``char_input_dim``, 128)
        max_wordlen : int, Lw, characters per word (12)
        rng : Generator for the init and the char branch's dropout masks (default: the
            embeddings' own dropout generator, so a seeded model stays reproducible)

        Raises
        ------
        ValueError
            when the hook is already attached or a size is not a positive int
            (or ``max_wordlen`` is too short for the pools, see :class:`CharCNN`).
        """
        if self.char_cnn_model is not None:
            raise ValueError("these BERT embeddings already hold char_cnn_model")
        for name, v in (("char_vocab_size", char_vocab_size), ("char_dim", char_dim), ("max_wordlen", max_wordlen)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        g = self.dropout.rng if rng is None else rng
        C, std = self.LayerNorm.weight.data.shape[0], self._initializer_range
        cnn = CharCNN(int(char_vocab_size), C, char_dim=int(char_dim), max_wordlen=int(max_wordlen),
                      initializer_range=std, rng=g)
        lin = Linear(2 * C, C, rng=g)                              # weight (C, 2C), bias (C,)
        lin.weight.data = init.normal(g, (C, 2 * C), std)           # (C, 2C) ~ N(0, σ)
        lin.bias.data[...] = 0
        ref = self.LayerNorm.weight.data                           # the embeddings' device and dtype (float64
        self.char_cnn_model = cnn.to(backend.device_of(ref), dtype=ref.dtype)  # after .double() in gradchecks)
        self.char_cnn_linear = lin.to(backend.device_of(ref), dtype=ref.dtype)
        self.char_dropout = Dropout(self.dropout.p, rng=g)

    def forward(self, input_ids, token_type_ids, aug=None, char_ids=None):
        """input_ids, token_type_ids: (B, T) int; aug (B, T, E) float or None; char_ids (B, T, Lw) int or None
        -> (B, T, C) float.

        Raises
        ------
        ValueError
            when ``aug`` or ``char_ids`` is given without its hook, missing with it, or mis-shaped.
        """
        xp = backend.get_xp(input_ids)
        B, T = input_ids.shape
        if self.aug_linear is None and aug is not None:
            raise ValueError("an augmentation input was given but these BERT embeddings have no aug_linear "
                             "(attach_augment first, or pass aug=None)")
        if self.aug_linear is not None:
            E = self.aug_linear.in_features
            if aug is None:
                raise ValueError(f"these BERT embeddings hold aug_linear: pass the augmentation input aug "
                                 f"of shape (B, T, E) = {(B, T, E)}")
            if tuple(aug.shape) != (B, T, E):
                raise ValueError(f"aug must have shape (B, T, E) = {(B, T, E)}, got {tuple(aug.shape)}")
        if self.char_cnn_model is None and char_ids is not None:
            raise ValueError("char ids were given but these BERT embeddings have no char_cnn_model "
                             "(attach_char_cnn first, or pass char_ids=None)")
        if self.char_cnn_model is not None:
            Lw = self.char_cnn_model.max_wordlen
            if char_ids is None:
                raise ValueError(f"these BERT embeddings hold char_cnn_model: pass char_ids of shape "
                                 f"(B, T, Lw) = {(B, T, Lw)}")
            if tuple(char_ids.shape) != (B, T, Lw) or char_ids.dtype.kind not in "iu":
                raise ValueError(f"char_ids must be an integer array of shape (B, T, Lw) = {(B, T, Lw)}, got "
                                 f"{char_ids.dtype} {tuple(char_ids.shape)}")
        positions = xp.arange(T, dtype=np.int64)                  # (T,): absolute positions 0..T-1
        e = self.word_embeddings(input_ids)                        # (B, T) -> (B, T, C)
        e = e + self.position_embeddings(positions)                # (B, T, C) + (T, C) -> (B, T, C)
        e = e + self.token_type_embeddings(token_type_ids)         # (B, T, C) + (B, T, C) -> (B, T, C)
        if self.char_cnn_model is not None:                        # docs/modules.md §8: before the aug term
            char = self.char_cnn_model(char_ids)                   # (B, T, Lw) -> (B, T, C)
            e = xp.concatenate([e, char], axis=-1)                 # [E; char]: (B, T, 2C)
            e = self.char_cnn_linear(self.char_dropout(e))         # (B, T, 2C) @ (2C, C) -> (B, T, C)
        if self.aug_linear is not None:
            e = e + self.aug_linear(aug)                           # (B, T, E) @ (E, C) -> (B, T, C), before LN
        return self.dropout(self.LayerNorm(e))                     # (B, T, C)

    def backward(self, dout):
        """dout (B, T, C) -> daug (B, T, E), or None without the hook; fills the embeddings' gradients.

        Mirrors forward: dropout, LayerNorm, the aug term, the char branch (its
        parameters get gradients; the ids none), then the three lookups.
        """
        de = self.LayerNorm.backward(self.dropout.backward(dout))  # undo drop(LN(E)): (B, T, C)
        daug = None
        if self.aug_linear is not None:
            daug = self.aug_linear.backward(de)                    # E = … + a W_eaᵀ + b_ea: (B, T, E)
        if self.char_cnn_model is not None:
            C = de.shape[-1]
            dcat = self.char_dropout.backward(self.char_cnn_linear.backward(de))  # undo linear(drop(·)): (B, T, 2C)
            self.char_cnn_model.backward(dcat[..., C:])            # the char half: (B, T, C); ids get none
            de = dcat[..., :C]                                     # the word + pos + type half: (B, T, C)
        self.token_type_embeddings.backward(de)                     # E = … + type_emb[tt]
        self.position_embeddings.backward(de.sum(axis=0))          # E = … + pos_emb[0..T-1]: (B, T, C) -> (T, C)
        self.word_embeddings.backward(de)                           # E = word_emb[ids] + …; pad row gets 0
        return daug


class BertPooler(Module):
    """``pooled = tanh(X[:, 0] Wᵀ + b)``: the [CLS] vector through ``dense`` (C → C) and tanh."""

    def __init__(self, config: BertConfig, rng=None):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size, rng=rng)
        self.activation = Tanh()

    def forward(self, hidden):
        """hidden (B, T, C) -> pooled (B, C)."""
        self._save_cache(hidden.shape)
        return self.activation(self.dense(hidden[:, 0]))          # (B, C) @ (C, C) -> (B, C)

    def backward(self, dpooled):
        """dpooled (B, C) -> dhidden (B, T, C), non-zero only at position 0."""
        shape = self._pop_cache()
        xp = backend.get_xp(dpooled)
        dcls = self.dense.backward(self.activation.backward(dpooled))  # (B, C)
        dhidden = xp.zeros(shape, dtype=dcls.dtype)                     # (B, T, C)
        dhidden[:, 0] = dcls
        return dhidden


class BertModel(Module):
    """BERT encoder: embeddings → L transformer layers (→ optional pooler).

    Parameters
    ----------
    config : BertConfig
    add_pooling_layer : bool
        Whether to hold ``pooler.dense`` (every Hugging Face BERT checkpoint has it).
    rng : Generator, optional
        Used for the initialisation and as the dropout masks' source.
    init : bool
        Re-initialise as BERT does (weights ~ N(0, initializer_range), biases 0,
        LayerNorm 1/0, padding row 0). Loaders pass False (weights come from a file).

    Attributes
    ----------
    attentions : list of (B, H, T, T) arrays
        The attention probabilities of the last forward, one per layer.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, rng=None, init: bool = True):
        super().__init__()
        if rng is None:
            rng = backend.rng()
        self.config = config
        self.embeddings = BertEmbeddings(config, rng=rng)
        self.encoder = BertEncoder(
            num_hidden_layers=config.num_hidden_layers, hidden_size=config.hidden_size,
            num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range if init else None, rng=rng)
        self.pooler = BertPooler(config, rng=rng) if add_pooling_layer else None
        self.attentions = []
        if init:
            self.init_weights(rng)

    # ------------------------------------------------------------------ init
    def init_weights(self, rng) -> None:
        """BERT's init: N(0, initializer_range) weights, zero biases, LayerNorm 1/0, zero padding row.

        The encoder's layers already initialise themselves this way (``initializer_range``);
        this sets the embeddings and the pooler.
        """
        parts = [self.embeddings] + ([self.pooler] if self.pooler is not None else [])
        bert_init_(parts, rng, self.config.initializer_range)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path, rng=None) -> "BertModel":
        """Load a Hugging Face BERT folder or a converted ``.npz`` with strict key accounting.

        Parameters
        ----------
        path : str or Path
            A folder with config.json + model.safetensors (or pytorch_model.bin,
            read with ``torch.load(weights_only=True)`` when torch is installed), or
            a ``.npz`` written by ``python -m minimner convert bert``.
        rng : Generator, optional, the dropout masks' source.

        Returns
        -------
        BertModel on the current backend, in ``train()`` mode (call ``eval()`` to
        turn dropout off). ``model.load_report`` lists renamed and ignored keys.

        Raises
        ------
        FileNotFoundError, ValueError, KeyError, RuntimeError
            naming the file and the key (unknown source key, unfilled parameter,
            shape mismatch, truncated file, refused pickle).
        """
        config_dict, arrays, meta = bert_source.load_source(path)
        config = BertConfig.from_dict(config_dict, where=f"{meta['where']} (config)")
        model = cls(config, add_pooling_layer=bert_source.has_pooler(arrays), rng=rng, init=False)
        acc = bert_source.accountant(converted=meta["converted"])
        state = acc.apply(arrays, expected_shapes(model), where=meta["where"])
        model.load_state_dict(state, strict=True)
        model.load_report = acc.report()
        return model

    # ------------------------------------------------------------------ forward / backward
    def _check_inputs(self, input_ids, attention_mask, token_type_ids):
        xp = backend.get_xp(input_ids)
        if getattr(input_ids, "ndim", None) != 2 or input_ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids must be a (B, T) integer array, got "
                             f"{getattr(input_ids, 'dtype', type(input_ids))} shape {getattr(input_ids, 'shape', None)}")
        B, T = input_ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        if attention_mask is None:
            attention_mask = xp.ones((B, T), dtype=np.int64)     # (B, T): every position real
        if tuple(attention_mask.shape) != (B, T):
            raise ValueError(f"attention_mask must have shape (B, T) = {(B, T)}, got {tuple(attention_mask.shape)}")
        if token_type_ids is None:
            token_type_ids = xp.zeros((B, T), dtype=np.int64)    # (B, T): segment 0 everywhere
        if tuple(token_type_ids.shape) != (B, T):
            raise ValueError(f"token_type_ids must have shape (B, T) = {(B, T)}, got {tuple(token_type_ids.shape)}")
        return attention_mask, token_type_ids

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, aug=None, char_ids=None):
        """Last hidden state of BERT.

        Parameters
        ----------
        input_ids : (B, T) int array of word-piece ids
        attention_mask : (B, T) int/bool array, 1 = real piece, 0 = padding (default all 1)
        token_type_ids : (B, T) int array of segment ids (default all 0)
        aug : (B, T, E) float array or None, the per-position augmentation input (docs/augmentation.md §2);
            required when the embeddings hold ``aug_linear`` (mode ``embed``), refused otherwise
        char_ids : (B, T, Lw) int array or None, the per-position character ids (docs/data.md §3,
            :func:`minimner.data.chars.char_ids`); required when the embeddings hold
            ``char_cnn_model``, refused otherwise

        Returns
        -------
        (B, T, C) float32 array (float64 after ``double()``).

        Raises
        ------
        ValueError
            for mis-shaped or mis-typed inputs, T > max_position_embeddings, or an
            ``aug`` / ``char_ids`` that does not match the embeddings' hooks.
        """
        attention_mask, token_type_ids = self._check_inputs(input_ids, attention_mask, token_type_ids)
        x = self.embeddings(input_ids, token_type_ids, aug, char_ids)  # (B, T) [+ (B, T, E), (B, T, Lw)] -> (B, T, C)
        out, probs = self.encoder(x, attention_mask)              # (B, T, C), L × (B, H, T, T)
        self.attentions = probs
        self._save_cache(True)
        return out

    def backward(self, d_last_hidden):
        """d_last_hidden (B, T, C) -> daug (B, T, E) or None; adds into every parameter's ``.grad``.

        Returns the gradient of the augmentation input when the embeddings hold
        ``aug_linear`` (mode ``embed``), else None. Add :meth:`pool_backward`'s result
        to ``d_last_hidden`` first when the pooled output was used.
        """
        self._pop_cache()
        dx = self.encoder.backward(d_last_hidden)                 # (B, T, C) through L layers
        return self.embeddings.backward(dx)                       # (B, T, E) or None

    def pooled(self, last_hidden):
        """Pooled output ``tanh(dense(last_hidden[:, 0]))``: (B, T, C) -> (B, C)."""
        if self.pooler is None:
            raise RuntimeError("this BertModel has no pooler (built with add_pooling_layer=False)")
        return self.pooler(last_hidden)

    def pool_backward(self, dpooled):
        """dpooled (B, C) -> gradient w.r.t. ``last_hidden`` (B, T, C), to add to backward's input."""
        if self.pooler is None:
            raise RuntimeError("this BertModel has no pooler (built with add_pooling_layer=False)")
        return self.pooler.backward(dpooled)

    def extra_repr(self) -> str:
        c = self.config
        return (f"V={c.vocab_size}, C={c.hidden_size}, L={c.num_hidden_layers}, H={c.num_attention_heads}, "
                f"F={c.intermediate_size}")
