"""Text-only BERT-CRF baseline on the real Twitter data: run the recipe, collect the numbers.

The recipe (issue 5; the same as the PyTorch reference ``ref_text_crf.py``): MiniLM-L6-H384
BERT + dropout 0.1 + linear + CRF, paper label convention, AdamW lr 1e-4 with 10 % linear
warmup then linear decay to 0, weight decay 0.01 (not on biases/LayerNorm weights), batch 24,
8 epochs, global-norm clipping 1.0, model selected on valid micro-F1, test scored once.

    # one seed (what `run` does for each seed):
    python -m minimner train --data DATA/twitter2015 --out RUNS/twitter2015-seed1 --seed 1 \\
        --epochs 8 --batch-size 24 --lr 1e-4
    python -m minimner evaluate --run RUNS/twitter2015-seed1 --split test --json

    python benchmarks/text_crf.py run --data DATA/twitter2015 --runs RUNS --seeds 1 2 3
    python benchmarks/text_crf.py collect RUNS/twitter2015-seed1 RUNS/twitter2015-seed2 ... \\
        --name twitter2015           # -> benchmarks/results/text_crf_twitter2015.{json,md}

Cross-modal runs (``train --model mgcmt``) collect the same way, to ``mgcmt_<name>.{json,md}``.

``collect`` reads each run's ``summary.json``, ``metrics.jsonl``, ``run.json`` and, when
present, ``eval-test.json``, and reports mean ± sample standard deviation over seeds.

Semantic-augmentation ablation (issue 6; docs/augmentation.md §3): the same recipe with ``--aug add`` or
``--aug gate`` (GloVe 6B 50-d neighbours, k = 4), 3 seeds each, against the plain runs::

    python benchmarks/text_crf.py run --data DATA/twitter2015 --runs RUNS --aug add    # RUNS/twitter2015-add-seed{1,2,3}
    python benchmarks/text_crf.py run --data DATA/twitter2015 --runs RUNS --aug gate
    python benchmarks/text_crf.py ablation --name twitter2015 \
        --arm none RUNS/twitter2015-seed{1,2,3} --arm add RUNS/twitter2015-add-seed{1,2,3} \
        --arm gate RUNS/twitter2015-gate-seed{1,2,3}   # -> benchmarks/results/augment_ablation_twitter2015.{json,md}
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# benchmarks/_harness.py (this folder is on sys.path)
from _harness import RESULTS, machine_line, publish


def _run(args) -> int:
    data = Path(args.data)
    for seed in args.seeds:
        arm = "" if args.aug == "none" else f"-{args.aug}"
        out = Path(args.runs) / f"{data.name}{arm}-seed{seed}"
        cmd = [sys.executable, "-m", "minimner", "train", "--data", str(data), "--out", str(out), "--seed",
               str(seed), "--epochs", "8", "--batch-size", "24", "--lr", "1e-4"]
        if args.aug != "none":
            cmd += ["--aug", args.aug, "--aug-k", "4"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        if (data / "test.txt").is_file():
            subprocess.run([sys.executable, "-m", "minimner", "evaluate", "--run", str(out), "--split", "test",
                            "--json"], check=True)
    return 0


def _mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _fmt(v):
    """An F1-style number with 4 decimals, or an en dash when missing."""
    return "–" if v is None else f"{v:.4f}"


def _machine_line(mach):
    """The machine a run was trained on (its run.json record), as one sentence."""
    return machine_line(mach, load=False, backend=True)


def _rows(runs):
    """One summary row per finished run folder."""
    rows = []
    for run in map(Path, runs):
        summary = json.loads((run / "summary.json").read_text())
        info = json.loads((run / "run.json").read_text())
        hist = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        test = json.loads((run / "eval-test.json").read_text()) if (run / "eval-test.json").exists() else None
        rows.append({
            "run": run.name, "seed": summary["seed"], "best_epoch": summary["best_epoch"],
            "dev_f1": summary["best_dev_f1"],
            "test_f1": test["default"]["micro"]["f1"] if test else None,
            "test_f1_strict": test["strict"]["micro"]["f1"] if test else None,
            "test_p": test["default"]["micro"]["precision"] if test else None,
            "test_r": test["default"]["micro"]["recall"] if test else None,
            "seconds_per_epoch_train": statistics.mean(h["train_seconds"] for h in hist),
            "seconds_per_epoch_dev_eval": statistics.mean(h["eval_seconds"] for h in hist),
            "machine": info["machine"], "config": info["config"],
        })
    return rows


def _collect(args) -> int:
    rows = _rows(args.runs)
    models = {r["config"].get("model", "text-crf") for r in rows}
    if len(models) != 1:
        raise SystemExit(f"collect: the runs mix models {sorted(models)}; collect one model at a time")
    model = models.pop()
    agg = {k: _mean_std([r[k] for r in rows]) for k in ("dev_f1", "test_f1", "test_f1_strict",
                                                        "seconds_per_epoch_train")}
    result = {"name": args.name, "model": model, "runs": rows, "mean_std": agg, "note": args.note}
    stem = "mgcmt" if model == "mgcmt" else "text_crf"
    publish(result, collect_markdown(result), f"{stem}_{args.name}", args.out)
    return 0


def _recipe_line(result: dict) -> tuple[str, str]:
    """Title and recipe sentence of a collect report, for the runs' model."""
    common = ("AdamW lr 1e-4, 10 % warmup then linear decay to 0, batch 24, 8 epochs, clipping 1.0, selected on "
              "valid micro-F1 (conlleval chunking), test scored once with constrained Viterbi.")
    if result.get("model") == "mgcmt":
        cfg = result["runs"][0]["config"]
        images = "image features from " + cfg["features"] if cfg.get("features") else "every image marked missing"
        return (f"Cross-modal MGCMT: {result['name']}",
                f"Recipe: MiniLM-L6-H384 MGCMT with the paper's default flags (augmentation `{cfg.get('aug')}`, "
                f"gate + concat fusion, auxiliary span CRF), {images}, objects "
                f"{'from ' + cfg['objects'] if cfg.get('objects') else 'none'}; " + common)
    return (f"Text-only MiniLM-CRF baseline: {result['name']}",
            "Recipe: MiniLM-L6-H384 + dropout 0.1 + linear + CRF, " + common)


