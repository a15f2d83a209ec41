"""The authors' MSCMT state dict and MGCMT: the key layout (docs/parameters.md §1) and the translation both ways.

Two parts. The bookkeeping (names and shapes, no arrays): every key of the layout, its shape,
which keys a flag set uses and each key's name inside minimner. The translation:
:func:`from_original` builds an MGCMT from the authors' state dict with strict key accounting,
:func:`to_original` writes the layout back. ``MGCMT.from_original`` / ``MGCMT.to_original`` call
them; the file converter :mod:`minimner.convert.mgcmt` imports this module (``models/`` never
imports ``convert/``).

Key order is the original file's: MSCMT's free-standing parameters first, in
definition order, then the sub-modules in registration order (docs/parameters.md §1)::

    aug_w1 aug_w2 aug_bias fus1_* fus2_* fus3_w1 fus3_w2 fus3_bias seq_w ali_w ati_w obj_w add_bias
    fusion_w fusion_bias {main,seq,img,obj}_aux_{w,bias}
    object_embeddings bert.* self_attention self_attention_v2 vismap2text vismap2text_v2
    txt2img/img2txt/txt2txt_attention gate classifier aux_classifier crf aux_crf maug_linear
    img2img_attention(_v2) obj2obj_attention(_v2) obj2txt/txt2obj/txt2obj_v2_attention
    fus_cat_linear fus3_linear add_linear mlp_linear1 mlp_linear2 highway gmf filtration_gate gfg
    {main,seq,img,obj}_aux_classifier {main,seq,img,obj}_aux_crf

With bert-base-cased sizes this is 509 keys and 222,453,661 + 128·Vc scalars.

**Which keys a configuration uses** (:func:`used_keys`): everything the forward
pass, the loss or decoding reads. Always unused (docs/parameters.md §4, docs/original-quirks.md §3): ``gate``,
``highway``, the ``*_aux_w`` / ``*_aux_bias`` / ``*_aux_classifier`` / ``*_aux_crf``
families and ``bert.pooler`` (computed and discarded by the original; minimner
does not compute it). Flag-dependent: the augmentation tensors, the char-CNN
tensors, the tensors of the fusion variants other than the chosen one, and ``aux_crf``
without the auxiliary loss.

**Names inside minimner** (:func:`minimner_name`): the same as the original's,
except that the post-BERT augmentation lives under ``augment.`` (``maug_linear.*``,
``aug_w1``, ``aug_w2``, ``aug_bias``) and the fusion variant's tensors under
``fusion.`` (``fusion.fus1_w1``, ``fusion.fus3_linear.weight``, ``fusion.gmf.*`` …).
Nothing is transposed: minimner keeps ``fusion_w`` (2C, C) and ``seq_w`` /
``ali_w`` / ``ati_w`` / ``obj_w`` in the original layout and applies them as
``x W`` exactly as the original does (docs/parameters.md §1).

Dimension legend: C hidden, F feed-forward size, L BERT layers, V word-piece vocab,
P max positions, Vc char vocab, C_img image feature size, E augmentation size,
Vo object vocab, K tags, Ka auxiliary tags.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.models.bert import BertConfig, BertModel
from minimner.models.fusion import fusion_method
from minimner.models.mgcmt_config import MGCMTConfig

__all__ = ["LAYER_TEMPLATE", "layer_keys", "original_layout", "fusion_keys", "used_keys", "minimner_name",
           "AUG_KEYS", "FUSION_KEYS", "NEVER_USED_PREFIXES", "model_layout", "model_used_keys", "from_original",
           "to_original"]

#: The 16 tensors of one transformer or cross-attention layer (docs/parameters.md §2), leaf -> shape builder.
LAYER_TEMPLATE = (
    ("attention.self.query.weight", "CC"), ("attention.self.query.bias", "C"),
    ("attention.self.key.weight", "CC"), ("attention.self.key.bias", "C"),
    ("attention.self.value.weight", "CC"), ("attention.self.value.bias", "C"),
    ("attention.output.dense.weight", "CC"), ("attention.output.dense.bias", "C"),
    ("attention.output.LayerNorm.weight", "C"), ("attention.output.LayerNorm.bias", "C"),
    ("intermediate.dense.weight", "FC"), ("intermediate.dense.bias", "F"),
    ("output.dense.weight", "CF"), ("output.dense.bias", "C"),
    ("output.LayerNorm.weight", "C"), ("output.LayerNorm.bias", "C"),
)

#: The post-BERT augmentation tensors (minimner holds them under ``augment.``).
AUG_KEYS = ("maug_linear.weight", "maug_linear.bias", "aug_w1", "aug_w2", "aug_bias")

#: Every fusion variant's tensors, by original ``ffusion_method`` (docs/model.md §6); minimner holds
#: them under ``fusion.``.
FUSION_KEYS = {
    0: ("fus_cat_linear.weight", "fus_cat_linear.bias"),
    1: ("fus1_w1", "fus1_w2", "fus1_bias", "fus2_w1", "fus2_w2", "fus2_bias", "fus3_w1", "fus3_w2", "fus3_bias"),
    2: ("fus1_w1", "fus1_w2", "fus1_bias", "fus2_w1", "fus2_w2", "fus2_bias", "fus3_linear.weight",
        "fus3_linear.bias"),
    3: ("mlp_linear1.weight", "mlp_linear1.bias", "mlp_linear2.weight", "mlp_linear2.bias"),
    4: ("seq_w", "ali_w", "ati_w", "obj_w", "add_bias", "add_linear.weight", "add_linear.bias"),
    5: ("gmf.text_linear.weight", "gmf.text_linear.bias", "gmf.img_linear.weight", "gmf.img_linear.bias",
        "gmf.gate_linear.weight", "gmf.gate_linear.bias", "filtration_gate.text_linear.weight",
        "filtration_gate.multimodal_linear.weight", "filtration_gate.multimodal_linear.bias",
        "filtration_gate.gate_linear.weight", "filtration_gate.gate_linear.bias",
        "filtration_gate.resv_linear.weight", "filtration_gate.resv_linear.bias", "gfg.weight", "gfg.bias"),
    6: ("fus1_w1", "fus1_w2", "fus1_bias"),
    7: ("fus1_w1", "fus1_w2", "fus1_bias"),
    8: ("fus1_w1", "fus1_w2", "fus1_bias"),
}

#: Key prefixes no configuration of the original ever reads.
NEVER_USED_PREFIXES = ("gate.", "highway.", "main_aux_", "seq_aux_", "img_aux_", "obj_aux_", "bert.pooler.")


def layer_keys(prefix: str, hidden: int, intermediate: int) -> list[tuple[str, tuple]]:
    """``[(key, shape)]`` of one layer under ``prefix`` (e.g. ``bert.encoder.layer.3``)."""
    dims = {"C": hidden, "F": intermediate}
    return [(f"{prefix}.{leaf}", tuple(dims[c] for c in code)) for leaf, code in LAYER_TEMPLATE]


def _linear(name, n_out, n_in, bias=True):
    return [(f"{name}.weight", (n_out, n_in))] + ([(f"{name}.bias", (n_out,))] if bias else [])


def _crf(name, k):
    return [(f"{name}.start_transitions", (k,)), (f"{name}.end_transitions", (k,)), (f"{name}.transitions", (k, k))]


def _encoder(name, n_layers, hidden, intermediate):
    return [kv for i in range(n_layers) for kv in layer_keys(f"{name}.layer.{i}", hidden, intermediate)]


def original_layout(hidden: int, intermediate: int, num_layers: int, vocab_size: int, max_positions: int = 512,
                    type_vocab: int = 2, char_vocab: int = 15, image_dim: int = 2048, aug_dim: int = 200,
                    object_vocab: int = 85, num_tags: int = 13, num_aux_tags: int = 7, char_dim: int = 128,
                    layer_nums: tuple[int, int, int] = (1, 1, 1), gmf_hidden: int = 768) -> "OrderedDict[str, tuple]":
    """Every key of the authors' MSCMT state dict with its PyTorch shape, in file order.

    Parameters
    ----------
    hidden, intermediate, num_layers, vocab_size, max_positions, type_vocab : the BERT config
        (C, F, L, V, P and the segment vocabulary).
    char_vocab : Vc, rows of the char embedding (the original's ``len(char_dict)``).
    image_dim : C_img of ``vismap2text`` (the original hard-codes 2048).
    aug_dim : E (200). object_vocab : Vo (85). num_tags, num_aux_tags : K (13), Ka (7).
    char_dim : the char embedding size (128). layer_nums : layers of txt2img / img2txt / txt2txt.
    gmf_hidden : width of the 13 ``gmf.*`` / ``filtration_gate.*`` tensors. The original
        hard-codes 768 at every C (so its method 5 only runs at C = 768); minimner's method 5
        generalises them to C, and its layout then uses ``gmf_hidden = C``.

    Returns
    -------
    OrderedDict key -> shape tuple.
    """
    C, F = int(hidden), int(intermediate)
    out = []
    out += [("aug_w1", (C, C)), ("aug_w2", (C, C)), ("aug_bias", (C,))]
    for g in ("fus1", "fus2", "fus3"):
        out += [(f"{g}_w1", (C, C)), (f"{g}_w2", (C, C)), (f"{g}_bias", (C,))]
    out += [(k, (C, C)) for k in ("seq_w", "ali_w", "ati_w", "obj_w")] + [("add_bias", (C,))]
    out += [("fusion_w", (2 * C, C)), ("fusion_bias", (C,))]
    for a in ("main", "seq", "img", "obj"):
        out += [(f"{a}_aux_w", (C, C)), (f"{a}_aux_bias", (C,))]
    out += [("object_embeddings.weight", (object_vocab, C))]
    cc = "bert.embeddings.char_cnn_model"
    out += [(f"{cc}.char_emb.weight", (char_vocab, char_dim))]
    for i, k in enumerate((2, 3, 4)):
        out += [(f"{cc}.convs.{i}.0.weight", (32, char_dim, k)), (f"{cc}.convs.{i}.0.bias", (32,))]
    out += _linear(f"{cc}.linear.0", 100, 96) + _linear(f"{cc}.linear.3", C, 100)
    out += _linear("bert.embeddings.aug_linear", C, aug_dim)
    out += [("bert.embeddings.word_embeddings.weight", (vocab_size, C)),
            ("bert.embeddings.position_embeddings.weight", (max_positions, C)),
            ("bert.embeddings.token_type_embeddings.weight", (type_vocab, C)),
            ("bert.embeddings.LayerNorm.weight", (C,)), ("bert.embeddings.LayerNorm.bias", (C,))]
    out += _linear("bert.embeddings.char_cnn_linear", C, 2 * C)
    out += _encoder("bert.encoder", num_layers, C, F)
    out += _linear("bert.pooler.dense", C, C)
    out += _encoder("self_attention", 1, C, F) + _encoder("self_attention_v2", 1, C, F)
    out += _linear("vismap2text", C, image_dim) + _linear("vismap2text_v2", C, image_dim)
    n1, n2, n3 = layer_nums
    out += _encoder("txt2img_attention", n1, C, F) + _encoder("img2txt_attention", n2, C, F)
    out += _encoder("txt2txt_attention", n3, C, F)
    out += _linear("gate", C, 2 * C) + _linear("classifier", num_tags, C) + _linear("aux_classifier", num_aux_tags, C)
    out += _crf("crf", num_tags) + _crf("aux_crf", num_aux_tags)
    out += _linear("maug_linear", C, aug_dim)
    for name in ("img2img_attention", "img2img_attention_v2", "obj2obj_attention", "obj2obj_attention_v2",
                 "obj2txt_attention", "txt2obj_attention", "txt2obj_attention_v2"):
        out += _encoder(name, 1, C, F)
    out += _linear("fus_cat_linear", C, 4 * C) + _linear("fus3_linear", C, 2 * C) + _linear("add_linear", C, C)
    out += _linear("mlp_linear1", C, C) + _linear("mlp_linear2", 1, C)
    for part in ("nonlinear", "linear", "gate"):
        for i in range(2):
            out += _linear(f"highway.{part}.{i}", C, C)
    G = int(gmf_hidden)
    out += _linear("gmf.text_linear", G, G) + _linear("gmf.img_linear", G, G) + _linear("gmf.gate_linear", 1, 2 * G)
    out += _linear("filtration_gate.text_linear", G, G, bias=False)
    out += _linear("filtration_gate.multimodal_linear", G, G) + _linear("filtration_gate.gate_linear", 1, 2 * G)
    out += _linear("filtration_gate.resv_linear", G, G) + _linear("gfg", C, 2 * C)
    for a in ("main", "seq", "img", "obj"):
        out += _linear(f"{a}_aux_classifier", num_tags, C)
    for a in ("main", "seq", "img", "obj"):
        out += _crf(f"{a}_aux_crf", num_tags)
    layout = OrderedDict(out)
    assert len(layout) == len(out), "duplicate key in the MSCMT layout"
    return layout


def fusion_keys(method: int) -> tuple[str, ...]:
    """The original keys fusion variant ``method`` (0–8) reads."""
    if method not in FUSION_KEYS:
        raise ValueError(f"ffusion_method must be one of 0..8, got {method!r}")
    return FUSION_KEYS[method]


def used_keys(layout, *, aug: str, fusion_method: int, char_cnn: bool, aux_loss: bool = True) -> list[str]:
    """The keys of ``layout`` a configuration reads, in layout order.

    Parameters
    ----------
    layout : the mapping of :func:`original_layout` (or any key collection in that layout).
    aug : minimner's augmentation mode (``add`` / ``gate`` / ``embed`` / ``none``).
    fusion_method : the original ``ffusion_method`` (0–8).
    char_cnn : whether the char-CNN branch is on (original ``use_char_cnn = 0``).
    aux_loss : whether the auxiliary span CRF is trained (original ``seg_task = 0``); without it
        ``aux_crf`` is read by nothing (the aux emissions still are, by the API and by ``aux_mix``).
    """
    aug_used = {"add": ("maug_linear.weight", "maug_linear.bias"), "gate": AUG_KEYS,
                "embed": ("bert.embeddings.aug_linear.weight", "bert.embeddings.aug_linear.bias"),
                "none": ()}[aug]
    all_fusion = {k for keys in FUSION_KEYS.values() for k in keys}
    chosen = set(fusion_keys(fusion_method))
    used = []
    for key in layout:
        if key.startswith(NEVER_USED_PREFIXES) or (not aux_loss and key.startswith("aux_crf.")):
            continue
        if key in AUG_KEYS or key.startswith("bert.embeddings.aug_linear."):
            if key in aug_used:
                used.append(key)
            continue
        if key.startswith(("bert.embeddings.char_cnn_model.", "bert.embeddings.char_cnn_linear.")):
            if char_cnn:
                used.append(key)
            continue
        if key in all_fusion:
            if key in chosen:
                used.append(key)
            continue
        used.append(key)
    return used


def minimner_name(key: str) -> str:
    """minimner's state-dict name for a used original key (see the module docstring)."""
    if key in AUG_KEYS:
        return f"augment.{key}"
    if any(key in keys for keys in FUSION_KEYS.values()):
        return f"fusion.{key}"
    return key


# ------------------------------------------------------------------------------ a model's layout
def model_layout(model) -> "OrderedDict[str, tuple]":
    """Every key of the authors' state dict for an MGCMT's sizes, with its shape (file order).

    The 13 GMF / FiltrationGate tensors are 768 wide as in the original, except for the
    ``gmf_filtration`` fusion, which minimner generalises to C (identical at C = 768).
    """
    bc, cfg = model.bert.config, model.config
    return original_layout(
        bc.hidden_size, bc.intermediate_size, bc.num_hidden_layers, bc.vocab_size, bc.max_position_embeddings,
        bc.type_vocab_size, char_vocab=cfg.char_vocab or 15,
        image_dim=cfg.image_dim, aug_dim=cfg.aug_dim, object_vocab=cfg.object_vocab, num_tags=cfg.num_tags,
        num_aux_tags=cfg.num_aux_tags, char_dim=cfg.char_dim, layer_nums=cfg.layer_nums,
        gmf_hidden=bc.hidden_size if cfg.fusion == "gmf_filtration" else 768)


def model_used_keys(model) -> list[str]:
    """The original keys an MGCMT's configuration reads (docs/parameters.md §4), in file order."""
    cfg = model.config
    return used_keys(model_layout(model), aug=cfg.aug, fusion_method=fusion_method(cfg.fusion),
                     char_cnn=cfg.char_cnn, aux_loss=cfg.aux_loss)


# ------------------------------------------------------------------------------ original → MGCMT
def _need(sd: Mapping, key: str):
    if key not in sd:
        raise KeyError(f"original state dict: missing key {key!r}")
    return sd[key]


def _dims(sd: Mapping, key: str, n: int) -> tuple:
    shape = tuple(getattr(_need(sd, key), "shape", ()))
    if len(shape) != n:
        raise ValueError(f"original state dict: {key!r} should have {n} dimensions, got shape {shape}")
    return shape


def _n_layers(sd: Mapping, name: str) -> int:
    return 1 + max([int(k.split(".")[2]) for k in sd if k.startswith(f"{name}.layer.")] or [0])


def _configs_from_tensors(sd: Mapping, bert_config, original_flags: dict):
    """``(BertConfig, MGCMTConfig)`` with every size read from the tensors, the rest from the flags."""
    V, C = _dims(sd, "bert.embeddings.word_embeddings.weight", 2)
    base = bert_config.to_dict() if isinstance(bert_config, BertConfig) else dict(bert_config or {})
    base.update(vocab_size=V, hidden_size=C,
                num_hidden_layers=1 + max(int(k.split(".")[3]) for k in sd if k.startswith("bert.encoder.layer.")),
                intermediate_size=_dims(sd, "bert.encoder.layer.0.intermediate.dense.weight", 2)[0],
                max_position_embeddings=_dims(sd, "bert.embeddings.position_embeddings.weight", 2)[0],
                type_vocab_size=_dims(sd, "bert.embeddings.token_type_embeddings.weight", 2)[0])
    base.setdefault("num_attention_heads", max(1, C // 64))
    bert_cfg = BertConfig.from_dict(base, where="MGCMT.from_original bert_config")
    chars = _dims(sd, "bert.embeddings.char_cnn_model.char_emb.weight", 2)
    sizes = dict(image_dim=_dims(sd, "vismap2text.weight", 2)[1], aug_dim=_dims(sd, "maug_linear.weight", 2)[1],
                 object_vocab=_dims(sd, "object_embeddings.weight", 2)[0], char_vocab=chars[0], char_dim=chars[1],
                 num_tags=_dims(sd, "classifier.weight", 2)[0], num_aux_tags=_dims(sd, "aux_classifier.weight", 2)[0],
                 layer_nums=(_n_layers(sd, "txt2img_attention"), _n_layers(sd, "img2txt_attention"),
                             _n_layers(sd, "txt2txt_attention")))
    return bert_cfg, MGCMTConfig.from_original_flags(**original_flags, **sizes)


def _sort_tensors(model, sd: Mapping):
    """``(state by minimner name, unused by original key, non-finite unused keys)``, every key accounted for."""
    layout = model_layout(model)
    extra = [k for k in sd if k not in layout]
    if extra:
        raise KeyError(f"original state dict: key(s) outside the MSCMT layout: {extra[:10]}"
                       f"{' …' if len(extra) > 10 else ''}")
    bc, cfg = model.bert.config, model.config
    used = set(model_used_keys(model))
    state, unused, nonfinite = OrderedDict(), OrderedDict(), []
    for key, shape in layout.items():
        arr = np.asarray(_need(sd, key))
        if tuple(arr.shape) != shape:
            raise ValueError(f"original state dict: {key!r} has shape {tuple(arr.shape)}, expected {shape} "
                             f"(sizes read from the tensors: C={bc.hidden_size}, F={bc.intermediate_size}, "
                             f"L={bc.num_hidden_layers}, V={bc.vocab_size}, C_img={cfg.image_dim} from "
                             f"'vismap2text.weight', E={cfg.aug_dim} from 'maug_linear.weight', Vc={cfg.char_vocab})")
        if arr.dtype.kind != "f":
            raise ValueError(f"original state dict: {key!r} has dtype {arr.dtype}, expected a float array")
        if key in used:
            if not np.isfinite(arr).all():
                raise ValueError(f"original state dict: {key!r} holds NaN or inf values")
            state[minimner_name(key)] = arr
        else:
            unused[key] = arr
            if not np.isfinite(arr).all():
                nonfinite.append(key)
    return state, unused, nonfinite


def from_original(cls, state_dict: Mapping, bert_config=None, rng=None, **original_flags):
    """``cls.from_original``: build the model from the authors' state dict (see :meth:`MGCMT.from_original`)."""
    sd = OrderedDict(state_dict)
    unknown = [k for k in original_flags if k not in MGCMTConfig._FLAGS]
    if unknown:
        raise ValueError(f"unknown original flag(s) {unknown}; expected some of {list(MGCMTConfig._FLAGS)}")
    bert_cfg, config = _configs_from_tensors(sd, bert_config, original_flags)
    model = cls(BertModel(bert_cfg, add_pooling_layer=False, rng=rng, init=False), config, rng=rng)
    state, unused, nonfinite = _sort_tensors(model, sd)
    missing = [k for k in model.state_dict() if k not in state]
    assert not missing, f"minimner parameters without an original key: {missing}"
    model.load_state_dict(state, strict=True)
    model.original_unused = unused
    model.load_report = {"used": len(state), "unused": list(unused), "nonfinite_unused": nonfinite,
                         "flags": config.original_flags()}
    return model.eval()


# ------------------------------------------------------------------------------ MGCMT → original
def to_original(model, grads: bool = False) -> "OrderedDict[str, np.ndarray]":
    """The authors' layout as NumPy arrays, in file order (see :meth:`MGCMT.to_original`)."""
    state = model.state_dict()
    params = dict(model.named_parameters())
    out = OrderedDict()
    used = set(model_used_keys(model))
    for key, shape in model_layout(model).items():
        if key in used:
            name = minimner_name(key)
            src = params[name].grad if grads else state[name]
            out[key] = backend.asnumpy(src).copy()
        elif not grads:
            kept = model.original_unused.get(key)
            out[key] = (np.array(kept, copy=True) if kept is not None
                        else np.zeros(shape, dtype=np.dtype(model.fusion_w.data.dtype)))
    return out
