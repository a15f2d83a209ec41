"""Text-only vs multimodal vs shuffled images on the synthetic multimodal tweets, over several seeds.

    python benchmarks/synthetic.py --root RUNS/synthetic --seeds 1 2 3     # the demo recipe, 3 training seeds
    python benchmarks/synthetic.py --root RUNS/synthetic-8ep --epochs 8     # the same, trained twice as long

The demo's pipeline (minimner/cli/demo.py), once per training seed on the same generated data
and the same image features (data and ResNet seed 0): the text-only BERT-CRF and MGCMT trained
with the same BERT, recipe and seed, both scored once on the test split, and MGCMT scored again
with the pictures shuffled across the test tweets. Reports test F1 (all entities), recall on the
entities whose type only the picture decides, and how often the text→image attention of those
words peaks on the drawn key object, as mean ± sample std over the seeds, with every seed's
numbers, to benchmarks/results/synthetic.{json,md} (``synthetic_<E>ep.{json,md}`` for a number of
epochs other than the demo's).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _harness as H

ARMS = ("text", "multimodal", "multimodal_shuffled_images")
LABELS = {"text": "text-only (BERT-CRF)", "multimodal": "multimodal (MGCMT)",
          "multimodal_shuffled_images": "multimodal, images shuffled across tweets"}


def _ms(xs, digits: int = 4):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f}"


def markdown(result: dict) -> str:
    """The report of a result record (what publish writes as synthetic.md)."""
    seeds = result["seeds"]
    rows = result["runs"]
    lines = ["# Synthetic multimodal tweets: does the picture help?", "",
             f"Data: `minimner.data.synthetic.generate` (seed {result['data_seed']}, "
             f"{result['sizes']}), image features from a random-init ResNet-18 (seed {result['data_seed']}) through "
             f"the `features` command; BERT: {result['bert']}. Recipe (both taggers): {result['recipe']}. "
             f"Training seeds {', '.join(map(str, seeds))}; mean ± sample std over the seeds; test scored once per "
             "model.", "",
             "| model | test F1 | recall on image-decided entities | dev F1 |",
             "|---|---:|---:|---:|"]
    for arm in ARMS:
        lines.append(f"| {LABELS[arm]} | {_ms([r[arm]['test_f1'] for r in rows])} | "
                     f"{_ms([r[arm]['image_decided']['recall'] for r in rows])} | "
                     f"{_ms([r[arm]['dev_f1'] for r in rows])} |")
    n_dec = rows[0]["text"]["image_decided"]["entities"]
    lines += ["", f"Image-decided entities: the {n_dec} test entities of ambiguous tweets, whose name and "
              "template say nothing about the type (a text-only guess is right 1 time in 4).", "",
              "| seed | text F1 | multimodal F1 | shuffled F1 | attention peak on key object | rolled out | chance |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for s, r in zip(seeds, rows):
        a = r["attention"]
        lines.append(f"| {s} | {r['text']['test_f1']:.4f} | {r['multimodal']['test_f1']:.4f} | "
                     f"{r['multimodal_shuffled_images']['test_f1']:.4f} | {a['argmax_on_key_object']:.3f} | "
                     f"{a['rollout_argmax_on_key_object']:.3f} | {a['chance']:.3f} |")
    lines += ["", "Attention peak on key object: share of image-decided test entity words (pictures that are not "
              "misleading) whose text→image attention (txt2img, mean over heads) peaks on a grid cell of the drawn "
              "key object; rolled out: the same attention composed with the image self-attention it reads through "
              "(`minimner.explain.rollout`); chance = the key object's share of the 49 cells.", "",
              f"Time per seed trained in this call (train both side by side + score; whatever else the machine "
              f"ran meanwhile slows it, see the README for the demo timed alone): "
              f"{_ms([r['seconds'] for r in rows if r.get('trained_in_this_call', True)], 0)} s.", "",
              f"Command: `{result['command']}`.", "", H.machine_line(result["machine"]) + "\n"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="work folder (data, features, runs per seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    p.add_argument("--bert", default=None, help="default: the installed MiniLM")
    p.add_argument("--out", default=str(H.RESULTS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    from minimner.cli import demo as D
    from minimner.data.conll import read_conll
    from minimner.data.synthetic import DEFAULT_SIZES
    from minimner.train import load_run, run_source

    root = Path(args.root)
    epochs = args.epochs or D.DEMO_RECIPE["epochs"]
    prep = D.prepare(root, args.data_seed, args.bert, progress=False)
    meta = json.loads((prep["data"] / "meta.json").read_text(encoding="utf-8"))
    sents = read_conll(prep["data"] / "test.txt")
    rows = []
    for seed in args.seeds:
        t0 = time.time()
        runs = root / f"runs-seed{seed}"
        trained = not (runs / "multimodal" / "summary.json").is_file()   # else: trained by an earlier call
        if trained:
            D.train_arms(prep, runs, seed, epochs, progress=False)
        results, _ = D.score_arms(prep, runs, seed, progress=False)
        model, tok, info = load_run(runs / "multimodal")
        results["attention"] = D.attention_on_key_objects(model, tok, sents, run_source(info, "test"), meta)
        results["seconds"] = round(time.time() - t0, 1)
        results["trained_in_this_call"] = trained
        rows.append(results)
        print(f"seed {seed}: " + ", ".join(f"{a} {results[a]['test_f1']:.4f}" for a in ARMS))
    cmd = ("python benchmarks/synthetic.py --root ROOT --seeds " + " ".join(map(str, args.seeds))
           + (f" --epochs {epochs}" if args.epochs else ""))
    stem = "synthetic" if epochs == D.DEMO_RECIPE["epochs"] else f"synthetic_{epochs}ep"
    result = {"seeds": args.seeds, "data_seed": args.data_seed, "sizes": DEFAULT_SIZES, "bert": prep["bert_name"],
              "recipe": dict(D.DEMO_RECIPE, epochs=epochs), "runs": rows, "command": cmd,
              "machine": H.machine()}
    H.publish(result, markdown(result), stem, args.out, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
