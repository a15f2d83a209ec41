"""Tiny MGCMT models and inputs shared by the MGCMT tests (not a test module itself)."""
from __future__ import annotations

import itertools

import numpy as np

from minimner.data.labels import MAIN_TO_AUX
from minimner.models.bert import BertConfig, BertModel
from minimner.models.fusion import FUSION_METHODS
from minimner.models.mgcmt import MGCMT, MGCMTConfig

#: Sizes of the gradient-check model (the issue's "tiny size").
TINY = dict(H=16, heads=2, T=6, R=4, O=3, image_dim=8, aug_dim=5, vocab=30, char_vocab=11, B=3)

#: Every plain-flag combination except the fusion variant (aug × merge × aux_mix × aux_loss × char_cnn).
FLAG_GRID = [dict(aug=a, merge=m, aux_mix=x, aux_loss=l, char_cnn=c)
             for a, m, x, l, c in itertools.product(("add", "gate", "embed", "none"), ("main", "bert"),
                                                    (False, True), (True, False), (False, True))]

#: One configuration per single flag value that differs from the paper's defaults.
ONE_FLAG_AWAY = ([dict()] + [dict(fusion=f) for f in FUSION_METHODS if f != "gate_concat"]
                 + [dict(aug="gate"), dict(aug="embed"), dict(aug="none"), dict(merge="bert"), dict(aux_mix=True),
                    dict(aux_loss=False), dict(char_cnn=True)])


def tiny_model(seed=0, sizes=TINY, layers=1, **flags) -> MGCMT:
    """A float32 MGCMT with a 1-layer random BERT at the tiny sizes and the given plain flags."""
    s = dict(TINY, **sizes) if sizes is not TINY else TINY
    rng = np.random.default_rng(seed)
    bert = BertModel(BertConfig(vocab_size=s["vocab"], hidden_size=s["H"], num_hidden_layers=layers,
                                num_attention_heads=s["heads"], intermediate_size=2 * s["H"],
                                max_position_embeddings=32), add_pooling_layer=False, rng=rng)
    cfg = MGCMTConfig(image_dim=s["image_dim"], regions=s["R"], object_slots=s["O"], aug_dim=s["aug_dim"],
                      char_vocab=s["char_vocab"], max_wordlen=8, **flags)
    return MGCMT(bert, cfg, rng=rng)


def spread_weights(model: MGCMT, seed=0, std=0.3) -> MGCMT:
    """Redraw every parameter from N(0, std) (LayerNorm weights around 1) for entry-wise gradient checks.

    At the real init (N(0, 0.02), LayerNorms) the gradient of a deep branch is ~1e-6 while the loss is
    ~10, so a central difference (round-off ≈ ε·|L|/h ≈ 2e-10) cannot resolve it; larger weights give every
    branch gradients of order 1e-2…1 and make the entry-wise checks meaningful.
    """
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        d = rng.standard_normal(p.data.shape) * std
        p.data[...] = (1 + d / 3) if name.endswith("LayerNorm.weight") else d
    return model


def tiny_inputs(model: MGCMT, seed=1, lengths=(6, 4, 3), dtype=np.float32, no_objects_rows=(1,),
                no_image_rows=()):
    """Random inputs for ``model``: prefix masks of the given lengths, some rows without objects/images."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    B, T = len(lengths), max(lengths)
    V = model.bert.config.vocab_size
    ids = rng.integers(1, V, (B, T))
    mask = np.zeros((B, T), dtype=np.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ids = ids * mask
    side = int(round(cfg.regions ** 0.5))
    image = rng.standard_normal((B, cfg.image_dim, side, side)).astype(dtype)
    rmask = np.ones((B, cfg.regions), dtype=bool)
    for b in no_image_rows:
        rmask[b] = False
    objects = rng.integers(1, cfg.object_vocab, (B, cfg.object_slots))
    objects[:, -1] = 0                                    # a trailing empty slot everywhere
    for b in no_objects_rows:
        objects[b] = 0
    aug = (rng.standard_normal((B, T, cfg.aug_dim)) * mask[:, :, None]).astype(dtype)
    # Characters 1… at real positions: char id 0 is the padding row, which (padding_idx = 0, as in the
    # original) gets no gradient although padded words read it, so gradient checks keep it out.
    char_ids = rng.integers(1, max(cfg.char_vocab, 5), (B, T, cfg.max_wordlen)) * mask[:, :, None]
    labels = np.zeros((B, T), dtype=np.int64)
    for b, n in enumerate(lengths):
        labels[b, :n] = rng.integers(1, 10, n)
        labels[b, 0], labels[b, n - 1] = 11, 12
    aux = MAIN_TO_AUX[labels]
    return dict(input_ids=ids, input_mask=mask, aug=aug, image=image, objects=objects, char_ids=char_ids,
                region_mask=rmask), labels, aux