def collect_markdown(result: dict) -> str:
    """The report of ``collect`` (``benchmarks/results/text_crf_<name>.md``) from its result record."""
    rows, agg, note = result["runs"], result["mean_std"], result["note"]
    title, recipe = _recipe_line(result)
    lines = [f"# {title}", "", recipe, "",
             "| run | seed | best epoch | valid F1 | test F1 | test F1 (strict IOB2) | train s/epoch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['seed']} | {r['best_epoch']} | {_fmt(r['dev_f1'])} | {_fmt(r['test_f1'])} | "
                     f"{_fmt(r['test_f1_strict'])} | {r['seconds_per_epoch_train']:.0f} |")
    m = {k: ("–" if v[0] is None else f"{v[0]:.4f} ± {v[1]:.4f}") for k, v in agg.items()}
    lines += ["", f"Mean ± sample std over {len(rows)} seed(s): valid F1 {m['dev_f1']}, test F1 {m['test_f1']}, "
              f"test F1 strict {m['test_f1_strict']}; training seconds per epoch "
              f"{agg['seconds_per_epoch_train'][0]:.0f}.", ""]
    if note:
        lines += [note, ""]
    lines.append(_machine_line(rows[0]["machine"]))
    return "\n".join(lines) + "\n"


def _ablation(args) -> int:
    arms = {}
    for name, *runs in args.arm:
        if not runs:
            raise SystemExit(f"--arm {name}: give the arm's run folders after its name")
        rows = _rows(runs)
        augs = {r["config"].get("aug", "none") for r in rows}
        if augs != {name}:
            raise SystemExit(f"--arm {name}: the runs were trained with --aug {sorted(augs)}, not {name!r}")
        arms[name] = {"runs": rows, "mean_std": {k: _mean_std([r[k] for r in rows])
                                                 for k in ("dev_f1", "test_f1", "test_f1_strict")}}
    result = {"name": args.name, "arms": arms, "note": args.note}
    publish(result, ablation_markdown(result), f"augment_ablation_{args.name}", args.out)
    return 0


