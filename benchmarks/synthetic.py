"""The demo's six arms on the synthetic multimodal tweets, over several training seeds.

    python benchmarks/synthetic.py --root RUNS/synthetic --seeds 1 2 3     # the demo recipe, 3 training seeds

The demo's pipeline (minimner/cli/demo.py) once per training seed on the same generated data and
the same image features (data and ResNet seed 0): the text-only and the multimodal tagger trained
side by side (one BLAS thread each) with the demo's BERT, recipe and seed, both scored on the test split, then the one
trained multimodal model scored with its pixels or its objects withheld or taken from another
tweet. Reports test F1 and the recall on the image-decided entities of every arm, where the
entity words' own text→image attention peaks (against the O words of the same tweets), the
fusion gates and the CRF grammar, as mean ± sample std over the seeds with every seed's numbers,
to benchmarks/results/synthetic.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _harness as H

from minimner.cli import demo as D  # noqa: E402
from minimner.data.synthetic import VERSION  # noqa: E402

LABELS = {"text": "text-only (BERT-CRF)", "multimodal": "multimodal (MGCMT)",
          "multimodal_no_pixels": "MGCMT, pixels withheld (objects kept)",
          "multimodal_no_objects": "MGCMT, objects withheld (pixels kept)",
          "multimodal_shuffled_pixels": "MGCMT, another tweet's pixels (objects kept)",
          "multimodal_shuffled_objects": "MGCMT, another tweet's objects (pixels kept)"}


def _ms(xs, digits: int = 4):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f}"


def markdown(result: dict) -> str:
    """The report of a result record (what publish writes as synthetic.md)."""
    seeds, rows = result["seeds"], result["runs"]
    lines = ["# Synthetic multimodal tweets: which channel of the picture does MGCMT use?", "",
             f"Data: `minimner.data.synthetic.generate` (version {result['data_version']}, seed {result['data_seed']}, "
             f"{result['sizes']}); image features from a random-init ResNet-18 (seed {result['data_seed']}, BatchNorm "
             f"statistics of training pictures, standardised); BERT: {result['bert']}. Recipe (both taggers): "
             f"{result['recipe']}. Training seeds {', '.join(map(str, seeds))}; mean ± sample std over the seeds.", "",
             "| arm (test split) | test F1 | recall on image-decided entities |", "|---|---:|---:|"]
    for arm in D.ARMS:
        lines.append(f"| {LABELS[arm]} | {_ms([r['arms'][arm]['test_f1'] for r in rows])} | "
                     f"{_ms([r['arms'][arm]['image_decided_recall'] for r in rows])} |")
    att = [r["attention"] for r in rows]
    lines += ["", f"Image-decided entities: {rows[0]['arms']['text']['image_decided_entities']} test entities with "
              "type-neutral text and a picture of the gold type (misleading pictures and tweets without one are "
              "scored apart in results). Rows under MGCMT re-score the one trained model with one channel changed "
              "at test time.", "",
              f"The entity words' own text→image attention peaks on the drawn key object: "
              f"{_ms([a['entity_peak_on_key_object'] for a in att], 3)}; O words of the same tweets: "
              f"{_ms([a['non_entity_peak_on_key_object'] for a in att], 3)}; chance {_ms([a['chance'] for a in att], 3)}.",
              "", "| seed | text F1 | MGCMT F1 | image-decided recall: text / MGCMT / no pixels / other pixels | "
              "dev F1 text / MGCMT | CRF O→I-x | image gate entity / O |", "|---:|---:|---:|---|---|---:|---|"]
    for s, r in zip(seeds, rows):
        a, g = r["arms"], r["gates"].get("image", {})
        rec = " / ".join(f"{a[k]['image_decided_recall']:.3f}" for k in
                         ("text", "multimodal", "multimodal_no_pixels", "multimodal_shuffled_pixels"))
        lines.append(f"| {s} | {a['text']['test_f1']:.4f} | {a['multimodal']['test_f1']:.4f} | {rec} | "
                     f"{r['dev_f1']['text']:.4f} / {r['dev_f1']['multimodal']:.4f} | "
                     f"{r['crf_transitions']['O_to_I']:+.2f} | {g.get('entity', 0):.2f} / {g.get('O', 0):.2f} |")
    trained = [r["seconds"] for r in rows if r.get("trained", True)]
    reused = [str(s) for s, r in zip(seeds, rows) if not r.get("trained", True)]
    lines += ["", f"Time per trained seed (train both side by side + score; machine load slows it): "
              f"{_ms(trained, 0) if trained else 'none trained'} s"
              + (f"; seed(s) {', '.join(reused)} reused runs already in ROOT and were only re-scored." if reused else ".")
              , "", f"Command: `{result['command']}`.", "",
              H.machine_line(result["machine"]) + "\n"]
    return "\n".join(lines)


def one_seed(prep: dict, root: Path, seed: int, recipe: dict) -> dict:
    """Train (unless an earlier call did) and score one training seed."""
    t0 = time.time()
    runs = root / f"runs-seed{seed}"
    trained = not (runs / "multimodal" / "summary.json").is_file()
    if trained:
        D.train_arms(prep, runs, seed, recipe, progress=False)
    arms, _, mm = D.score_arms(prep, runs, seed, progress=False)
    attention = D.attention_and_gates(mm["model"], mm["tok"], mm["sents"], mm["collator"], mm["meta"])
    dev = {arm: json.loads((runs / arm / "summary.json").read_text())["best_dev_f1"] for arm in ("text", "multimodal")}
    return {"arms": arms, "attention": {k: v for k, v in attention.items() if k != "gates"},
            "gates": attention["gates"], "crf_transitions": D.crf_grammar(mm["model"]), "dev_f1": dev,
            "verdict": D.verdict(arms, attention), "seconds": round(time.time() - t0, 1), "trained": trained}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="work folder (data, features, runs per seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--bert", default=None, help="default: the demo's (a small BERT trained from scratch)")
    p.add_argument("--out", default=str(H.RESULTS))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.root)
    prep = D.prepare(root, args.data_seed, args.bert, progress=False)
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(prep, root, seed, dict(D.DEMO_RECIPE)))
        print(f"seed {seed}: " + ", ".join(f"{a} {rows[-1]['arms'][a]['image_decided_recall']:.3f}" for a in D.ARMS))
    cmd = "python benchmarks/synthetic.py --root ROOT --seeds " + " ".join(map(str, args.seeds))
    result = {"seeds": args.seeds, "data_seed": args.data_seed, "data_version": VERSION, "sizes": D.DEMO_SIZES,
              "bert": prep["bert_name"], "recipe": dict(D.DEMO_RECIPE), "runs": rows, "command": cmd,
              "machine": H.machine()}
    H.publish(result, markdown(result), "synthetic", args.out, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
