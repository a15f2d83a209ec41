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
import sys

import numpy as np

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too
from _harness import add_common, apply_threads, machine, machine_line, publish, time_pair, traced_peak_mib

from minimner.nn.crf import CRF


def make_problem(B, T, K, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((B, T, K)).astype(np.float32)
    lengths = rng.integers(T // 2, T + 1, B)
    lengths[0] = T
    mask = np.arange(T)[None, :] < lengths[:, None]
    tags = rng.integers(1, K, (B, T))
    return e, tags, mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--tags", type=int, default=13)
    add_common(ap, quick="3 repeats, 1 warm-up (smoke test)", repeats=50, warmup=5, threads="torch")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 1

    import torch
    import torchcrf
    apply_threads(args)

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
    phases = {name: time_pair(ours, theirs, args.repeats, args.warmup).row("pytorch_crf", best=True)
              for name, (ours, theirs) in {"forward": (ours_forward, ref_forward),
                                           "forward+backward": (ours_backward, ref_backward),
                                           "decode": (ours_decode, ref_decode),
                                           "total (forward+backward+decode)": (ours_all, ref_all)}.items()}
    peak = traced_peak_mib(ours_all)

    result = {"benchmark": "crf", "shape": {"B": B, "T": T, "K": K, "mean_length": float(mask.sum(1).mean())},
              "repeats": args.repeats, "warmup": args.warmup, "machine": machine(torch=True),
              "agreement": "loss, gradients (<= 1e-5) and decoded paths checked equal",
              "phases": phases, "minimner_peak_traced_MiB": peak,
              "ratio": phases["total (forward+backward+decode)"]["ratio"]}
    publish(result, markdown(result), "crf", args.out, write=not args.no_write)
    return 0


def markdown(result: dict) -> str:
    """The report of one run (``benchmarks/results/crf.md``) from its result record."""
    sh = result["shape"]
    lines = [f"# CRF benchmark (B={sh['B']}, T={sh['T']}, K={sh['K']}; median of {result['repeats']} runs)", "",
             "| phase | minimner (ms) | pytorch-crf (ms) | ratio minimner / pytorch-crf | ratio of best runs |",
             "|---|---:|---:|---:|---:|"]
    for name, r in result["phases"].items():
        lines.append(f"| {name} | {r['minimner_ms']:.2f} | {r['pytorch_crf_ms']:.2f} | {r['ratio']:.2f} "
                     f"| {r['ratio_of_mins']:.2f} |")
    lines += ["", f"minimner peak traced memory (tracemalloc, one forward+backward+decode): "
                  f"{result['minimner_peak_traced_MiB']:.2f} MiB (torch allocations are not traced).", "",
              machine_line(result["machine"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
