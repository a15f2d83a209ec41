"""CRF benchmark: minimner vs pytorch-crf on the same batch, in the same run.

Work per iteration (B = 24, T = 64, K = 13 by default, random prefix masks):

* minimner: ``CRF.forward`` (mean NLL) + ``CRF.backward`` (expected − observed
  counts) + ``CRF.decode`` (Viterbi, lists of tags);
* pytorch-crf 0.7.2: ``-crf(e, tags, mask, reduction='mean')`` + autograd
  ``backward`` + ``crf.decode``.

Both run float32 on the CPU with identical parameters and inputs. The script
first checks that the two agree (loss, gradients, decoded paths) and exits with
status 1 if they do not. The two sides are timed interleaved (one call each,
in turn) so that load on a shared machine hits both alike. It reports the
median (and best) time of each phase and the ratio minimner / pytorch-crf
(< 1: minimner is faster), plus minimner's peak
traced memory (tracemalloc sees NumPy allocations; torch's are not traced, so
no torch number is given).

Usage::

    python benchmarks/crf.py                 # full run, writes benchmarks/results/crf.{json,md}
    python benchmarks/crf.py --quick         # a few repeats, to check that it runs
    python benchmarks/crf.py --torch-threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minimner.machine import describe  # noqa: E402
from minimner.nn.crf import CRF  # noqa: E402


def _machine() -> dict:
    import torch
    return describe(torch=torch.__version__, torch_threads=torch.get_num_threads())


def make_problem(B, T, K, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((B, T, K)).astype(np.float32)
    lengths = rng.integers(T // 2, T + 1, B)
    lengths[0] = T
    mask = np.arange(T)[None, :] < lengths[:, None]
    tags = rng.integers(1, K, (B, T))
    return e, tags, mask


def timed_pair(ours, theirs, repeats, warmup):
    """Interleaved timings (ours, theirs, ours, …) so that load changes hit both sides alike."""
    for _ in range(warmup):
        ours()
        theirs()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (theirs, b)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return a, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--tags", type=int, default=13)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up (smoke test)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                    help="folder for crf.json and crf.md (default benchmarks/results)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 1

    import torch
    import torchcrf
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    B, T, K = args.batch, args.length, args.tags
    e, tags, mask = make_problem(B, T, K, seed=0)
    crf = CRF(K, rng=0)
    ref = torchcrf.CRF(K, batch_first=True)
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in crf.state_dict().items()})
    te = torch.tensor(e, requires_grad=True)
    tt, tm = torch.tensor(tags), torch.tensor(mask)

    # -- the three phases of each side -------------------------------------------
    def ours_forward():
        return crf.forward(e, tags, mask)

    def ours_backward():
        crf.forward(e, tags, mask)
        return crf.backward()

    def ours_decode():
        return crf.decode(e, mask)

    def ours_all():
        crf.zero_grad()
        crf.forward(e, tags, mask)
        crf.backward()
        return crf.decode(e, mask)

    def ref_forward():
        with torch.no_grad():
            return -ref(te, tt, tm, reduction="mean")

    def ref_backward():
        te.grad = None
        ref.zero_grad()
        loss = -ref(te, tt, tm, reduction="mean")
        loss.backward()
        return te.grad

    def ref_decode():
        with torch.no_grad():
            return ref.decode(te, tm)

    def ref_all():
        ref_backward()
        return ref_decode()

    # -- agreement first: a benchmark of wrong code is worthless -------------------
    crf.zero_grad()
    loss = float(ours_forward())
    de = crf.backward()
    g_ref = ref_backward()
    problems = []
    ref_loss = float(ref_forward())
    if abs(loss - ref_loss) > 1e-5 * max(1.0, abs(ref_loss)):
        problems.append(f"loss {loss} vs {ref_loss}")
    if np.abs(de - g_ref.numpy()).max() > 1e-5:
        problems.append(f"d emissions max diff {np.abs(de - g_ref.numpy()).max():.3e}")
    for name, p in crf.named_parameters():
        d = np.abs(p.grad - getattr(ref, name).grad.numpy()).max()
        if d > 1e-5 * max(1.0, float(np.abs(p.grad).max())):
            problems.append(f"d {name} max diff {d:.3e}")
    if ours_decode() != ref_decode():
        problems.append("decoded paths differ")
    if problems:
        print("minimner and pytorch-crf disagree: " + "; ".join(problems), file=sys.stderr)
        return 1

    # -- timing -----------------------------------------------------------------------
    phases = {}
    for name, (ours, theirs) in {"forward": (ours_forward, ref_forward),
                                 "forward+backward": (ours_backward, ref_backward),
                                 "decode": (ours_decode, ref_decode),
                                 "total (forward+backward+decode)": (ours_all, ref_all)}.items():
        ta, tb = timed_pair(ours, theirs, args.repeats, args.warmup)
        a, b = statistics.median(ta), statistics.median(tb)
        phases[name] = {"minimner_ms": a * 1e3, "pytorch_crf_ms": b * 1e3, "ratio": a / b,
                        "minimner_min_ms": min(ta) * 1e3, "pytorch_crf_min_ms": min(tb) * 1e3,
                        "ratio_of_mins": min(ta) / min(tb)}

    tracemalloc.start()
    ours_all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    result = {"benchmark": "crf", "shape": {"B": B, "T": T, "K": K, "mean_length": float(mask.sum(1).mean())},
              "repeats": args.repeats, "warmup": args.warmup, "machine": _machine(),
              "agreement": "loss, gradients (<= 1e-5) and decoded paths checked equal",
              "phases": phases, "minimner_peak_traced_MiB": peak / 2**20,
              "ratio": phases["total (forward+backward+decode)"]["ratio"]}

    lines = [f"# CRF benchmark (B={B}, T={T}, K={K}; median of {args.repeats} runs)", "",
             "| phase | minimner (ms) | pytorch-crf (ms) | ratio minimner / pytorch-crf | ratio of best runs |",
             "|---|---:|---:|---:|---:|"]
    for name, r in phases.items():
        lines.append(f"| {name} | {r['minimner_ms']:.2f} | {r['pytorch_crf_ms']:.2f} | {r['ratio']:.2f} "
                     f"| {r['ratio_of_mins']:.2f} |")
    m = result["machine"]
    lines += ["", f"minimner peak traced memory (tracemalloc, one forward+backward+decode): "
                  f"{result['minimner_peak_traced_MiB']:.2f} MiB (torch allocations are not traced).", "",
              f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, "
              f"NumPy {m['numpy']}, torch {m['torch']} ({m['torch_threads']} threads), "
              f"1-min load average {m['loadavg_1min']}.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, content in (("crf.json", json.dumps(result, indent=2) + "\n"), ("crf.md", text)):
            tmp = args.out / (name + ".tmp")
            tmp.write_text(content)
            os.replace(tmp, args.out / name)
        print(f"wrote {args.out / 'crf.json'} and {args.out / 'crf.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
