"""MGCMT's configuration: minimner's plain flags, the original's ``config.py`` flags, and the aux → main map.

:class:`MGCMTConfig` holds everything about the cross-modal model that is not in the BERT config;
the flag table in :mod:`minimner.models.mgcmt` lists each field beside the original's flag, whose
meaning is often inverted (docs/original-quirks.md §1). :func:`trans_matrix` is the fixed
auxiliary → main tag map of docs/model.md §4, used with ``aux_mix`` only.

Dimension legend: K main tags (13), Ka auxiliary tags (7).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.data.labels import AUX_TAGS, MAIN_TAGS, NUM_AUX_TAGS, NUM_TAGS
from minimner.models.fusion import FUSION_METHODS, fusion_method, fusion_name
from minimner.nn.augment import AUG_MODES

__all__ = ["MGCMTConfig", "trans_matrix", "MERGE_MODES"]

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
