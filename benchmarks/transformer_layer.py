"""Transformer-layer benchmark: minimner ``BertLayer`` vs ``transformers.BertLayer``, same run, same work.

Work per iteration (defaults B = 24, T = 64, C = 384, H = 12 heads, F = 1536,
float32, CPU, random prefix key masks, training mode with dropout 0.1 on both):

* minimner: ``BertLayer.forward(x, mask)`` + ``BertLayer.backward(dout)``
  (input gradient and every parameter gradient);
* transformers (eager attention, torch autograd): ``layer(x, attention_mask)``
  + ``(out * dout).sum().backward()`` with ``x.requires_grad``.

Both sides get identical weights. Before timing, the script runs both in eval
mode (no dropout) and exits with status 1 if the output (1e-5), the input
gradient or any parameter gradient (1e-4) differ by more than the tolerance,
measured as max |ours − ref| / max(1, max |ref|). It reports the
median time of forward and forward+backward (the two sides interleaved run by
run, so a change in machine load hits both alike), the ratio minimner / transformers
(> 1: minimner is slower), and the peak memory of the first forward+backward on
each side, measured in a fresh subprocess as the peak RSS (sampled every 0.5 ms)
minus the RSS just before the step, plus minimner's peak traced memory
(tracemalloc sees NumPy allocations, not torch's).

Usage::

    python benchmarks/transformer_layer.py            # full run, writes benchmarks/results/transformer_layer.{json,md}
    python benchmarks/transformer_layer.py --quick    # tiny shapes, 2 repeats: checks that it runs
    python benchmarks/transformer_layer.py --threads 1   # both sides single-threaded (steadier on a busy machine)
"""
from __future__ import annotations

import argparse
import sys

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too.
# It does not load NumPy, so --threads can still reach the BLAS.
import _harness
from _harness import (add_common, apply_threads, child_options, machine, machine_line, memory_child, memory_pair,
                      publish, time_pair, traced_peak_mib)

_harness.blas_threads_from_argv()  # must run before NumPy loads its BLAS

import numpy as np  # noqa: E402

from minimner.nn.attention import BertLayer  # noqa: E402


