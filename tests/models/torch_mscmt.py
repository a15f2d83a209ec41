"""Test-only PyTorch reference of MSCMT, written from the design notes in docs/.

This is an independent PyTorch formulation of the authors' MSCMT model (Liu et al.,
arXiv 2210.14163), written from docs/ (augmentation.md, model.md, modules.md,
parameters.md, training.md §1 and §4) and not from their code. It exists so that
minimner's NumPy model can be checked against PyTorch in CI without shipping the
authors' code (which cannot be redistributed); ``tests/models/test_torch_reference.py``
checks this module against the authors' module itself when a checkout is available.

Its ``state_dict()`` has exactly the original's 509 keys, shapes and key order (docs/parameters.md §1),
including every tensor no configuration uses, so weights move between this module, the
original and minimner by name.

Flags (constructor arguments and plain attributes, read at forward time; the ORIGINAL
names and values, whose meaning is often the opposite of the name, docs/model.md §1 and
docs/original-quirks.md §1):

================  =======  ==================================================================
flag              default  meaning
================  =======  ==================================================================
use_char_cnn      1        0: char-CNN ON inside the BERT embeddings (docs/modules.md §8); any other: off
aug_before        1        0: augmentation inside the embeddings (``bert.embeddings.aug_linear``);
                           1: after BERT (``maug_linear``); any other value: no augmentation
aug_gate          1        with aug_before = 1 — 1: S = S⁰ + N; 0: sigmoid gate (aug_w1/aug_w2/
                           aug_bias); any other value: no augmentation term (as the original)
ffusion_method    2        fusion of the four cross-modal paths, 0–8 (docs/model.md §6): 0 concat, 1 gate of
                           gates, 2 gate + concat, 3 attention over paths, 4 linear sum, 5 GMF +
                           filtration gate (generalised from 768 to H), 6 grid vs objects,
                           7 objects only, 8 grid only
main_cat          0        0: Z = [M; Fv]·fusion_w + b (text after self_attention_v2); 1: [S; Fv]
alpha_seg         1        0: e ← 0.5·e + 0.5·(e_aux · trans_matrix); any other: no mixing
seg_task          0        0: loss = L_main + 0.5·L_aux (aux span CRF on); any other: L_main only
================  =======  ==================================================================

Dimension legend: B batch, T word-piece tokens, H hidden, h heads, d head size (H = h·d),
F feed-forward size, R image regions (7·7 = 49), C image channels (2048), O object slots,
Lw characters per word (12), Da augmentation size (200), K main tags (13), Ka aux tags (7),
V word-piece vocabulary, Vc character vocabulary, Vo object-label vocabulary (85).

Initialisation follows docs/training.md §1 with the global torch RNG (seed it with ``torch.manual_seed``),
except that the never-initialised ``*_aux_w`` / ``*_aux_bias`` tensors (raw memory in the
original) are set to zero here so the state is always finite.

Conventions: the CRFs are pytorch-crf's ``torchcrf.CRF`` (batch_first), like the original;
attention masks are additive (1 − m)·(−10000) on the key side only (docs/modules.md §5).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchcrf import CRF

FLAG_DEFAULTS = dict(use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0, alpha_seg=1,
                     seg_task=0)

_BERT_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings")
_BERT_DEFAULTS = dict(type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1, initializer_range=0.02, hidden_act="gelu")


def default_trans_matrix(dtype=torch.float32) -> torch.Tensor:
    """The aux → main tag map of docs/model.md §4, (Ka, K) = (7, 13): row = aux tag, column = main tag."""
    m = torch.zeros(7, 13, dtype=dtype)                    # (Ka, K)
    m[0, 0] = m[1, 1] = m[4, 10] = m[5, 11] = m[6, 12] = 1.0
    m[2, [2, 4, 6, 8]] = 0.25                              # B → B-MISC, B-PER, B-ORG, B-LOC
    m[3, [3, 5, 7, 9]] = 0.25                              # I → I-*
    return m


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 1 = real / 0 = padding → (B, 1, 1, L) additive mask, 0 or −10000 (docs/modules.md §5)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0     # (B, 1, 1, L)


# ----------------------------------------------------------------------------- transformer blocks
class _LayerNorm(nn.Module):
    """TF-style LayerNorm, eps inside the square root, biased variance (docs/modules.md §1)."""

    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x):                                  # x: (..., H)
        mu = x.mean(-1, keepdim=True)                      # (..., 1)
        var = (x - mu).pow(2).mean(-1, keepdim=True)       # (..., 1)
        return self.weight * (x - mu) / torch.sqrt(var + self.eps) + self.bias   # (..., H)


class _QKV(nn.Module):
    """Multi-head scaled dot-product attention; queries from x, keys/values from y (= x for self)."""

    def __init__(self, hidden: int, heads: int, p_attn: float):
        super().__init__()
        self.heads, self.d = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(p_attn)

    def _split(self, x):                                   # (B, L, H) -> (B, h, L, d); head j = features j·d…
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.d).permute(0, 2, 1, 3)

    def forward(self, x, y, mask):                         # x: (B, Lq, H)  y: (B, Lk, H)  mask: (B, 1, 1, Lk)
        q = self._split(self.query(x))                     # (B, h, Lq, d)
        k = self._split(self.key(y))                       # (B, h, Lk, d)
        v = self._split(self.value(y))                     # (B, h, Lk, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d) + mask   # (B,h,Lq,d) @ (B,h,d,Lk) -> (B,h,Lq,Lk)
        probs = self.dropout(torch.softmax(scores, dim=-1))           # (B, h, Lq, Lk), rows sum to 1
        ctx = probs @ v                                    # (B,h,Lq,Lk) @ (B,h,Lk,d) -> (B,h,Lq,d)
        B, _, Lq, _ = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(B, Lq, -1)  # (B, Lq, H), heads concatenated


class _DenseAddNorm(nn.Module):
    """LN(drop(dense(x)) + residual): ``attention.output`` (H→H) and ``output`` (F→H)."""

    def __init__(self, d_in: int, hidden: int, p: float, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = _LayerNorm(hidden, eps)
        self.dropout = nn.Dropout(p)

    def forward(self, x, residual):                        # x: (B, L, d_in)  residual: (B, L, H)
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)   # (B, L, H)


class _Attention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        H = c["hidden_size"]
        self.self = _QKV(H, c["num_attention_heads"], c["attention_probs_dropout_prob"])
        self.output = _DenseAddNorm(H, H, c["hidden_dropout_prob"], c["layer_norm_eps"])

    def forward(self, x, y, mask):                         # 1st residual: the QUERY input x (docs/modules.md §4)
        return self.output(self.self(x, y, mask), x)       # (B, Lq, H)


class _Intermediate(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):                                  # (B, L, H) -> (B, L, F), erf GELU (docs/modules.md §2)
        return F.gelu(self.dense(x))


class _Layer(nn.Module):
    """One transformer layer (docs/modules.md §3); with ``y`` given, the cross-attention layer of §4 there."""

    def __init__(self, c: dict):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseAddNorm(c["intermediate_size"], c["hidden_size"], c["hidden_dropout_prob"],
                                    c["layer_norm_eps"])

    def forward(self, x, mask, y=None):                    # x: (B, Lq, H)  y: (B, Lk, H) or None (self)
        a = self.attention(x, x if y is None else y, mask)  # (B, Lq, H)
        return self.output(self.intermediate(a), a)        # (B, Lq, H)


class _Encoder(nn.Module):
    """A stack ``layer.{i}``; for cross encoders the query stream is updated and y stays fixed."""

    def __init__(self, c: dict, n_layers: int):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(n_layers)])

    def forward(self, x, mask, y=None):                    # returns the last layer's output only
        for layer in self.layer:
            x = layer(x, mask, y)
        return x


# ----------------------------------------------------------------------------- BERT with the two hooks
class _CharCNN(nn.Module):
    """The char-CNN of docs/modules.md §8: char_emb → 3 × (Conv1d k → tanh → max-pool → drop) → MLP → (B, T, H)."""

    def __init__(self, char_vocab: int, char_dim: int, max_wordlen: int, hidden: int):
        super().__init__()
        self.char_emb = nn.Embedding(char_vocab, char_dim, padding_idx=0)
        self.convs = nn.ModuleList([
            nn.Sequential(nn.Conv1d(char_dim, 32, k, padding=k // 2), nn.Tanh(),
                          nn.MaxPool1d(max_wordlen - k + 1), nn.Dropout(0.25))
            for k in (2, 3, 4)])
        self.linear = nn.Sequential(nn.Linear(96, 100), nn.ReLU(), nn.Dropout(0.25), nn.Linear(100, hidden))

    def forward(self, char_ids):                           # char_ids: (B, T, Lw) int
        B, T, Lw = char_ids.shape
        x = self.char_emb(char_ids).view(B * T, Lw, -1).transpose(1, 2)   # (B·T, 128, Lw)
        # each pool keeps one value per channel (kernel = stride = Lw − k + 1 covers the first Lw−k+1 outputs)
        pooled = torch.cat([conv(x) for conv in self.convs], dim=-1)       # 3 × (B·T, 32, 1) -> (B·T, 32, 3)
        feats = pooled.reshape(B * T, -1)                  # (B·T, 96), channel-major: index = c·3 + branch
        return self.linear(feats).view(B, T, -1)           # (B, T, H)


class _Embeddings(nn.Module):
    def __init__(self, c: dict, char_vocab: int, aug_dim: int, char_dim: int, max_wordlen: int):
        super().__init__()
        H = c["hidden_size"]
        self.char_cnn_model = _CharCNN(char_vocab, char_dim, max_wordlen, H)
        self.aug_linear = nn.Linear(aug_dim, H)
        self.word_embeddings = nn.Embedding(c["vocab_size"], H, padding_idx=0)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], H)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], H)
        self.LayerNorm = _LayerNorm(H, c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])
        self.char_cnn_linear = nn.Linear(2 * H, H)

    def forward(self, input_ids, aug, char_ids, char_on: bool, aug_on: bool):
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device)     # (T,)
        e = (self.word_embeddings(input_ids) + self.position_embeddings(pos)[None]
             + self.token_type_embeddings(torch.zeros_like(input_ids)))     # (B, T, H), segment ids all 0
        if char_on:                                        # char path BEFORE the aug term (docs/modules.md §8)
            ec = torch.cat([e, self.char_cnn_model(char_ids)], -1)   # (B, T, 2H)
            e = self.char_cnn_linear(self.dropout(ec))     # (B, T, 2H) -> (B, T, H)
        if aug_on:
            e = e + self.aug_linear(aug)                   # (B, T, Da) -> (B, T, H)
        return self.dropout(self.LayerNorm(e))             # (B, T, H)


class _Pooler(nn.Module):
    """Only here for its keys: its output is discarded by MSCMT (docs/modules.md §6), so it is never run."""

    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)


class _Bert(nn.Module):
    def __init__(self, c: dict, char_vocab: int, aug_dim: int, char_dim: int, max_wordlen: int):
        super().__init__()
        self.embeddings = _Embeddings(c, char_vocab, aug_dim, char_dim, max_wordlen)
        self.encoder = _Encoder(c, c["num_hidden_layers"])
        self.pooler = _Pooler(c["hidden_size"])


# ----------------------------------------------------------------------------- modules only method 5 uses
class _GMF(nn.Module):
    """Gated multimodal fusion (docs/model.md §6 method 5), generalised from the original's hard-coded 768 to H."""

    def __init__(self, hidden: int):
        super().__init__()
        self.text_linear = nn.Linear(hidden, hidden)
        self.img_linear = nn.Linear(hidden, hidden)
        self.gate_linear = nn.Linear(2 * hidden, 1)

    def forward(self, text, img):                          # (B, T, H) each
        i = torch.tanh(self.img_linear(img))               # (B, T, H)
        t = torch.tanh(self.text_linear(text))             # (B, T, H)
        gamma = torch.sigmoid(self.gate_linear(torch.cat([i, t], -1)))   # (B, T, 2H) -> (B, T, 1)
        return gamma * i + (1 - gamma) * t                 # (B, T, H), gamma broadcast over H


