"""The authors' MSCMT state-dict layout (docs/parameters.md §1): every key, its shape, and which keys a flag set uses.

This module is pure bookkeeping (names and shapes, no arrays, no model), so both
:mod:`minimner.models.mgcmt` (``MGCMT.from_original`` / ``to_original``) and the
file converter :mod:`minimner.convert.mgcmt` can import it without a cycle.

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
Nothing is transposed: minimner keeps ``fusion_w`` (2H, H) and ``seq_w`` /
``ali_w`` / ``ati_w`` / ``obj_w`` in the original layout and applies them as
``x W`` exactly as the original does (docs/parameters.md §1).

Dimension legend: H hidden, F feed-forward size, L BERT layers, V word-piece vocab,
P max positions, Vc char vocab, C_img image feature size, E augmentation size,
Vo object vocab, K tags, Ka auxiliary tags.
"""
from __future__ import annotations

from collections import OrderedDict

__all__ = ["LAYER_TEMPLATE", "layer_keys", "original_layout", "fusion_keys", "used_keys", "minimner_name",
           "AUG_KEYS", "FUSION_KEYS", "NEVER_USED_PREFIXES"]

#: The 16 tensors of one transformer or cross-attention layer (docs/parameters.md §2), leaf -> shape builder.
LAYER_TEMPLATE = (
    ("attention.self.query.weight", "HH"), ("attention.self.query.bias", "H"),
    ("attention.self.key.weight", "HH"), ("attention.self.key.bias", "H"),
    ("attention.self.value.weight", "HH"), ("attention.self.value.bias", "H"),
    ("attention.output.dense.weight", "HH"), ("attention.output.dense.bias", "H"),
    ("attention.output.LayerNorm.weight", "H"), ("attention.output.LayerNorm.bias", "H"),
    ("intermediate.dense.weight", "FH"), ("intermediate.dense.bias", "F"),
    ("output.dense.weight", "HF"), ("output.dense.bias", "H"),
    ("output.LayerNorm.weight", "H"), ("output.LayerNorm.bias", "H"),
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
    dims = {"H": hidden, "F": intermediate}
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
        (H, F, L, V, P and the segment vocabulary).
    char_vocab : Vc, rows of the char embedding (the original's ``len(char_dict)``).
    image_dim : C_img of ``vismap2text`` (the original hard-codes 2048).
    aug_dim : E (200). object_vocab : Vo (85). num_tags, num_aux_tags : K (13), Ka (7).
    char_dim : the char embedding size (128). layer_nums : layers of txt2img / img2txt / txt2txt.
    gmf_hidden : width of the 13 ``gmf.*`` / ``filtration_gate.*`` tensors. The original
        hard-codes 768 at every H (so its method 5 only runs at H = 768); minimner's method 5
        generalises them to H, and its layout then uses ``gmf_hidden = H``.

    Returns
    -------
    OrderedDict key -> shape tuple.
    """
    H, F = int(hidden), int(intermediate)
    out = []
    out += [("aug_w1", (H, H)), ("aug_w2", (H, H)), ("aug_bias", (H,))]
    for g in ("fus1", "fus2", "fus3"):
        out += [(f"{g}_w1", (H, H)), (f"{g}_w2", (H, H)), (f"{g}_bias", (H,))]
    out += [(k, (H, H)) for k in ("seq_w", "ali_w", "ati_w", "obj_w")] + [("add_bias", (H,))]
    out += [("fusion_w", (2 * H, H)), ("fusion_bias", (H,))]
    for a in ("main", "seq", "img", "obj"):
        out += [(f"{a}_aux_w", (H, H)), (f"{a}_aux_bias", (H,))]
    out += [("object_embeddings.weight", (object_vocab, H))]
    cc = "bert.embeddings.char_cnn_model"
    out += [(f"{cc}.char_emb.weight", (char_vocab, char_dim))]
    for i, k in enumerate((2, 3, 4)):
        out += [(f"{cc}.convs.{i}.0.weight", (32, char_dim, k)), (f"{cc}.convs.{i}.0.bias", (32,))]
    out += _linear(f"{cc}.linear.0", 100, 96) + _linear(f"{cc}.linear.3", H, 100)
    out += _linear("bert.embeddings.aug_linear", H, aug_dim)
    out += [("bert.embeddings.word_embeddings.weight", (vocab_size, H)),
            ("bert.embeddings.position_embeddings.weight", (max_positions, H)),
            ("bert.embeddings.token_type_embeddings.weight", (type_vocab, H)),
            ("bert.embeddings.LayerNorm.weight", (H,)), ("bert.embeddings.LayerNorm.bias", (H,))]
    out += _linear("bert.embeddings.char_cnn_linear", H, 2 * H)
    out += _encoder("bert.encoder", num_layers, H, F)
    out += _linear("bert.pooler.dense", H, H)
    out += _encoder("self_attention", 1, H, F) + _encoder("self_attention_v2", 1, H, F)
    out += _linear("vismap2text", H, image_dim) + _linear("vismap2text_v2", H, image_dim)
    n1, n2, n3 = layer_nums
    out += _encoder("txt2img_attention", n1, H, F) + _encoder("img2txt_attention", n2, H, F)
    out += _encoder("txt2txt_attention", n3, H, F)
    out += _linear("gate", H, 2 * H) + _linear("classifier", num_tags, H) + _linear("aux_classifier", num_aux_tags, H)
    out += _crf("crf", num_tags) + _crf("aux_crf", num_aux_tags)
    out += _linear("maug_linear", H, aug_dim)
    for name in ("img2img_attention", "img2img_attention_v2", "obj2obj_attention", "obj2obj_attention_v2",
                 "obj2txt_attention", "txt2obj_attention", "txt2obj_attention_v2"):
        out += _encoder(name, 1, H, F)
    out += _linear("fus_cat_linear", H, 4 * H) + _linear("fus3_linear", H, 2 * H) + _linear("add_linear", H, H)
    out += _linear("mlp_linear1", H, H) + _linear("mlp_linear2", 1, H)
    for part in ("nonlinear", "linear", "gate"):
        for i in range(2):
            out += _linear(f"highway.{part}.{i}", H, H)
    G = int(gmf_hidden)
    out += _linear("gmf.text_linear", G, G) + _linear("gmf.img_linear", G, G) + _linear("gmf.gate_linear", 1, 2 * G)
    out += _linear("filtration_gate.text_linear", G, G, bias=False)
    out += _linear("filtration_gate.multimodal_linear", G, G) + _linear("filtration_gate.gate_linear", 1, 2 * G)
    out += _linear("filtration_gate.resv_linear", G, G) + _linear("gfg", H, 2 * H)
    for a in ("main", "seq", "img", "obj"):
        out += _linear(f"{a}_aux_classifier", num_tags, H)
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
