"""How close one MGCMT train step comes to this CPU's float32 GEMM peak.

1. **GEMM FLOPs of the step**, counted, not estimated: the step (MiniLM sizes, B = 24,
   T = 64, the 7×7×2048 grid, 5 objects, default flags; training mode, zero_grad + loss +
   backward, as in ``mgcmt.md``) runs once on the ``strict`` backend with every matrix
   product intercepted (``a @ b`` and ``matmul`` of arrays of ≥ 2 dimensions): each adds
   2·M·N·K per matrix of its batch. Row dot products (LayerNorm's ``einsum``), the CRF's
   small (K, K) products and elementwise work are all left out or negligible.
2. **The sgemm rate**: NumPy's float32 ``(n, n) @ (n, n)`` (n = 2048; 2n³ FLOPs).
3. The step on NumPy and the GEMM timed **interleaved** (step, gemm, step, gemm, …) so a
   change in the machine's load hits both alike; the GEMM floor of the step is
   ``FLOPs / rate``, and ``floor / step time`` the fraction of the GEMM peak it reaches.

Usage::

    python benchmarks/gemm_floor.py                 # -> benchmarks/results/gemm_floor.{json,md}
    python benchmarks/gemm_floor.py --quick --no-write
"""
from __future__ import annotations

import argparse
import sys

import _harness as H

if __name__ == "__main__":
    H.blas_threads_from_argv(sys.argv)

import numpy as np  # noqa: E402

from minimner import _strict  # noqa: E402


def count_gemm_flops(step) -> int:
    """FLOPs of the matrix products ``step()`` makes on strict arrays (2·M·N·K per matrix)."""
    total = [0]

    def flops(a, b):
        a, b = np.shape(a), np.shape(b)
        if len(a) < 2 or len(b) < 2:
            return 0
        batch = np.broadcast_shapes(a[:-2], b[:-2])
        return 2 * int(np.prod(batch, dtype=np.int64)) * a[-2] * a[-1] * b[-1]

    def shape_of(x):
        return x._a.shape if isinstance(x, _strict.StrictArray) else np.shape(x)

    cls = _strict.StrictArray
    saved = {k: cls.__dict__[k] for k in ("__matmul__", "__rmatmul__", "__array_ufunc__")}

    def matmul(self, other):
        total[0] += flops(self._a, np.empty(shape_of(other), dtype=np.uint8))
        return saved["__matmul__"](self, other)

    def rmatmul(self, other):
        total[0] += flops(np.empty(shape_of(other), dtype=np.uint8), self._a)
        return saved["__rmatmul__"](self, other)

    def ufunc(self, uf, method, *inputs, **kw):
        if uf is np.matmul and method == "__call__":
            total[0] += flops(np.empty(shape_of(inputs[0]), np.uint8), np.empty(shape_of(inputs[1]), np.uint8))
        return saved["__array_ufunc__"](self, uf, method, *inputs, **kw)

    cls.__matmul__, cls.__rmatmul__, cls.__array_ufunc__ = matmul, rmatmul, ufunc
    try:
        step()
    finally:
        for k, v in saved.items():
            setattr(cls, k, v)
    return total[0]


def markdown(r: dict) -> str:
    """The report (``benchmarks/results/gemm_floor.md``) of a record."""
    return "\n".join([
        f"# MGCMT train step against the float32 GEMM peak: {r['model']}, B={r['B']}, T={r['T']}", "",
        "Train step as in `mgcmt.md` (training mode, zero_grad + loss + backward). Its GEMM FLOPs are counted by "
        "running it once on the strict backend with every matrix product intercepted (2·M·N·K each); the sgemm "
        f"rate is NumPy's float32 ({r['sgemm_n']}, {r['sgemm_n']}) @ ({r['sgemm_n']}, {r['sgemm_n']}), timed "
        f"interleaved with the step (step, gemm, …; median of {r['repeats']} after {r['warmup']} warm-up) so both "
        "see the same machine load.", "",
        "| quantity | value |", "|---|---:|",
        f"| GEMM work of one train step | {r['step_gemm_gflop']:.2f} GFLOP |",
        f"| sgemm rate (median; best) | {r['sgemm_gflops']:.1f}; {r['sgemm_best_gflops']:.1f} GFLOP/s |",
        f"| GEMM floor = FLOPs / rate | {r['gemm_floor_ms']:.0f} ms |",
        f"| train step (median; best) | {r['step_ms']:.0f}; {r['step_min_ms']:.0f} ms |",
        f"| fraction of the GEMM peak reached | {r['fraction_of_gemm_peak']:.2f} |", "",
        f"Command: `{r['command']}`.", "", H.machine_line(r["machine"]), ""])


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--n", type=int, default=2048, help="size of the square sgemm (default 2048)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (set before NumPy loads; default 2)")
    H.add_common(ap, quick="tiny BERT, B=2, T=8, n=256, 2 repeats", repeats=5, warmup=1)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse(raw)
    from mgcmt import bert_config, build_ours, make_inputs, ours_steps

    B, T, n = (2, 8, 256) if args.quick else (args.batch, args.length, args.n)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    cfg, source = bert_config(args.quick)
    model = build_ours(cfg, seed=0)
    x = make_inputs(B, T, 5, cfg["vocab_size"], seed=1)
    model.to("strict")
    sx = {k: _strict.to_device(v) for k, v in x.items()}
    step_flops = count_gemm_flops(ours_steps(model, sx)[0])
    model.to("numpy")
    train, _ = ours_steps(model, x)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    pair = H.time_pair(train, lambda: a @ b, repeats, warmup)
    rate = 2 * n ** 3 / pair.ref.median                       # FLOP/s of the sgemm, as measured between steps
    floor = step_flops / rate
    result = {"benchmark": "gemm_floor", "model": source, "B": B, "T": T, "sgemm_n": n,
              "step_gemm_gflop": step_flops / 1e9, "sgemm_gflops": rate / 1e9,
              "sgemm_best_gflops": 2 * n ** 3 / pair.ref.best / 1e9,
              "step_ms": pair.ours.median * 1e3, "step_min_ms": pair.ours.best * 1e3,
              "gemm_floor_ms": floor * 1e3, "fraction_of_gemm_peak": floor / pair.ours.median,
              "repeats": repeats, "warmup": warmup, "threads": args.threads,
              "command": "python benchmarks/gemm_floor.py" + "".join(" " + s for s in raw),
              "machine": H.machine(blas_env=True)}
    text = markdown(result)
    H.publish(result, text, "gemm_floor" + ("_quick" if args.quick else ""), args.out,
              write=not args.no_write and not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