class _FiltrationGate(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.text_linear = nn.Linear(hidden, hidden, bias=False)
        self.multimodal_linear = nn.Linear(hidden, hidden)
        self.gate_linear = nn.Linear(2 * hidden, 1)
        self.resv_linear = nn.Linear(hidden, hidden)

    def forward(self, text, mm):                           # (B, T, H) each
        c = torch.cat([self.text_linear(text), self.multimodal_linear(mm)], -1)   # (B, T, 2H)
        phi = torch.sigmoid(self.gate_linear(c))           # (B, T, 1)
        return torch.cat([text, phi * torch.tanh(self.resv_linear(mm))], -1)     # (B, T, 2H)


class _Highway(nn.Module):
    """Only here for its keys (never used by any configuration, docs/original-quirks.md §3)."""

    def __init__(self, hidden: int, n: int = 2):
        super().__init__()
        self.nonlinear = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n)])
        self.linear = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n)])
        self.gate = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n)])


# ----------------------------------------------------------------------------- MSCMT
class TorchMSCMT(nn.Module):
    """MSCMT in PyTorch with the original's state-dict layout (docs/parameters.md §1).

    Parameters
    ----------
    bert_config : dict
        vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
        max_position_embeddings (required); type_vocab_size (2), layer_norm_eps (1e-12),
        hidden_dropout_prob / attention_probs_dropout_prob (0.1) optional. Unknown keys are ignored.
        Every extra encoder uses this config too, as in the original.
    char_vocab_size : int
        Vc, rows of ``bert.embeddings.char_cnn_model.char_emb``.
    aug_dim, image_dim, object_vocab, num_labels, auxnum_labels, char_dim, max_wordlen : int
        Da = 200, C = 2048, Vo = 85, K = 13, Ka = 7, 128 and Lw = 12 in the released setup.
    layer_num1, layer_num2, layer_num3 : int
        Layers of txt2img / img2txt / txt2txt (1 each in the release).
    gmf_hidden : int or None
        Width of ``gmf.*`` / ``filtration_gate.*`` (method 5). None: H (method 5 generalised to H).
        The original hard-codes 768; pass 768 to get its exact shapes at another H (then method 5,
        which needs gmf_hidden = H, raises, where the original crashes).
    **flags
        The original flags (module docstring), defaults ``FLAG_DEFAULTS``. They are plain
        attributes afterwards and may be changed between forwards.
    """

    def __init__(self, bert_config: dict, *, char_vocab_size: int = 15, aug_dim: int = 200, image_dim: int = 2048,
                 object_vocab: int = 85, num_labels: int = 13, auxnum_labels: int = 7, char_dim: int = 128,
                 max_wordlen: int = 12, layer_num1: int = 1, layer_num2: int = 1, layer_num3: int = 1,
                 gmf_hidden: int | None = None, **flags):
        super().__init__()
        missing = [k for k in _BERT_REQUIRED if k not in bert_config]
        if missing:
            raise ValueError(f"bert_config lacks {missing}; expected keys {list(_BERT_REQUIRED)}")
        c = {**_BERT_DEFAULTS, **{k: v for k, v in bert_config.items() if k in (*_BERT_REQUIRED, *_BERT_DEFAULTS)}}
        if c["hidden_act"] != "gelu":
            raise ValueError(f"hidden_act must be 'gelu' (docs/modules.md §2), received {c['hidden_act']!r}")
        self.set_flags(**{**FLAG_DEFAULTS, **flags})
        self.config = c
        H, K, Ka = c["hidden_size"], num_labels, auxnum_labels
        self.image_dim = image_dim
        self.gmf_hidden = H if gmf_hidden is None else gmf_hidden

        def free(*shape):                                  # free-standing parameter, filled by _init_weights
            return nn.Parameter(torch.empty(*shape))

        # (a) free-standing parameters, in the original's definition order (they come first in the state dict)
        self.aug_w1, self.aug_w2, self.aug_bias = free(H, H), free(H, H), free(H)
        self.fus1_w1, self.fus1_w2, self.fus1_bias = free(H, H), free(H, H), free(H)
        self.fus2_w1, self.fus2_w2, self.fus2_bias = free(H, H), free(H, H), free(H)
        self.fus3_w1, self.fus3_w2, self.fus3_bias = free(H, H), free(H, H), free(H)
        self.seq_w, self.ali_w, self.ati_w, self.obj_w, self.add_bias = (free(H, H), free(H, H), free(H, H),
                                                                         free(H, H), free(H))
        self.fusion_w, self.fusion_bias = free(2 * H, H), free(H)
        self.main_aux_w, self.main_aux_bias = free(H, H), free(H)
        self.seq_aux_w, self.seq_aux_bias = free(H, H), free(H)
        self.img_aux_w, self.img_aux_bias = free(H, H), free(H)
        self.obj_aux_w, self.obj_aux_bias = free(H, H), free(H)

        # (b) sub-modules in registration order; this first group gets N(0, 0.02) init
        # (docs/training.md §1 steps 1–3)
        self.object_embeddings = nn.Embedding(object_vocab, H)     # no padding_idx: row 0 = "null object"
        self.bert = _Bert(c, char_vocab_size, aug_dim, char_dim, max_wordlen)
        self.self_attention = _Encoder(c, 1)
        self.self_attention_v2 = _Encoder(c, 1)
        self.vismap2text = nn.Linear(image_dim, H)
        self.vismap2text_v2 = nn.Linear(image_dim, H)
        self.txt2img_attention = _Encoder(c, layer_num1)
        self.img2txt_attention = _Encoder(c, layer_num2)
        self.txt2txt_attention = _Encoder(c, layer_num3)
        self.gate = nn.Linear(2 * H, H)                    # never used
        self.classifier = nn.Linear(H, K)
        self.aux_classifier = nn.Linear(H, Ka)
        self.crf = CRF(K, batch_first=True)
        self.aux_crf = CRF(Ka, batch_first=True)
        n02_group = list(self.children())
        # ... and this group keeps PyTorch's default init (docs/training.md §1 step 4)
        self.maug_linear = nn.Linear(aug_dim, H)
        self.img2img_attention = _Encoder(c, 1)
        self.img2img_attention_v2 = _Encoder(c, 1)
        self.obj2obj_attention = _Encoder(c, 1)
        self.obj2obj_attention_v2 = _Encoder(c, 1)
        self.obj2txt_attention = _Encoder(c, 1)
        self.txt2obj_attention = _Encoder(c, 1)
        self.txt2obj_attention_v2 = _Encoder(c, 1)
        self.fus_cat_linear = nn.Linear(4 * H, H)
        self.fus3_linear = nn.Linear(2 * H, H)
        self.add_linear = nn.Linear(H, H)
        self.mlp_linear1 = nn.Linear(H, H)
        self.mlp_linear2 = nn.Linear(H, 1)
        self.highway = _Highway(H)
        self.gmf = _GMF(self.gmf_hidden)
        self.filtration_gate = _FiltrationGate(self.gmf_hidden)
        self.gfg = nn.Linear(2 * H, H)
        self.main_aux_classifier = nn.Linear(H, K)
        self.seq_aux_classifier = nn.Linear(H, K)
        self.img_aux_classifier = nn.Linear(H, K)
        self.obj_aux_classifier = nn.Linear(H, K)
        self.main_aux_crf = CRF(K, batch_first=True)
        self.seq_aux_crf = CRF(K, batch_first=True)
        self.img_aux_crf = CRF(K, batch_first=True)
        self.obj_aux_crf = CRF(K, batch_first=True)

        # dropouts (not in the state dict): shared p = hidden_dropout_prob on S and in method 3; 0.5 fusion
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])
        self.fus_dropout = nn.Dropout(0.5)
        self._init_weights(n02_group)

    def set_flags(self, **flags):
        """Set some of the original flags (module docstring); they take effect at the next forward."""
        unknown = set(flags) - set(FLAG_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown flags {sorted(unknown)}; expected a subset of {list(FLAG_DEFAULTS)}")
        for name, value in flags.items():
            setattr(self, name, int(value))
        return self

    @property
    def flags(self) -> dict:
        return {name: getattr(self, name) for name in FLAG_DEFAULTS}

    @torch.no_grad()
    def _init_weights(self, n02_group):
        """docs/training.md §1: N(0, 0.02) on the early group, U(±1/√H) on the free-standing tensors, zeros on RAW."""
        std = self.config["initializer_range"]
        for top in n02_group:
            for m in top.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    # also the char embedding's padding row (docs/original-quirks.md §4)
                    m.weight.normal_(0.0, std)
                    if isinstance(m, nn.Linear) and m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, _LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
        stdv = 1.0 / math.sqrt(self.config["hidden_size"])
        for name, p in self.named_parameters(recurse=False):
            if "_aux_" in name:
                p.zero_()                                  # RAW (uninitialised) in the original
            else:
                p.uniform_(-stdv, stdv)

    # ------------------------------------------------------------------ forward
    def _fuse(self, u_img, u_imgtxt, u_obj, u_objtxt):
        """Fv (B, T, H) from the four paths (docs/model.md §2 step 10, §6); mind the operand orders."""
        method = self.ffusion_method

        def gate(a, b, w1, w2, bias):                      # σ(a W1ᵀ + b W2ᵀ + bias) ⊙ a + (1 − σ) ⊙ b
            g = torch.sigmoid(a @ w1.t() + b @ w2.t() + bias)   # (B, T, H)
            return g * a + (1 - g) * b                     # (B, T, H)

        if method == 0:
            x = torch.cat([u_objtxt, u_img, u_imgtxt, u_obj], -1)          # (B, T, 4H)
            return F.relu(self.fus_cat_linear(self.fus_dropout(x)))         # (B, T, H)
        if method in (1, 2):
            f1 = gate(u_img, u_imgtxt, self.fus1_w1, self.fus1_w2, self.fus1_bias)    # image granularity
            f2 = gate(u_objtxt, u_obj, self.fus2_w1, self.fus2_w2, self.fus2_bias)    # object granularity
            if method == 1:
                return self.fus_dropout(gate(f1, f2, self.fus3_w1, self.fus3_w2, self.fus3_bias))
            return F.relu(self.fus3_linear(self.fus_dropout(torch.cat([f1, f2], -1))))   # (B,T,2H) -> (B,T,H)
        if method == 3:
            x = torch.stack([u_objtxt, u_img, u_imgtxt, u_obj], dim=2)      # (B, T, 4, H)
            s = F.relu(self.mlp_linear2(self.dropout(F.relu(self.mlp_linear1(x)))))   # (B, T, 4, 1)
            beta = torch.softmax(s, dim=2)                 # (B, T, 4, 1), weights over the 4 paths
            return (beta * x).sum(2)                       # (B, T, H)
        if method == 4:                                    # the four matrices are used UNTRANSPOSED (x W)
            x = (u_objtxt @ self.seq_w + u_img @ self.ali_w + u_imgtxt @ self.ati_w + u_obj @ self.obj_w
                 + self.add_bias)                          # (B, T, H)
            return F.relu(self.add_linear(self.fus_dropout(x)))
        if method == 5:
            if self.gmf_hidden != u_img.shape[-1]:
                raise ValueError(f"ffusion_method 5 needs gmf_hidden == H = {u_img.shape[-1]}, received "
                                 f"gmf_hidden = {self.gmf_hidden}")
            gm = self.gmf(u_imgtxt, u_objtxt)              # GMF(text = U_imgtxt, img = U_objtxt)
            return self.gfg(self.filtration_gate(u_img, gm))   # (B, T, 2H) -> (B, T, H), no activation
        if method == 6:
            return gate(u_img, u_obj, self.fus1_w1, self.fus1_w2, self.fus1_bias)
        if method == 7:
            return gate(u_objtxt, u_obj, self.fus1_w1, self.fus1_w2, self.fus1_bias)
        if method == 8:
            return gate(u_img, u_imgtxt, self.fus1_w1, self.fus1_w2, self.fus1_bias)
        raise ValueError(f"ffusion_method must be 0..8, received {method!r}")

    def emissions(self, input_ids, input_mask, aug, image, obj_ids, trans_matrix=None, char_ids=None,
                  region_mask=None):
        """Main and aux emissions.

        Parameters
        ----------
        input_ids, input_mask : (B, T) int — prefix mask, 1 = real piece.
        aug : (B, T, Da) float.
        image : (B, C, 7, 7) float — ResNet grid; regions r = 7·row + col.
        obj_ids : (B, O) int — 0 = no object (masked).
        trans_matrix : (Ka, K) float or None (docs/model.md §4 map); read only when alpha_seg = 0.
        char_ids : (B, T, Lw) int or None; required when use_char_cnn = 0.
        region_mask : (B, R) int or None — the original's ``added_attention_mask[:, :49]``, all ones
            in the release (docs/original-quirks.md §5).

        Returns
        -------
        main : (B, T, K) float, aux : (B, T, Ka) float.
        """
        input_ids, input_mask, obj_ids = (torch.as_tensor(x).long() for x in (input_ids, input_mask, obj_ids))
        dtype = self.fusion_w.dtype
        aug, image = torch.as_tensor(aug).to(dtype), torch.as_tensor(image).to(dtype)
        B, T = input_ids.shape
        if image.shape[:2] != (B, self.image_dim) or image.dim() != 4:
            raise ValueError(f"image must be (B, C, h, w) = ({B}, {self.image_dim}, h, w), received "
                             f"{tuple(image.shape)}")
        char_on, aug_before = self.use_char_cnn == 0, self.aug_before
        if char_on and char_ids is None:
            raise ValueError("use_char_cnn = 0 (char-CNN on) needs char_ids (B, T, Lw)")
        if self.main_cat not in (0, 1):
            raise ValueError(f"main_cat must be 0 or 1, received {self.main_cat!r}")
        m_txt = _additive_mask(input_mask, dtype)          # (B, 1, 1, T)
        m_obj = _additive_mask((obj_ids != 0).long(), dtype)   # (B, 1, 1, O)
        R = image.shape[2] * image.shape[3]
        if region_mask is None:
            region_mask = torch.ones(B, R, dtype=torch.long)
        m_img = _additive_mask(torch.as_tensor(region_mask).long(), dtype)   # (B, 1, 1, R), zeros in the release

        # 1–2. BERT (last layer) and augmentation, then dropout 0.1
        s = self.bert.embeddings(input_ids, aug, None if char_ids is None else torch.as_tensor(char_ids).long(),
                                 char_on, aug_before == 0)  # (B, T, H)
        s = self.bert.encoder(s, m_txt)                    # S⁰ (B, T, H)
        if aug_before == 1:
            n = self.maug_linear(aug)                      # (B, T, Da) -> (B, T, H)
            if self.aug_gate == 0:
                g = torch.sigmoid(s @ self.aug_w1.t() + n @ self.aug_w2.t() + self.aug_bias)   # (B, T, H)
                s = g * s + (1 - g) * n
            elif self.aug_gate == 1:
                s = s + n
        s = self.dropout(s)                                # S (B, T, H)

        # 3–4. text branches
        aux = self.aux_classifier(self.self_attention(s, m_txt))   # A (B, T, H) -> e_aux (B, T, Ka)
        m = self.self_attention_v2(s, m_txt)               # M (B, T, H): the query of all four paths

        # 5–6. image grid paths
        grid = image.reshape(B, self.image_dim, R).transpose(1, 2)         # G (B, R, C)
        g1 = self.img2img_attention(self.vismap2text(grid), m_img)         # G1 (B, R, H)
        u_img = self.txt2img_attention(m, m_img, g1)                       # U_img (B, T, H)
        g2 = self.img2img_attention_v2(self.vismap2text_v2(grid), m_img)   # G2 (B, R, H)
        p = self.img2txt_attention(g2, m_txt, m)                           # P (B, R, H): regions attend to text
        u_imgtxt = self.txt2txt_attention(m, m_img, p)                     # U_imgtxt (B, T, H)

        # 7–8. object paths
        eo = self.object_embeddings(obj_ids)               # Eo (B, O, H)
        e1 = self.obj2obj_attention(eo, m_obj)             # E1 (B, O, H)
        u_obj = self.txt2obj_attention(m, m_obj, e1)       # U_obj (B, T, H)
        e2 = self.obj2obj_attention_v2(eo, m_obj)          # E2 (B, O, H)
        q = self.obj2txt_attention(e2, m_txt, m)           # Q (B, O, H): objects attend to text
        u_objtxt = self.txt2obj_attention_v2(m, m_obj, q)  # U_objtxt (B, T, H)

        # 10–12. fusion, merge with text, emissions
        fv = self._fuse(u_img, u_imgtxt, u_obj, u_objtxt)  # Fv (B, T, H)
        text = m if self.main_cat == 0 else s
        z = torch.cat([text, fv], -1) @ self.fusion_w + self.fusion_bias   # (B,T,2H) @ (2H,H) -> (B,T,H), x W
        main = self.classifier(z)                          # e (B, T, K)
        if self.alpha_seg == 0:
            tm = default_trans_matrix(dtype) if trans_matrix is None else torch.as_tensor(trans_matrix).to(dtype)
            main = 0.5 * main + 0.5 * (aux @ tm)           # (B,T,Ka) @ (Ka,K) -> (B,T,K)
        return main, aux

    def forward(self, input_ids, input_mask, aug, image, obj_ids, trans_matrix=None, char_ids=None, labels=None,
                auxlabels=None, region_mask=None):
        """``{"main": (B, T, K), "aux": (B, T, Ka)}`` plus ``"loss"`` (scalar) when ``labels`` is given.

        loss = −mean_b log p_crf(labels_b | main_b) (+ 0.5 · the same for the aux CRF when seg_task = 0);
        both CRFs use ``input_mask`` (docs/model.md §2 step 13).
        """
        main, aux = self.emissions(input_ids, input_mask, aug, image, obj_ids, trans_matrix, char_ids, region_mask)
        out = {"main": main, "aux": aux}
        if labels is not None:
            mask = torch.as_tensor(input_mask).bool()      # (B, T)
            loss = -self.crf(main, torch.as_tensor(labels).long(), mask=mask, reduction="mean")
            if self.seg_task == 0:
                if auxlabels is None:
                    raise ValueError("seg_task = 0 (aux loss on) needs auxlabels (B, T)")
                loss = loss - 0.5 * self.aux_crf(aux, torch.as_tensor(auxlabels).long(), mask=mask, reduction="mean")
            out["loss"] = loss
        return out

    @torch.no_grad()
    def decode(self, input_ids, input_mask, aug, image, obj_ids, trans_matrix=None, char_ids=None,
               region_mask=None):
        """Viterbi paths of the main CRF: a list of B lists, each of length Σ input_mask[b] (docs/model.md §2 step 14).

        Uses the current mode: call ``.eval()`` first for dropout-free inference.
        """
        main, _ = self.emissions(input_ids, input_mask, aug, image, obj_ids, trans_matrix, char_ids, region_mask)
        return self.crf.decode(main, mask=torch.as_tensor(input_mask).bool())