def build(B, T, C, H, F, dropout, seed=0):
    """The two layers with the same weights, and the shared inputs (NumPy and torch)."""
    import torch
    import transformers
    from transformers.models.bert.modeling_bert import BertLayer as TorchBertLayer

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(hidden_size=C, num_attention_heads=H, intermediate_size=F,
                                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                                  layer_norm_eps=1e-12, hidden_act="gelu", attn_implementation="eager")
    ref = TorchBertLayer(cfg)
    ours = BertLayer(C, H, F, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     rng=np.random.default_rng(seed))
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    lengths = rng.integers(T // 2, T + 1, B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)          # (B, T)
    dout = rng.standard_normal((B, T, C)).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tadd = torch.tensor((1.0 - mask[:, None, None, :].astype(np.float32)) * -10000.0)   # (B, 1, 1, T)
    return ours, ref, x, mask, dout, tx, tadd, torch.tensor(dout)


def steps(ours, ref, x, mask, dout, tx, tadd, tdout):
    """The four timed callables: (ours forward, ours fwd+bwd, theirs forward, theirs fwd+bwd)."""
    import torch

    def ours_fwd():
        return ours.forward(x, mask)

    def ours_all():
        ours.zero_grad()
        ours.forward(x, mask)
        return ours.backward(dout)

    def ref_fwd():
        with torch.no_grad():
            return ref(tx, attention_mask=tadd)

    def ref_all():
        ref.zero_grad(set_to_none=False)
        tx.grad = None
        out = ref(tx, attention_mask=tadd)
        out = out[0] if isinstance(out, tuple) else out
        (out * tdout).sum().backward()
        return tx.grad

    return ours_fwd, ours_all, ref_fwd, ref_all


def agreement(ours, ref, x, mask, dout, tx, tadd, tdout):
    """Eval-mode (no dropout) comparison: ``(problems, max abs diffs)``; no problems = agree."""
    ours.eval()
    ref.eval()
    ours.zero_grad()
    out = ours.forward(x, mask)[0]
    dx = ours.backward(dout)
    ref.zero_grad(set_to_none=False)
    tx.grad = None
    tout = ref(tx, attention_mask=tadd)
    tout = tout[0] if isinstance(tout, tuple) else tout
    (tout * tdout).sum().backward()
    ours.train()
    ref.train()
    # Errors are max |ours − ref| / max(1, max |ref|): the bias and LayerNorm gradients sum B·T rows and
    # reach ~100, where float32 round-off alone is ~1e-5 absolute.
    def err(a, ref_t):
        r = ref_t.detach().numpy()
        return float(np.abs(a - r).max() / max(1.0, float(np.abs(r).max())))

    tgrads = dict(ref.named_parameters())
    diffs = {"out": err(out, tout), "dx": err(dx, tx.grad),
             "param_grads": max(err(p.grad, tgrads[n].grad) for n, p in ours.named_parameters())}
    limits = {"out": 1e-5, "dx": 1e-4, "param_grads": 1e-4}
    problems = [f"{k} scaled max diff {v:.3e} > {limits[k]}" for k, v in diffs.items() if v > limits[k]]
    return problems, diffs


def step_of(side: str, shape: list[int], dropout: float):
    """The first forward+backward of one side on fresh layers, ready to run (for the memory child)."""
    ours, ref, *data = build(*shape, dropout)
    _, ours_all, _, ref_all = steps(ours, ref, *data)
    return ours_all if side == "minimner" else ref_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--dropout", type=float, default=0.1)
    add_common(ap, quick="tiny shapes, 2 repeats, 1 warm-up (smoke test)", repeats=20, warmup=3, threads="all",
               memory_sides=("minimner", "transformers"))
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.length, args.hidden, args.heads, args.ffn = 2, 8, 32, 4, 64
        args.repeats, args.warmup = 2, 1
    shape = [args.batch, args.length, args.hidden, args.heads, args.ffn]
    apply_threads(args)
    if args.memory_child:
        return memory_child(step_of(args.memory_child, shape, args.dropout))

    data = build(*shape, args.dropout)
    problems, diffs = agreement(*data)
    if problems:
        print("minimner and transformers disagree: " + "; ".join(problems), file=sys.stderr)
        return 1

    ours_fwd, ours_all, ref_fwd, ref_all = steps(*data)
    phases = {name: time_pair(a_fn, b_fn, args.repeats, args.warmup).row("transformers")
              for name, (a_fn, b_fn) in {"forward": (ours_fwd, ref_fwd),
                                         "forward+backward": (ours_all, ref_all)}.items()}

    traced_peak = traced_peak_mib(ours_all)
    # the child gets the sizes after --quick, and --threads so that it too limits the BLAS before NumPy loads
    memory = memory_pair(__file__, ("minimner", "transformers"),
                         child_options(args, "dropout", "batch", "length", "hidden", "heads", "ffn", "threads"))

    B, T, C, H, F = shape
    result = {"benchmark": "transformer_layer",
              "shape": {"B": B, "T": T, "C": C, "heads": H, "F": F, "dropout": args.dropout,
                        "mean_length": float(data[3].sum(1).mean())},
              "repeats": args.repeats, "warmup": args.warmup,
              "machine": machine(torch=True, transformers=True, blas_env=True),
              "agreement_eval_mode_scaled_max_diff": diffs,
              "phases": phases, "ratio": phases["forward+backward"]["ratio"],
              "peak_rss_rise_MiB": memory, "minimner_peak_traced_MiB": traced_peak}
    publish(result, markdown(result), "transformer_layer", args.out, write=not args.no_write)
    return 0


def markdown(result: dict) -> str:
    """The report of one run (``benchmarks/results/transformer_layer.md``) from its result record."""
    sh, phases, memory = result["shape"], result["phases"], result["peak_rss_rise_MiB"]
    diffs = result["agreement_eval_mode_scaled_max_diff"]
    lines = [f"# Transformer layer benchmark (B={sh['B']}, T={sh['T']}, C={sh['C']}, {sh['heads']} heads, "
             f"F={sh['F']}, float32, training mode, dropout {sh['dropout']}; median of {result['repeats']} runs "
             f"after {result['warmup']} warm-up)", "",
             "| phase | minimner (ms) | transformers BertLayer (ms) | ratio minimner / transformers |",
             "|---|---:|---:|---:|"]
    for name, r in phases.items():
        lines.append(f"| {name} | {r['minimner_ms']:.1f} | {r['transformers_ms']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "Peak memory of the first forward+backward in a fresh process (sampled peak RSS − RSS before): "
                  f"minimner {memory['minimner']:.1f} MiB, transformers {memory['transformers']:.1f} MiB; "
                  f"minimner peak traced (tracemalloc) {result['minimner_peak_traced_MiB']:.1f} MiB.", "",
              f"Agreement (eval mode, max |diff| / max(1, max |ref|)): output {diffs['out']:.1e}, "
              f"dx {diffs['dx']:.1e}, "
              f"parameter gradients {diffs['param_grads']:.1e}.", "",
              machine_line(result["machine"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
