"""Recipe variants of the demo's multimodal tagger: does any reach the image-decided recall issue 18 asks for?

    python benchmarks/recipes.py --root DEMO_OUT [--variants NAME ...] [--jobs 2]

``DEMO_OUT`` is the ``--out`` folder of a finished ``python -m minimner demo`` (its data, small BERT
and standardised features are reused). Each variant trains MGCMT alone, training seed 1, one BLAS
thread (the demo's setting), with the demo's recipe (``DEMO_RECIPE``) changed in the named fields
only, into ``DEMO_OUT/recipes/<name>`` (a finished run is re-scored, not retrained). It is then scored
on the test split as the demo scores it: test F1 and the recall on the image-decided entities with
the pixels as given, withheld and taken from another tweet, and where the entity words' own
text→image attention peaks. Writes benchmarks/results/recipes.{json,md}.

One seed per variant: differences of a few points are within what a change of summation order
alone does to a run (the demo's own recipe with two BLAS threads instead of one), so read the
table for large effects only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import _harness as H

from minimner.cli import demo as D  # noqa: E402
from minimner.data.conll import read_conll  # noqa: E402
from minimner.train import TrainConfig, load_run, run_collator, train  # noqa: E402

#: name -> (what it changes, TrainConfig fields over the demo's recipe)
VARIANTS = {
    "demo": ("the demo's recipe (6 epochs, lr 1e-3 / head 1e-3 / CRF 1e-2)", {}),
    "epochs8": ("8 epochs", {"epochs": 8}),
    "epochs10": ("10 epochs", {"epochs": 10}),
    "head2e-3": ("8 epochs, head lr 2e-3", {"epochs": 8, "lr_head": 2e-3}),
    "head3e-3": ("10 epochs, head lr 3e-3", {"epochs": 10, "lr_head": 3e-3}),
    "bert3e-4": ("8 epochs, BERT lr 3e-4", {"epochs": 8, "lr": 3e-4}),
    "dropout0.3": ("8 epochs, dropout 0.3 on BERT's output", {"epochs": 8, "dropout": 0.3}),
    "bert3e-4+dropout0.3": ("8 epochs, BERT lr 3e-4, dropout 0.3", {"epochs": 8, "lr": 3e-4, "dropout": 0.3}),
}
CHANNELS = ("multimodal", "multimodal_no_pixels", "multimodal_shuffled_pixels")


def prep_of(root: Path) -> dict:
    """The demo folder's inputs, as :func:`minimner.cli.demo.prepare` returns them (nothing is rebuilt)."""
    prep = {"data": root / "data", "bert": root / "bert-small", "features": root / "features",
            "objects": root / "data" / "objects.json"}
    missing = [str(p) for p in prep.values() if not p.exists()]
    if missing:
        raise SystemExit(f"{root} is not a finished demo folder (missing: {', '.join(missing)}); run "
                         f"`python -m minimner demo --out {root}` first")
    return prep


def train_variant(root: str, name: str) -> float:
    """Train one variant (in a worker process); its wall seconds (0 when it had been trained before)."""
    root = Path(root)
    out = root / "recipes" / name
    if (out / "summary.json").is_file():
        return 0.0
    cfg = D._config(prep_of(root), out, 1, dict(D.DEMO_RECIPE, **{k: v for k, v in VARIANTS[name][1].items()
                                                                 if k in D.DEMO_RECIPE}), "mgcmt")
    cfg.update({k: v for k, v in VARIANTS[name][1].items() if k not in D.DEMO_RECIPE})
    t0 = time.time()
    train(TrainConfig(**cfg), progress=False, log=lambda *a: None)
    (out / "last.npz").unlink(missing_ok=True)
    return time.time() - t0


def score_variant(root: Path, name: str) -> dict:
    """Test F1 and image-decided recall of each channel arm, and the attention record, of one trained variant."""
    prep = prep_of(root)
    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    sents = read_conll(prep["data"] / "test.txt")
    groups = D.entity_groups(sents, meta)
    model, tok, info = load_run(root / "recipes" / name)
    collator = run_collator(info, "test")
    arms = {}
    for arm in CHANNELS:
        rec, _ = D.score_arm(model, tok, sents, D.arm_collator(arm, collator, sents, 1), groups, arm, False)
        arms[arm] = {"test_f1": rec["test_f1"], "image_decided_recall": rec["image_decided_recall"]}
    att = D.attention_and_gates(model, tok, sents, collator, meta)
    history = [json.loads(line) for line in (root / "recipes" / name / "metrics.jsonl").read_text().splitlines()]
    return {"changes": VARIANTS[name][0], "fields": VARIANTS[name][1], "arms": arms,
            "attention": {k: att[k] for k in ("entity_peak_on_key_object", "non_entity_peak_on_key_object", "chance")},
            "dev_f1": [round(h["dev_f1"], 4) for h in history],
            "best_epoch": json.loads((root / "recipes" / name / "summary.json").read_text())["best_epoch"]}


def markdown(result: dict) -> str:
    lines = ["# Recipe variants of the demo's MGCMT (seed 1, test split)", "",
             f"Demo data and features of `{result['root_note']}`; each variant trains MGCMT alone with the demo's "
             "recipe changed as named (one BLAS thread, training seed 1). Image-decided recall with the pixels "
             "as given / withheld / from another tweet; attention: share of entity words (O words) whose own "
             "text→image attention peaks on the drawn key object, and chance. One seed each: read large effects only.",
             "", "| variant | test F1 | image-decided recall: MGCMT / no pixels / other pixels | attention entity / O / "
             "chance | dev F1 by epoch |", "|---|---:|---|---|---|"]
    for name, r in result["variants"].items():
        a, t = r["arms"], r["attention"]
        rec = " / ".join(f"{a[k]['image_decided_recall']:.3f}" for k in CHANNELS)
        lines.append(f"| {r['changes']} | {a['multimodal']['test_f1']:.4f} | {rec} | "
                     f"{t['entity_peak_on_key_object']:.3f} / {t['non_entity_peak_on_key_object']:.3f} / "
                     f"{t['chance']:.3f} | {', '.join(f'{x:.3f}' for x in r['dev_f1'])} |")
    lines += ["", f"Command: `{result['command']}`.", "", H.machine_line(result["machine"]) + "\n"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="a finished demo's --out folder")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2, help="variants trained at once, one BLAS thread each")
    p.add_argument("--out", default=str(H.RESULTS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.root)
    prep_of(root)
    os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        seconds = pool.starmap(train_variant, [(str(root), n) for n in args.variants])
    variants = {}
    for name, s in zip(args.variants, seconds):
        variants[name] = dict(score_variant(root, name), train_seconds=round(s, 1))
        r = variants[name]["arms"]
        print(f"{name}: " + ", ".join(f"{k} {v['image_decided_recall']:.3f}" for k, v in r.items()))
    cmd = "python benchmarks/recipes.py --root DEMO_OUT --variants " + " ".join(args.variants)
    result = {"variants": variants, "root_note": "python -m minimner demo --out DEMO_OUT", "command": cmd,
              "machine": H.machine()}
    H.publish(result, markdown(result), "recipes", args.out, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
