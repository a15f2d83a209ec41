"""An MGCMT training epoch with a features file, timed through the CLI.

``run`` times ``python -m minimner train --model mgcmt --features DIR --epochs 1 ...`` in a
child process (wall time and the child's CPU time) and writes the record; ``collect RUN``
builds the record from a finished run folder (``run.json``, ``metrics.jsonl``,
``summary.json``) without the CPU time. The report states whether the epoch was complete or
cut with ``--limit`` (the number of sentences), the seconds per step, the dev evaluation and
the machine's load when the run started: on a shared machine the wall seconds measure the
other jobs too.

Usage::

    python benchmarks/synthetic_features.py ../shared/data/twitter2015 /tmp/feat2015
    python benchmarks/mgcmt_epoch.py run --data ../shared/data/twitter2015 --features /tmp/feat2015 --run /tmp/ep
    python benchmarks/mgcmt_epoch.py run ... --limit 240       # 10 steps when a full epoch does not fit
    python benchmarks/mgcmt_epoch.py collect /tmp/ep --name twitter2015
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import _harness as H


def record_of(run: Path, name: str, command: str, wall=None, cpu=None) -> dict:
    """The result record of a finished one-epoch run folder."""
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    cfg = info["config"]
    return {"benchmark": "mgcmt_epoch", "name": name, "command": command, "limit": cfg["limit"],
            "train_sentences": info["train_sentences"], "dev_sentences": info["dev_sentences"],
            "steps": metrics["step"], "batch_size": cfg["batch_size"], "aug": cfg["aug"],
            "features": info["features_settings"], "objects": cfg["objects"],
            "train_seconds": metrics["train_seconds"], "eval_seconds": metrics["eval_seconds"],
            "command_wall_seconds": wall, "command_cpu_seconds": cpu, "machine": info["machine"]}


def markdown(r: dict) -> str:
    m, feats = r["machine"], r["features"] or {}
    full = not r["limit"]
    lines = [f"# MGCMT on {r['name']} with a features file, timed through the CLI"
             + ("" if full else f" ({r['steps']} steps, not a full epoch)"), "",
             f"Command: `{r['command']}`.", "",
             f"Features: {feats.get('arch')} at {feats.get('size')}, stored as {feats.get('dtype')}"
             + (f" ({feats['synthetic']})" if feats.get("synthetic") else "")
             + f"; objects: {r['objects'] or 'none'}; augmentation: {r['aug']}; batch {r['batch_size']}.", ""]
    if not full:
        lines += [f"**Not a full epoch**: `--limit {r['limit']}` trains on the first {r['train_sentences']} "
                  f"sentences ({r['steps']} steps) and evaluates on the first {r['dev_sentences']} dev sentences.", ""]
    lines += ["| quantity | value |", "|---|---:|",
              f"| train steps | {r['steps']} |",
              f"| train seconds (wall) | {r['train_seconds']:.1f} |",
              f"| seconds per step (wall) | {r['train_seconds'] / r['steps']:.2f} |",
              f"| dev evaluation, {r['dev_sentences']} sentences (wall s) | {r['eval_seconds']:.1f} |"]
    if r["command_wall_seconds"] is not None:
        lines += [f"| whole command: wall s; CPU s (user + system) | {r['command_wall_seconds']:.1f}; "
                  f"{r['command_cpu_seconds']:.1f} |"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, NumPy {m['numpy']}, "
                  f"backend {m['backend']}, 1-min load average when the run started {m['loadavg_1min']:.1f}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time one epoch through the CLI")
    r.add_argument("--data", required=True)
    r.add_argument("--features", required=True)
    r.add_argument("--run", required=True, help="run folder to create")
    r.add_argument("--limit", type=int, default=0, help="first N train/dev sentences only (0: the whole epoch)")
    r.add_argument("--aug", default="none", help="--aug of train (default none: no lexicon table to build)")
    c = sub.add_parser("collect", help="the record of a finished run folder")
    c.add_argument("run")
    for p in (r, c):
        p.add_argument("--name", default="twitter2015")
        p.add_argument("--out", type=Path, default=H.RESULTS)
        p.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        cli = [sys.executable, "-m", "minimner", "train", "--model", "mgcmt", "--data", args.data, "--features",
               args.features, "--aug", args.aug, "--epochs", "1", "--batch-size", "24", "--out", args.run,
               "--no-progress"] + (["--limit", str(args.limit)] if args.limit else [])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, cwd=H.ROOT)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        command = "python -m minimner " + " ".join(cli[3:])
        rec = record_of(Path(args.run), args.name, command, wall, cpu)
    else:
        info = json.loads((Path(args.run) / "run.json").read_text(encoding="utf-8"))
        cfg = info["config"]
        command = (f"python -m minimner train --model mgcmt --data {cfg['data_dir']} --features {cfg['features']} "
                   f"--aug {cfg['aug']} --epochs {cfg['epochs']} --batch-size {cfg['batch_size']} --out {cfg['out']}"
                   + (f" --limit {cfg['limit']}" if cfg["limit"] else "") + " --no-progress")
        rec = record_of(Path(args.run), args.name, command)
    H.publish(rec, markdown(rec), f"mgcmt_epoch_{args.name}", args.out, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
