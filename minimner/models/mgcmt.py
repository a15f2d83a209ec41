"""MGCMT (the paper's MSCMT): multi-granularity cross-modal NER, forward and hand-written backward.

Liu et al., "Multi-Granularity Cross-Modality Representation Learning for Named
Entity Recognition on Social Media" (arXiv 2210.14163). The forward pass is docs/model.md
§2 step by step, equal to the authors' ``MSCMT`` module::

     1  S⁰ = BERT(ids, mask [, a in the embeddings] [, char-CNN])            (B, T, C)
     2  S  = drop_0.1(augment(S⁰, a))                    add: S⁰ + a W_maᵀ + b_ma (default)
     3  A  = SelfL_aux(S; m_txt);   e_aux = A W_auxᵀ + b_aux                  (B, T, Ka)
     4  M  = SelfL_main(S; m_txt)                                             (B, T, C)
     5  G  = image as (B, R, C_img) regions;  G1 = SelfL(G W_v1ᵀ + b; m_img)
        U_img    = CrossL(M ← G1; m_img)                text attends to the grid
     6  G2 = SelfL(G W_v2ᵀ + b; m_img);  P = CrossL(G2 ← M; m_txt)
        U_imgtxt = CrossL(M ← P; m_img)                 text attends to text-aware regions
     7  Eo = object_embeddings[obj];  E1 = SelfL(Eo; m_obj)
        U_obj    = CrossL(M ← E1; m_obj)                text attends to the objects
     8  E2 = SelfL(Eo; m_obj);  Q = CrossL(E2 ← M; m_txt)
        U_objtxt = CrossL(M ← Q; m_obj)                 text attends to text-aware objects
    10  Fv = fusion(U_img, U_imgtxt, U_obj, U_objtxt)   gate + concat by default (models/fusion.py)
    11  Z  = [M; Fv] fusion_w + fusion_bias             (``merge='bert'``: [S; Fv]); fusion_w used as x W
    12  e  = Z W_clsᵀ + b_cls                           (B, T, K); aux_mix: e ← ½ e + ½ e_aux trans
    13  loss = −mean_b log p_crf(y | e) − ½ mean_b log p_aux_crf(y_aux | e_aux)
    14  decode: Viterbi of the main CRF (constrained by default, docs/differences.md §3)

Masks are the finite additive ``(1 − mask)·(−10000)`` of docs/modules.md §5 on the key
side only. ``m_obj`` is ``objects != 0``; an image without objects attends over
copies of the learned row-0 "no object" vector (docs/model.md §2 step 9).

**Missing images** (docs/differences.md §4; the original substituted another tweet's
picture): a tweet without an image, or with an unreadable one, has every
region masked (``region_mask`` 0) *and* its region features zeroed, so it sees
a learned "no image" vector (``vismap2text``'s bias through the encoders), the
image analogue of the null object. ``image=None`` is exactly an image whose
every region is masked, whatever its pixels. The original's image mask is
always all ones (docs/original-quirks.md §5), so with images present the two agree.

**Flags.** minimner's plain names (:class:`MGCMTConfig`) and the original's
``config.py`` globals, whose meanings are often inverted (docs/original-quirks.md §1):

================  ==============================  ====================  ==================
minimner field    values (default first)          original flag         original value
================  ==============================  ====================  ==================
``aug``           ``add`` / ``gate`` /            aug_before, aug_gate  (1, 1) / (1, 0) /
                  ``embed`` / ``none``                                  (0, ·) / (2, ·)
``fusion``        ``gate_concat`` / ``concat`` /  ffusion_method        2 / 0 / 1 / 3 /
                  ``gate_of_gates`` /                                   4 / 5 / 6 / 7 / 8
                  ``path_attention`` /
                  ``linear_sum`` /
                  ``gmf_filtration`` /
                  ``grid_vs_objects`` /
                  ``objects_only`` / ``grid_only``
``merge``         ``main`` / ``bert``             main_cat              0 / 1
``aux_mix``       False / True                    alpha_seg             1 / 0
``aux_loss``      True / False                    seg_task              0 / 1
``char_cnn``      False / True                    use_char_cnn          1 / 0
================  ==============================  ====================  ==================

**Names.** The state-dict keys are the original's (docs/parameters.md §1) except the post-BERT
augmentation under ``augment.`` and the fusion variant under ``fusion.``; see
:mod:`minimner.convert.mscmt_keys`. :meth:`MGCMT.from_original` /
:meth:`MGCMT.to_original` convert, keeping the tensors no configuration uses
aside (``original_unused``) so the round trip writes them back unchanged.

**Attention and gates** of the last forward are kept for plotting (docs/differences.md §5):
``model.attention[name]`` is the last layer's (B, h, Lq, Lk) probabilities of
``self_aux``, ``self_main``, ``img2img``, ``txt2img``, ``img2img_v2``, ``img2txt``,
``txt2txt``, ``obj2obj``, ``txt2obj``, ``obj2obj_v2``, ``obj2txt``, ``txt2obj_v2``
(every layer in ``model.attention_layers``; ``self_aux`` is absent after :meth:`MGCMT.decode`,
which skips the unread auxiliary branch), and ``model.gates`` the fusion's gate values.

Dimension legend: B batch, T word-piece tokens, C hidden, h heads, R image regions
(49 = 7×7), C_img image feature size (2048 for ResNet-50/101/152, 512 for
ResNet-18/34), O object slots (5), Vo object vocabulary (85), E augmentation size,
K main tags (13), Ka auxiliary tags (7), Lw characters per word (12), Vc char vocabulary.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.convert import mscmt_keys as keys
from minimner.data.labels import AUX_TAGS, MAIN_TAGS, NUM_AUX_TAGS, NUM_TAGS
from minimner.models.bert import BertConfig, BertModel
from minimner.models.fusion import FUSION_METHODS, fusion_method, fusion_name, make_fusion
from minimner.nn.attention import BertCrossEncoder, BertSelfEncoder
from minimner.nn.augment import AUG_MODES, make_augment_fusion
from minimner.nn.crf import CRF
from minimner.nn.layers import Dropout, Embedding, Linear
from minimner.nn.module import Module, Parameter
from minimner.ops.linear import linear_backward, linear_forward

__all__ = ["MGCMTConfig", "MGCMT", "trans_matrix", "MERGE_MODES"]

#: What the fused visual vector is concatenated with before ``fusion_w`` (original ``main_cat`` 0 / 1).
MERGE_MODES = ("main", "bert")


def trans_matrix(dtype=np.float32, xp=None):
    """The auxiliary → main tag map of docs/model.md §4, (Ka, K) = (7, 13).

    Row = aux tag, column = main tag: PAD→PAD, O→O, B→{B-MISC, B-PER, B-ORG, B-LOC} ¼ each,
    I→the four I-* ¼ each, X→X, [CLS]→[CLS], [SEP]→[SEP]. Used only with ``aux_mix``.
    """
    xp = backend.xp() if xp is None else xp
    t = np.zeros((NUM_AUX_TAGS, NUM_TAGS), dtype=dtype)                    # (Ka, K)
    for a, aux in enumerate(AUX_TAGS):
        cols = [k for k, tag in enumerate(MAIN_TAGS) if (tag.split("-")[0] if aux in "BI" else tag) == aux]
        t[a, cols] = 1.0 / len(cols)
    return xp.asarray(t)


# ------------------------------------------------------------------------------ configuration
@dataclass
class MGCMTConfig:
    """Everything about MGCMT that is not in the BERT config (see the flag table in the module docstring)."""

    aug: str = "add"                 # semantic augmentation: add (paper) | gate | embed | none
    fusion: str = "gate_concat"      # fusion variant, one of models.fusion.FUSION_METHODS (paper: gate_concat)
    merge: str = "main"              # concatenate Fv with M (main, paper) or with S (bert)
    aux_mix: bool = False            # mix ½ of the aux emissions into the main ones through trans_matrix
    aux_loss: bool = True            # add ½ × the auxiliary span-CRF loss (paper: on)
    char_cnn: bool = False           # char-CNN inside BERT's embeddings (paper: off)
    image_dim: int = 2048            # C_img: 2048 for ResNet-50/101/152, 512 for ResNet-18/34
    regions: int = 49                # R of a missing image's grid (7×7 at 224×224)
    object_slots: int = 5            # O of a missing object vector
    object_vocab: int = 85           # Vo: rows of object_embeddings (COCO 80 + background + 4 never used)
    aug_dim: int = 200               # E: the augmentation vector size (paper: 200-d word2vec; GloVe 6B: 50)
    char_vocab: int = 0              # Vc: char vocabulary size (needed with char_cnn; 0 = none, written as 15 rows)
    char_dim: int = 128              # char embedding size
    max_wordlen: int = 12            # Lw: characters per word for the char-CNN
    layer_nums: tuple = (1, 1, 1)    # layers of txt2img / img2txt / txt2txt (the original's layer_num1/2/3)
    num_tags: int = NUM_TAGS         # K = 13
    num_aux_tags: int = NUM_AUX_TAGS # Ka = 7
    aux_weight: float = 0.5          # β of L = L_main + β L_aux
    mix_alpha: float = 0.5           # α of e ← α e + (1 − α) e_aux trans (aux_mix only)
    dropout: float = 0.1             # on S after augmentation (the original uses hidden_dropout_prob)

    def __post_init__(self):
        self.layer_nums = tuple(int(n) for n in self.layer_nums)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and the valid values."""
        if self.aug not in AUG_MODES:
            raise ValueError(f"MGCMTConfig.aug must be one of {AUG_MODES}, got {self.aug!r}")
        if self.fusion not in FUSION_METHODS:
            raise ValueError(f"MGCMTConfig.fusion must be one of {FUSION_METHODS}, got {self.fusion!r}")
        if self.merge not in MERGE_MODES:
            raise ValueError(f"MGCMTConfig.merge must be one of {MERGE_MODES}, got {self.merge!r}")
        for name in ("image_dim", "regions", "object_slots", "object_vocab", "aug_dim", "char_dim", "max_wordlen",
                     "num_tags", "num_aux_tags"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"MGCMTConfig.{name} must be a positive integer, got {v!r}")
        if self.char_cnn and (isinstance(self.char_vocab, bool) or int(self.char_vocab) < 5):
            raise ValueError(f"MGCMTConfig.char_cnn needs char_vocab ≥ 5 (the 5 special characters), "
                             f"got {self.char_vocab!r}")
        if len(self.layer_nums) != 3 or min(self.layer_nums) < 1:
            raise ValueError(f"MGCMTConfig.layer_nums must be three positive integers, got {self.layer_nums!r}")

    # -- the original's flags (docs/model.md §1, docs/original-quirks.md §1) -------------------------
    _FLAGS = ("use_char_cnn", "aug_before", "aug_gate", "ffusion_method", "main_cat", "alpha_seg", "seg_task")

    @classmethod
    def from_original_flags(cls, use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0,
                            alpha_seg=1, seg_task=0, **sizes) -> "MGCMTConfig":
        """Translate the original ``config.py`` flags (defaults = the original's defaults, docs/model.md §1).

        ``use_char_cnn = 0`` turns the char-CNN on; ``aug_before`` 0 / 1 / other = in the
        embeddings / after BERT / none, and after BERT ``aug_gate`` 1 / 0 = add / gate;
        ``main_cat`` 0 / 1 = concatenate with M / with S; ``alpha_seg = 0`` mixes the aux
        emissions in; ``seg_task = 0`` keeps the auxiliary loss. ``sizes`` are other fields.

        Raises
        ------
        ValueError
            for a non-integer flag or a value the original does not define (``aug_gate``,
            ``main_cat``, ``use_char_cnn``, ``alpha_seg``, ``seg_task`` outside {0, 1};
            ``ffusion_method`` outside 0–8).
        """
        flags = dict(use_char_cnn=use_char_cnn, aug_before=aug_before, aug_gate=aug_gate,
                     ffusion_method=ffusion_method, main_cat=main_cat, alpha_seg=alpha_seg, seg_task=seg_task)
        for name, v in flags.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"original flag {name} must be an integer, got {v!r}")
            if name in ("use_char_cnn", "aug_gate", "main_cat", "alpha_seg", "seg_task") and v not in (0, 1):
                raise ValueError(f"original flag {name} must be 0 or 1, got {v}")
        if aug_before == 0:
            aug = "embed"
        elif aug_before == 1:
            aug = "add" if aug_gate == 1 else "gate"
        else:
            aug = "none"
        return cls(aug=aug, fusion=fusion_name(int(ffusion_method)), merge=MERGE_MODES[main_cat],
                   aux_mix=alpha_seg == 0, aux_loss=seg_task == 0, char_cnn=use_char_cnn == 0, **sizes)

    def original_flags(self) -> dict:
        """The original ``config.py`` flags of this configuration (inverse of :meth:`from_original_flags`)."""
        aug_before, aug_gate = {"add": (1, 1), "gate": (1, 0), "embed": (0, 1), "none": (2, 1)}[self.aug]
        return {"use_char_cnn": 0 if self.char_cnn else 1, "aug_before": aug_before, "aug_gate": aug_gate,
                "ffusion_method": fusion_method(self.fusion), "main_cat": MERGE_MODES.index(self.merge),
                "alpha_seg": 0 if self.aux_mix else 1, "seg_task": 0 if self.aux_loss else 1}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layer_nums"] = list(self.layer_nums)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "MGCMTConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown MGCMT settings {sorted(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------ init helpers
def _normal_(module, rng, std=0.02):
    """BERT's init on a sub-tree: Linear/Embedding weights N(0, std), Linear biases 0 (LayerNorm stays 1/0)."""
    for _, m in module.named_modules():
        if isinstance(m, (Linear, Embedding)):
            w = m.weight.data
            w[...] = (rng.standard_normal(w.shape) * std).astype(w.dtype)
            if isinstance(m, Linear) and m.bias is not None:
                m.bias.data[...] = 0


def _uniform(rng, bound, shape):
    return rng.uniform(-bound, bound, shape).astype(backend.DEFAULT_FLOAT)


# ------------------------------------------------------------------------------ the model
class MGCMT(Module):
    """The multi-granularity cross-modal tagger (see the module docstring for the whole pass).

    Parameters
    ----------
    bert : BertModel (e.g. ``BertModel.from_pretrained(...)``) without the augmentation or
        char hooks; the model attaches the ones its config needs. Every extra encoder copies
        BERT's heads, feed-forward size, dropouts and LayerNorm eps, as the original does.
    config : MGCMTConfig (default: the paper's flags).
    rng : generator shared by the initialisation and every dropout mask.

    Init follows docs/training.md §1 (only the distributions, not the original's random stream):
    N(0, 0.02) for the modules the original builds before ``apply(init_bert_weights)``
    (object_embeddings, self_attention(_v2), vismap2text(_v2), txt2img / img2txt / txt2txt,
    classifier, aux_classifier), PyTorch defaults for those built after, U(±1/√C) for the
    free-standing matrices, U(±0.1) for the CRFs.
    """

    def __init__(self, bert: BertModel, config: MGCMTConfig | None = None, rng=None):
        super().__init__()
        config = MGCMTConfig() if config is None else config
        rng = backend.rng() if rng is None else rng
        bc = bert.config
        C = bc.hidden_size
        enc = dict(hidden_size=C, num_attention_heads=bc.num_attention_heads, intermediate_size=bc.intermediate_size,
                   hidden_dropout_prob=bc.hidden_dropout_prob,
                   attention_probs_dropout_prob=bc.attention_probs_dropout_prob, layer_norm_eps=bc.layer_norm_eps,
                   rng=rng)
        self.config = config
        if bert.pooler is not None:
            bert.pooler = None       # the original computes BERT's pooled output and discards it; minimner skips it
        # Built in the original's order; the first group gets BERT's N(0, 0.02) init.
        self.object_embeddings = Embedding(config.object_vocab, C, rng=rng)          # (Vo, C), no padding_idx
        self.bert = bert
        self.self_attention = BertSelfEncoder(initializer_range=0.02, **enc)         # auxiliary text branch
        self.self_attention_v2 = BertSelfEncoder(initializer_range=0.02, **enc)      # main text branch
        self.dropout = Dropout(config.dropout, rng=rng)
        self.vismap2text = Linear(config.image_dim, C, rng=rng)                      # (C, C_img)
        self.vismap2text_v2 = Linear(config.image_dim, C, rng=rng)
        n1, n2, n3 = config.layer_nums
        self.txt2img_attention = BertCrossEncoder(num_hidden_layers=n1, initializer_range=0.02, **enc)
        self.img2txt_attention = BertCrossEncoder(num_hidden_layers=n2, initializer_range=0.02, **enc)
        self.txt2txt_attention = BertCrossEncoder(num_hidden_layers=n3, initializer_range=0.02, **enc)
        self.classifier = Linear(C, config.num_tags, rng=rng)
        self.aux_classifier = Linear(C, config.num_aux_tags, rng=rng)
        for m in (self.object_embeddings, self.vismap2text, self.vismap2text_v2, self.classifier,
                  self.aux_classifier):
            _normal_(m, rng)
        self.crf = CRF(config.num_tags, rng=rng)
        self.aux_crf = CRF(config.num_aux_tags, rng=rng) if config.aux_loss else None  # read by the aux loss only
        # Built after the original's init_bert_weights: PyTorch default init.
        self.augment = (make_augment_fusion(config.aug, config.aug_dim, C, rng)
                        if config.aug in ("add", "gate") else None)
        if config.aug == "embed":
            bert.embeddings.attach_augment(config.aug_dim, rng)
        if config.char_cnn:
            bert.embeddings.attach_char_cnn(config.char_vocab, char_dim=config.char_dim,
                                            max_wordlen=config.max_wordlen, rng=rng)
        self.img2img_attention = BertSelfEncoder(initializer_range=None, **enc)
        self.img2img_attention_v2 = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2obj_attention = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2obj_attention_v2 = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2txt_attention = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.txt2obj_attention = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.txt2obj_attention_v2 = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.fusion = make_fusion(config.fusion, C, rng, hidden_dropout_prob=bc.hidden_dropout_prob)
        bound = 1.0 / math.sqrt(C)                                                   # reset_parameters(1/√C)
        self.fusion_w = Parameter(_uniform(rng, bound, (2 * C, C)))                  # (2C, C), used as x W
        self.fusion_bias = Parameter(_uniform(rng, bound, (C,)))                     # (C,)
        self.aug_table = None       # host augmentation table (AugmentationTable), set by training / load_run
        self.char_vocab = None      # host char vocabulary (dict char -> id), char_cnn only
        self.original_unused = OrderedDict()  # original tensors no configuration reads (from_original)
        self.attention, self.attention_layers, self.gates = {}, {}, {}
        self._default_trans = (None, None)   # ((device, dtype), (Ka, K) trans_matrix there): built on first use

    # ------------------------------------------------------------------ inputs (API edge)
    def _param_dtype(self):
        return self.fusion_w.data.dtype

    def _prepare(self, input_ids, input_mask, aug, image, objects, trans, char_ids, region_mask):
        """Validate and move the inputs to the model's backend; returns the normalised arrays."""
        cfg = self.config
        where = backend.device_of(self.fusion_w.data)
        xp = backend.get_xp(self.fusion_w.data)
        dtype = self._param_dtype()

        def put(a):
            return backend.asarray(a, backend=where)

        input_ids = put(input_ids)
        if input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids must be a (B, T) integer array, got {input_ids.dtype} "
                             f"shape {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        mask = put(input_mask)
        if tuple(mask.shape) != (B, T) or mask.dtype.kind not in "biu":
            raise ValueError(f"input_mask must be a (B, T) = {(B, T)} 0/1 integer or bool array, got {mask.dtype} "
                             f"shape {tuple(mask.shape)}")
        mask = mask.astype(bool)
        if cfg.aug == "none":
            aug = None                                                     # no augmentation: the input is unused
        else:
            if aug is None:
                raise ValueError(f"this model fuses augmentation vectors (aug={cfg.aug!r}): pass aug of shape "
                                 f"(B, T, E) = {(B, T, cfg.aug_dim)}")
            aug = put(aug)
            if tuple(aug.shape) != (B, T, cfg.aug_dim) or aug.dtype != dtype:
                raise ValueError(f"aug must be a (B, T, E) = {(B, T, cfg.aug_dim)} {dtype} array, got "
                                 f"{aug.dtype} shape {tuple(aug.shape)}")
        if image is None:
            grid = xp.zeros((B, cfg.regions, cfg.image_dim), dtype=dtype)  # (B, R, C_img): the "no image" input
            rmask = xp.zeros((B, cfg.regions), dtype=bool)                 # (B, R): every region masked
            grid_hw = None
        else:
            image = put(image)
            if image.ndim != 4 or image.shape[0] != B or image.shape[1] != cfg.image_dim or image.dtype != dtype:
                raise ValueError(f"image must be a (B, C_img, h, w) = ({B}, {cfg.image_dim}, h, w) {dtype} array "
                                 f"or None, got {image.dtype} shape {tuple(image.shape)}")
            grid_hw = tuple(image.shape[2:])
            R = grid_hw[0] * grid_hw[1]
            # Region r = w·row + col, the original's view(-1, C, R).permute(0, 2, 1).
            grid = image.reshape(B, cfg.image_dim, R).transpose(0, 2, 1)   # (B, C_img, h, w) -> (B, R, C_img)
            if region_mask is None:
                rmask = xp.ones((B, R), dtype=bool)                        # (B, R): every region real
            else:
                rmask = put(region_mask)
                if tuple(rmask.shape) != (B, R) or rmask.dtype.kind not in "biu":
                    raise ValueError(f"region_mask must be a (B, R) = {(B, R)} 0/1 array, got {rmask.dtype} "
                                     f"shape {tuple(rmask.shape)}")
                rmask = rmask.astype(bool)
            # A masked region is no region at all: its features are zeroed, so an image whose every
            # region is masked is exactly the missing-image input above.
            grid = grid * rmask[:, :, None].astype(dtype)                  # (B, R, C_img) ⊙ (B, R, 1)
        if objects is None:
            objects = xp.zeros((B, cfg.object_slots), dtype=np.int64)      # (B, O): no objects
        else:
            objects = put(objects)
            if objects.ndim != 2 or objects.shape[0] != B or objects.dtype.kind not in "iu":
                raise ValueError(f"objects must be a (B, O) integer array of object ids or None, got "
                                 f"{objects.dtype} shape {tuple(objects.shape)}")
        if cfg.char_cnn:
            if char_ids is None:
                raise ValueError(f"this model uses the char-CNN: pass char_ids of shape (B, T, Lw) = "
                                 f"{(B, T, cfg.max_wordlen)}")
            char_ids = put(char_ids)
        else:
            char_ids = None
        if trans is None and cfg.aux_mix:
            # The default map is built on the host and moved once per (device, dtype), not per step.
            key = (where, np.dtype(dtype).str)
            if self._default_trans[0] != key:
                self._default_trans = (key, trans_matrix(dtype, xp))       # (Ka, K)
            trans = self._default_trans[1]
        elif trans is not None:                                            # checked even when aux_mix is off
            trans = put(trans)
            if tuple(trans.shape) != (cfg.num_aux_tags, cfg.num_tags):
                raise ValueError(f"trans_matrix must have shape (Ka, K) = {(cfg.num_aux_tags, cfg.num_tags)}, "
                                 f"got {tuple(trans.shape)}")
            trans = trans.astype(dtype)
        return input_ids, mask, aug, grid, rmask, grid_hw, objects, trans, char_ids

    # ------------------------------------------------------------------ forward
    def emissions(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None,
                  region_mask=None):
        """Main and auxiliary emission scores.

        Parameters
        ----------
        input_ids : (B, T) int word-piece ids ([CLS] … [SEP], padding).
        input_mask : (B, T) 0/1 or bool prefix mask (1 on [CLS], pieces, [SEP]).
        aug : (B, T, E) float augmentation input (docs/augmentation.md §2), or None with ``aug='none'``.
        image : (B, C_img, h, w) float region features (7×7 at 224), or None when no tweet of
            the batch has an image.
        objects : (B, O) int object ids (0 = empty slot), or None for no objects.
        trans_matrix : (Ka, K) aux → main map for ``aux_mix`` (default :func:`trans_matrix`).
        char_ids : (B, T, Lw) int character ids (char-CNN only).
        region_mask : (B, R) 0/1 or bool, 0 for the regions of a missing image (default: all 1
            when ``image`` is given).

        Returns
        -------
        main : (B, T, K) and aux : (B, T, Ka) arrays in the parameters' dtype.

        Raises
        ------
        ValueError
            naming the input, the expected and the received shape or dtype.
        """
        e, e_aux, _ = self._emissions(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids,
                                      region_mask)
        return e, e_aux

    def _emissions(self, input_ids, input_mask, aug, image, objects, trans_matrix, char_ids, region_mask,
                   need_aux: bool = True):
        """:meth:`emissions` plus the normalised (B, T) bool mask (what the CRFs read).

        ``need_aux=False`` (decoding) skips the auxiliary text branch when nothing reads it (no
        ``aux_mix``): the original computes it and throws it away at inference (docs/model.md §2 step 14);
        ``e_aux`` is then None.
        """
        cfg = self.config
        ids, mask, aug, grid, rmask, grid_hw, objects, trans, char_ids = self._prepare(
            input_ids, input_mask, aug, image, objects, trans_matrix, char_ids, region_mask)
        obj_mask = objects != 0                                              # (B, O) m_obj
        att = OrderedDict()
        # 1-2: BERT, semantic augmentation, dropout.
        hooks = {"char_ids": char_ids} if cfg.char_cnn else {}
        s0 = self.bert.forward(ids, mask, aug=aug if cfg.aug == "embed" else None, **hooks)  # (B, T, C)
        s = self.augment.forward(s0, aug) if self.augment is not None else s0          # (B, T, C)
        s = self.dropout.forward(s)                                                     # (B, T, C) S
        # 3: auxiliary text branch and its span emissions.
        e_aux = None
        if need_aux or cfg.aux_mix:
            a, att["self_aux"] = self.self_attention.forward(s, mask)                   # (B, T, C)
            e_aux = self.aux_classifier.forward(a)                                      # (B, T, C) -> (B, T, Ka)
        # 4: main text branch, the query of every cross-modal path.
        m, att["self_main"] = self.self_attention_v2.forward(s, mask)                   # (B, T, C) M
        # 5: text attends to the image grid.
        g1 = self.vismap2text.forward(grid)                                             # (B, R, C_img) -> (B, R, C)
        g1, att["img2img"] = self.img2img_attention.forward(g1, rmask)                  # (B, R, C)
        u_img, att["txt2img"] = self.txt2img_attention.forward(m, g1, rmask)            # (B, T, C) U_img
        # 6: regions attend to the text, then the text attends to those text-aware regions.
        g2 = self.vismap2text_v2.forward(grid)                                          # (B, R, C)
        g2, att["img2img_v2"] = self.img2img_attention_v2.forward(g2, rmask)            # (B, R, C)
        p, att["img2txt"] = self.img2txt_attention.forward(g2, m, mask)                 # (B, R, C) P
        u_imgtxt, att["txt2txt"] = self.txt2txt_attention.forward(m, p, rmask)          # (B, T, C) U_imgtxt
        # 7: text attends to the objects.
        eo = self.object_embeddings.forward(objects)                                    # (B, O) -> (B, O, C)
        e1, att["obj2obj"] = self.obj2obj_attention.forward(eo, obj_mask)               # (B, O, C)
        u_obj, att["txt2obj"] = self.txt2obj_attention.forward(m, e1, obj_mask)         # (B, T, C) U_obj
        # 8: objects attend to the text, then the text attends to those text-aware objects.
        e2, att["obj2obj_v2"] = self.obj2obj_attention_v2.forward(eo, obj_mask)         # (B, O, C)
        q, att["obj2txt"] = self.obj2txt_attention.forward(e2, m, mask)                 # (B, O, C) Q
        u_objtxt, att["txt2obj_v2"] = self.txt2obj_attention_v2.forward(m, q, obj_mask)  # (B, T, C) U_objtxt
        # 10: fusion of the four paths.
        fv = self.fusion.forward(u_img, u_imgtxt, u_obj, u_objtxt)                      # (B, T, C) Fv
        # 11: Z = [X; Fv] fusion_w + fusion_bias with X = M (merge 'main') or S ('bert'); fusion_w is
        # (2C, C) used untransposed, i.e. the Linear of the transposed view.
        x = m if cfg.merge == "main" else s
        C = x.shape[-1]
        w = self.fusion_w.data
        z, lin_x = linear_forward(x, w[:C].T)                                          # (B,T,C) @ (C,C) -> (B,T,C)
        zf, lin_f = linear_forward(fv, w[C:].T, self.fusion_bias.data)                 # (B,T,C) @ (C,C) + (C,)
        z += zf                                                                         # (B, T, C) Z
        # 12: emissions (and the optional aux → main mixing).
        e = self.classifier.forward(z)                                                  # (B, T, C) -> (B, T, K)
        mix = None
        if cfg.aux_mix:
            alpha = e.dtype.type(cfg.mix_alpha)
            e_trans, mix = linear_forward(e_aux, trans.T)                               # (B,T,Ka) @ (Ka,K) -> (B,T,K)
            e = alpha * e + (e.dtype.type(1) - alpha) * e_trans                         # (B, T, K)
        self.attention = OrderedDict((k, v[-1]) for k, v in att.items())
        self.attention_layers = att
        self.gates = dict(self.fusion.gates)
        self._save_cache(dict(lin_x=lin_x, lin_f=lin_f, mix=mix, rmask=rmask, grid_hw=grid_hw,
                              image_given=image is not None))
        return e, e_aux, mask

    def _backward_emissions(self, de, de_aux, input_grads: bool = False):
        """Back-propagate d main (B, T, K) and d aux (B, T, Ka) (either may be None) into every ``.grad``.

        With ``input_grads`` the gradients of the float inputs are returned too: ``aug``
        (B, T, E) (None without augmentation) and ``image`` (B, C_img, h, w) (None when no
        image was given or no path reads it), for gradient checks and saliency. Training does
        not need them: the image features are constants, so the two (N, C) @ (C, C_img)
        products of ``vismap2text(_v2)`` are skipped by default (about 3.7 GFLOP of a
        MiniLM-size step), and the dict holds None.
        """
        cache = self._pop_cache()
        cfg = self.config
        mix = cache["mix"]
        # 12: e = α e_cls + (1 − α) e_aux trans.
        if mix is not None:
            alpha = de.dtype.type(cfg.mix_alpha)
            de_trans = (de.dtype.type(1) - alpha) * de                                  # (B, T, K)
            de_aux_mix, _, _ = linear_backward(de_trans, mix)                           # (B, T, Ka): trans is constant
            de_aux = de_aux_mix if de_aux is None else de_aux + de_aux_mix
            de = alpha * de                                                             # (B, T, K)
        dz = self.classifier.backward(de)                                               # (B, T, C)
        # 11: Z = X W[:C] + Fv W[C:] + b.
        dx, dw_x, _ = linear_backward(dz, cache["lin_x"])                               # (B, T, C), (C, C) of W[:C]ᵀ
        dfv, dw_f, db = linear_backward(dz, cache["lin_f"])                             # (B, T, C), (C, C), (C,)
        C = dz.shape[-1]
        self.fusion_w.grad[:C] += dw_x.T                                                # back to the (2C, C) layout
        self.fusion_w.grad[C:] += dw_f.T
        self.fusion_bias.grad += db
        dm = dx if cfg.merge == "main" else None                                        # gradient into M
        ds_merge = dx if cfg.merge == "bert" else None                                  # … or into S
        # 10: fusion; a path the variant does not read comes back as None and its branch is skipped.
        du_img, du_imgtxt, du_obj, du_objtxt = self.fusion.backward(dfv)

        def add(acc, d):
            return d if acc is None else (acc if d is None else acc + d)

        # 8: U_objtxt = CrossL(M ← Q), Q = CrossL(E2 ← M), E2 = SelfL(Eo).
        deo = None
        if du_objtxt is not None:
            dm_a, dq = self.txt2obj_attention_v2.backward(du_objtxt)                    # (B, T, C), (B, O, C)
            de2, dm_b = self.obj2txt_attention.backward(dq)                             # (B, O, C), (B, T, C)
            deo = add(deo, self.obj2obj_attention_v2.backward(de2))                     # (B, O, C)
            dm = add(add(dm, dm_a), dm_b)
        # 7: U_obj = CrossL(M ← E1), E1 = SelfL(Eo).
        if du_obj is not None:
            dm_c, de1 = self.txt2obj_attention.backward(du_obj)                         # (B, T, C), (B, O, C)
            deo = add(deo, self.obj2obj_attention.backward(de1))                        # (B, O, C)
            dm = add(dm, dm_c)
        if deo is not None:
            self.object_embeddings.backward(deo)                                        # scatter into Vo rows
        # 6: U_imgtxt = CrossL(M ← P), P = CrossL(G2 ← M), G2 = SelfL(G W_v2ᵀ + b).
        dgrid = None
        if du_imgtxt is not None:
            dm_d, dp = self.txt2txt_attention.backward(du_imgtxt)                       # (B, T, C), (B, R, C)
            dg2, dm_e = self.img2txt_attention.backward(dp)                             # (B, R, C), (B, T, C)
            dg2 = self.img2img_attention_v2.backward(dg2)                               # (B, R, C)
            dgrid = add(dgrid, self.vismap2text_v2.backward(dg2, need_dx=input_grads))  # (B, R, C_img)
            dm = add(add(dm, dm_d), dm_e)
        # 5: U_img = CrossL(M ← G1), G1 = SelfL(G W_v1ᵀ + b).
        if du_img is not None:
            dm_f, dg1 = self.txt2img_attention.backward(du_img)                         # (B, T, C), (B, R, C)
            dg1 = self.img2img_attention.backward(dg1)                                  # (B, R, C)
            dgrid = add(dgrid, self.vismap2text.backward(dg1, need_dx=input_grads))     # (B, R, C_img)
            dm = add(dm, dm_f)
        # 4: M = SelfL_main(S).
        ds = self.self_attention_v2.backward(dm) if dm is not None else None            # (B, T, C)
        # 3: e_aux = SelfL_aux(S) W_auxᵀ + b (no gradient when neither the aux loss nor the mix reads it).
        if de_aux is not None:
            da = self.aux_classifier.backward(de_aux)                                   # (B, T, C)
            ds = add(ds, self.self_attention.backward(da))
        ds = add(ds, ds_merge)
        # 1-2: dropout, augmentation, BERT.
        ds = self.dropout.backward(ds)                                                  # (B, T, C)
        daug = None
        if self.augment is not None:
            ds, daug = self.augment.backward(ds)                                        # (B, T, C), (B, T, E)
        daug_embed = self.bert.backward(ds)                                             # (B, T, E) in mode embed
        dimage = None
        if cache["image_given"] and dgrid is not None:
            dgrid = dgrid * cache["rmask"][:, :, None].astype(dgrid.dtype)              # masked regions: zeroed input
            B, R, Ci = dgrid.shape
            dimage = dgrid.transpose(0, 2, 1).reshape(B, Ci, *cache["grid_hw"])         # (B, R, C_img) -> (B,C_img,h,w)
        daug = daug_embed if cfg.aug == "embed" else daug
        return {"aug": daug if input_grads else None, "image": dimage}

    # ------------------------------------------------------------------ loss and decoding
    def loss(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None, region_mask=None,
             *, labels, aux_labels=None):
        """The original's training loss ``−mean_b log p(y|e) − ½ mean_b log p(y_aux|e_aux)`` (docs/model.md §2 step 13).

        Parameters as :meth:`emissions`, plus ``labels`` (B, T) main-tag ids and ``aux_labels``
        (B, T) span-tag ids (required when ``aux_loss``). Both CRFs use ``input_mask``, so they
        include [CLS], [SEP] and X positions. Call :meth:`backward` next.

        Returns
        -------
        0-d array in the parameters' dtype.
        """
        cfg = self.config
        if cfg.aux_loss and aux_labels is None:
            raise ValueError("this model trains the auxiliary span CRF (aux_loss=True): pass aux_labels")
        e, e_aux, mask = self._emissions(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids,
                                         region_mask)
        where = backend.device_of(e)
        labels = backend.asarray(labels, backend=where)
        loss = self.crf.forward(e, labels, mask)                                       # mean NLL over the batch
        if cfg.aux_loss:
            aux_labels = backend.asarray(aux_labels, backend=where)
            loss = loss + loss.dtype.type(cfg.aux_weight) * self.aux_crf.forward(e_aux, aux_labels, mask)
        self._loss_pending = True
        return loss

    def backward(self, input_grads: bool = False):
        """Back-propagate the last :meth:`loss` into every parameter's ``.grad`` (adds; call ``zero_grad`` first).

        Returns
        -------
        dict of input gradients (``aug``, ``image``); None values unless ``input_grads``
        (see :meth:`_backward_emissions`).
        """
        if not getattr(self, "_loss_pending", False):
            raise RuntimeError("MGCMT.backward needs a pending loss(...) (call loss first; one backward per loss)")
        self._loss_pending = False
        de = self.crf.backward()                                                        # (B, T, K)
        de_aux = self.aux_crf.backward(self.config.aux_weight) if self.config.aux_loss else None  # (B, T, Ka)
        return self._backward_emissions(de, de_aux, input_grads)

    def decode(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None,
               region_mask=None, *, constrained: bool = True, word_mask=None) -> list[list[int]]:
        """Viterbi decoding of the main CRF: one list of tag ids (length Σ mask) per sentence.

        ``constrained=False`` is plain Viterbi, as the original. ``constrained=True`` applies
        :func:`minimner.constraints.paper_constraints`: valid BIO (X transparent), [CLS]
        first and [SEP] last, never PAD, and — with ``word_mask`` (B, T) bool, True at each
        word's first piece — no X/[CLS]/[SEP] on a word position (docs/differences.md §3).
        """
        from minimner.constraints import paper_constraints
        from minimner.nn.module import no_grad

        with no_grad():                                   # no backward after decoding: keep no caches
            e, _, mask = self._emissions(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids,
                                         region_mask, need_aux=False)
        allowed = None
        if constrained:
            wm = None if word_mask is None else backend.asarray(word_mask, backend=backend.device_of(e)).astype(bool)
            allowed = paper_constraints(wm, xp=backend.get_xp(e))
        return self.crf.decode(e, mask, allowed=allowed)

    # ------------------------------------------------------------------ batches (training and evaluation)
    def batch_inputs(self, batch, source=None) -> dict:
        """The keyword inputs of :meth:`emissions` / :meth:`loss` / :meth:`decode` for a Batch.

        ``aug`` comes from ``aug_table`` (:func:`minimner.data.batching.augment_input`), the char
        ids from ``char_vocab``, ``image`` / ``region_mask`` / ``objects`` from ``source`` (a
        :class:`minimner.data.multimodal.MultimodalSource`; None: every image missing, no objects).

        Raises
        ------
        ValueError
            when the model needs an augmentation table or a char vocabulary it does not have.
        """
        from minimner.data.batching import augment_input

        cfg = self.config
        kw = dict(input_ids=batch.input_ids, input_mask=batch.attention_mask, aug=None, image=None, objects=None,
                  char_ids=None, region_mask=None)
        if cfg.aug != "none":
            if self.aug_table is None:
                raise ValueError(f"this MGCMT fuses augmentation vectors (aug={cfg.aug!r}) but has no aug_table")
            if self.aug_table.dim != cfg.aug_dim:
                raise ValueError(f"the augmentation table has vectors of size {self.aug_table.dim}, the model "
                                 f"expects {cfg.aug_dim}")
            kw["aug"] = augment_input(batch, self.aug_table).astype(self._param_dtype())   # (B, T, E)
        if cfg.char_cnn:
            from minimner.data.chars import char_ids

            if self.char_vocab is None:
                raise ValueError("this MGCMT uses the char-CNN but has no char_vocab")
            kw["char_ids"] = char_ids(batch, self.char_vocab, cfg.max_wordlen)            # (B, T, Lw)
        if source is not None:
            kw.update(source.inputs(batch, np.dtype(self._param_dtype())))
        return kw

    def forward(self, batch, source=None):
        """Training loss of a labelled :class:`~minimner.data.batching.Batch` (see :meth:`loss`)."""
        if batch.labels is None:
            raise ValueError("MGCMT.forward needs a labelled batch (use predict_words for unlabelled text)")
        return self.loss(**self.batch_inputs(batch, source), labels=batch.labels, aux_labels=batch.aux_labels)

    def predict_words(self, batch, constrained: bool = True, source=None) -> list[list[str]]:
        """Word-level predicted tags of a Batch (one list per sentence, one tag per word).

        Constrained decoding (default) keeps word positions on O/B-*/I-* (docs/differences.md §3). Runs
        without caches (:func:`minimner.nn.module.no_grad`), like :meth:`decode`.
        """
        from minimner.models.text_crf import piece_word_mask

        paths = self.decode(**self.batch_inputs(batch, source), constrained=constrained,
                            word_mask=piece_word_mask(batch) if constrained else None)
        first = backend.asnumpy(batch.first_piece)                                      # (B, W) host: API edge
        words = backend.asnumpy(batch.word_mask)                                        # (B, W)
        return [[MAIN_TAGS[path[j]] for j in first[b][words[b]]] for b, path in enumerate(paths)]

    # ------------------------------------------------------------------ the original's layout
    def original_layout(self) -> "OrderedDict[str, tuple]":
        """Every key of the authors' state dict for this model's sizes, with its shape (file order).

        The 13 GMF / FiltrationGate tensors are 768 wide as in the original, except for the
        ``gmf_filtration`` fusion, which minimner generalises to H (identical at H = 768).
        """
        bc, cfg = self.bert.config, self.config
        return keys.original_layout(
            bc.hidden_size, bc.intermediate_size, bc.num_hidden_layers, bc.vocab_size, bc.max_position_embeddings,
            bc.type_vocab_size, char_vocab=cfg.char_vocab or 15,
            image_dim=cfg.image_dim, aug_dim=cfg.aug_dim, object_vocab=cfg.object_vocab, num_tags=cfg.num_tags,
            num_aux_tags=cfg.num_aux_tags, char_dim=cfg.char_dim, layer_nums=cfg.layer_nums,
            gmf_hidden=bc.hidden_size if cfg.fusion == "gmf_filtration" else 768)

    def used_original_keys(self) -> list[str]:
        """The original keys this configuration reads (docs/parameters.md §4), in file order."""
        cfg = self.config
        return keys.used_keys(self.original_layout(), aug=cfg.aug, fusion_method=fusion_method(cfg.fusion),
                              char_cnn=cfg.char_cnn, aux_loss=cfg.aux_loss)

    @classmethod
    def from_original(cls, state_dict: Mapping, bert_config=None, rng=None, **original_flags) -> "MGCMT":
        """Build an MGCMT from the authors' state dict (names → NumPy arrays) and their ``config.py`` flags.

        Parameters
        ----------
        state_dict : mapping original key → array (float; docs/parameters.md §1), e.g. ``torch.load(...,
            weights_only=True)`` converted to NumPy. Every key must belong to the original
            layout; every key the flags use must be present with the right shape and finite
            values. Keys the flags do not use are kept aside (``original_unused``), even
            when they hold NaN/inf (the never-initialised ``*_aux_w``), and reported.
        bert_config : BertConfig or dict (a ``config.json``); the sizes are read from the
            tensors, so only ``num_attention_heads`` (default H/64, bert-base's 64-wide heads),
            ``layer_norm_eps`` (1e-12) and the dropouts come from it.
        rng : generator for the dropout masks.
        **original_flags : ``use_char_cnn, aug_before, aug_gate, ffusion_method, main_cat,
            alpha_seg, seg_task`` with the original's values; defaults are the original's (docs/model.md §1).

        Returns
        -------
        MGCMT in ``eval()`` mode. ``model.load_report`` has ``used``, ``unused`` (keys),
        ``nonfinite_unused`` (keys) and ``flags``.

        Raises
        ------
        KeyError
            naming a missing used key or a key outside the original layout.
        ValueError
            naming a key whose shape or dtype is wrong or whose used values are not finite,
            or a bad flag.
        """
        sd = OrderedDict(state_dict)
        flag_names = MGCMTConfig._FLAGS
        unknown = [k for k in original_flags if k not in flag_names]
        if unknown:
            raise ValueError(f"unknown original flag(s) {unknown}; expected some of {list(flag_names)}")

        def need(key):
            if key not in sd:
                raise KeyError(f"original state dict: missing key {key!r}")
            return sd[key]

        def dims(key, n):
            a = need(key)
            shape = tuple(getattr(a, "shape", ()))
            if len(shape) != n:
                raise ValueError(f"original state dict: {key!r} should have {n} dimensions, got shape {shape}")
            return shape

        V, C = dims("bert.embeddings.word_embeddings.weight", 2)
        P = dims("bert.embeddings.position_embeddings.weight", 2)[0]
        Tv = dims("bert.embeddings.token_type_embeddings.weight", 2)[0]
        F = dims("bert.encoder.layer.0.intermediate.dense.weight", 2)[0]
        L = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("bert.encoder.layer."))

        def n_layers(name):
            return 1 + max([int(k.split(".")[2]) for k in sd if k.startswith(f"{name}.layer.")] or [0])

        base = bert_config.to_dict() if isinstance(bert_config, BertConfig) else dict(bert_config or {})
        base.update(vocab_size=V, hidden_size=C, num_hidden_layers=L, intermediate_size=F,
                    max_position_embeddings=P, type_vocab_size=Tv)
        base.setdefault("num_attention_heads", max(1, C // 64))
        bert_cfg = BertConfig.from_dict(base, where="MGCMT.from_original bert_config")
        sizes = dict(image_dim=dims("vismap2text.weight", 2)[1], aug_dim=dims("maug_linear.weight", 2)[1],
                     object_vocab=dims("object_embeddings.weight", 2)[0],
                     char_vocab=dims("bert.embeddings.char_cnn_model.char_emb.weight", 2)[0],
                     char_dim=dims("bert.embeddings.char_cnn_model.char_emb.weight", 2)[1],
                     num_tags=dims("classifier.weight", 2)[0], num_aux_tags=dims("aux_classifier.weight", 2)[0],
                     layer_nums=(n_layers("txt2img_attention"), n_layers("img2txt_attention"),
                                 n_layers("txt2txt_attention")))
        config = MGCMTConfig.from_original_flags(**original_flags, **sizes)
        bert = BertModel(bert_cfg, add_pooling_layer=False, rng=rng, init=False)
        model = cls(bert, config, rng=rng)
        layout = model.original_layout()
        extra = [k for k in sd if k not in layout]
        if extra:
            raise KeyError(f"original state dict: key(s) outside the MSCMT layout: {extra[:10]}"
                           f"{' …' if len(extra) > 10 else ''}")
        used = set(model.used_original_keys())
        mine = model.state_dict()
        state, unused, nonfinite = OrderedDict(), OrderedDict(), []
        for key, shape in layout.items():
            a = need(key)
            arr = np.asarray(a)
            if tuple(arr.shape) != shape:
                raise ValueError(f"original state dict: {key!r} has shape {tuple(arr.shape)}, expected {shape} "
                                 f"(sizes read from the tensors: H={C}, F={F}, L={L}, V={V}, "
                                 f"C_img={sizes['image_dim']} from 'vismap2text.weight', E={sizes['aug_dim']} "
                                 f"from 'maug_linear.weight', Vc={sizes['char_vocab']})")
            if arr.dtype.kind != "f":
                raise ValueError(f"original state dict: {key!r} has dtype {arr.dtype}, expected a float array")
            if key in used:
                if not np.isfinite(arr).all():
                    raise ValueError(f"original state dict: {key!r} holds NaN or inf values")
                state[keys.minimner_name(key)] = arr
            else:
                unused[key] = arr
                if not np.isfinite(arr).all():
                    nonfinite.append(key)
        missing = [k for k in mine if k not in state]
        assert not missing, f"minimner parameters without an original key: {missing}"
        model.load_state_dict(state, strict=True)
        model.original_unused = unused
        model.load_report = {"used": len(state), "unused": list(unused), "nonfinite_unused": nonfinite,
                             "flags": config.original_flags()}
        return model.eval()

    def to_original(self, grads: bool = False) -> "OrderedDict[str, np.ndarray]":
        """The authors' layout as NumPy arrays, in file order.

        ``grads=False``: every key of the layout — this model's weights for the keys its flags
        use, and for the others the tensors kept from :meth:`from_original` (zeros when the
        model was not built from an original state dict). ``grads=True``: the gradients of the
        used keys after :meth:`backward` (the original has no gradient for the others).
        """
        state = self.state_dict()
        params = dict(self.named_parameters())
        out = OrderedDict()
        used = set(self.used_original_keys())
        for key, shape in self.original_layout().items():
            if key in used:
                name = keys.minimner_name(key)
                src = params[name].grad if grads else state[name]
                out[key] = backend.asnumpy(src).copy()
            elif not grads:
                kept = self.original_unused.get(key)
                out[key] = (np.array(kept, copy=True) if kept is not None
                            else np.zeros(shape, dtype=np.dtype(self._param_dtype())))
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"aug={c.aug}, fusion={c.fusion}, merge={c.merge}, aux_mix={c.aux_mix}, aux_loss={c.aux_loss}, "
                f"char_cnn={c.char_cnn}, image_dim={c.image_dim}")