def ablation_markdown(result: dict) -> str:
    """The report of ``ablation`` (``benchmarks/results/augment_ablation_<name>.md``) from its result record."""
    arms, note = result["arms"], result["note"]
    pm = (lambda ms: "–" if ms[0] is None else f"{ms[0]:.4f} ± {ms[1]:.4f}")
    lines = [f"# Semantic augmentation ablation: {result['name']}", "",
             "Text-only MiniLM-CRF recipe of `text_crf_*.md` (AdamW lr 1e-4, 10 % warmup, batch 24, 8 epochs, "
             "clipping 1.0, model selected on valid micro-F1, test scored once, constrained Viterbi) with the "
             "augmentation fused after BERT (docs/augmentation.md §3): `none`, `add` (the paper's, h + W a) or `gate`. "
             "Augmentation vectors: softmax-weighted sum of each word's k = 4 nearest GloVe 6B 50-d neighbours "
             "(cosine, docs/augmentation.md §1).", "",
             "| arm | valid F1 (mean ± std) | test F1 (mean ± std) | test F1 strict IOB2 | per-seed test F1 |",
             "|---|---:|---:|---:|---|"]
    for name, a in arms.items():
        per = " / ".join(f"{_fmt(r['test_f1'])} (seed {r['seed']})" for r in a["runs"])
        lines.append(f"| {name} | {pm(a['mean_std']['dev_f1'])} | {pm(a['mean_std']['test_f1'])} | "
                     f"{pm(a['mean_std']['test_f1_strict'])} | {per} |")
    base = arms.get("none", {}).get("mean_std", {}).get("test_f1", (None, None))[0]
    if base is not None and len(arms) > 1:
        lines += ["", "Difference of mean test F1 from `none`: " + ", ".join(
            f"{n} {100 * (a['mean_std']['test_f1'][0] - base):+.2f} points" for n, a in arms.items() if n != "none")
            + f" (sample std over {len(next(iter(arms.values()))['runs'])} seeds shown above)."]
    lines.append("")
    if note:
        lines += [note, ""]
    lines.append(_machine_line(next(iter(arms.values()))["runs"][0]["machine"]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train (and test-score) one run per seed")
    r.add_argument("--data", required=True)
    r.add_argument("--runs", required=True, help="folder for the run folders")
    r.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    r.add_argument("--aug", choices=["none", "add", "gate", "embed"], default="none",
                   help="semantic augmentation arm (GloVe 6B 50-d, k = 4); run folders get an -ARM suffix")
    r.set_defaults(func=_run)
    c = sub.add_parser("collect", help="summarise finished run folders")
    c.add_argument("runs", nargs="+")
    c.add_argument("--name", required=True)
    c.add_argument("--note", default="", help="a sentence on how the runs were executed")
    c.add_argument("--out", type=Path, default=RESULTS)
    c.set_defaults(func=_collect)
    a = sub.add_parser("ablation", help="compare augmentation arms (mean ± std of test F1 per arm)")
    a.add_argument("--arm", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                   help="an arm name (none/add/gate/embed, checked against each run's config) and its run folders")
    a.add_argument("--name", required=True)
    a.add_argument("--note", default="", help="a sentence on how the runs were executed")
    a.add_argument("--out", type=Path, default=RESULTS)
    a.set_defaults(func=_ablation)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
