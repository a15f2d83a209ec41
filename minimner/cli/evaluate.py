"""``python -m minimner evaluate``: score a run's best checkpoint on one split."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from minimner.atomic import write_text_atomic
from minimner.cli import CLIError
from minimner.cli.predict import missing_kind
from minimner.data.batching import encode_sentences
from minimner.data.conll import read_conll, write_conll
from minimner.metrics import format_table
from minimner.train import evaluate_examples, load_run, run_source, run_text_collator


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a trained run on a split (default and strict IOB2)",
        description="Load RUN/best.npz, decode SPLIT.txt from the run's data folder (or --data), print the "
                    "micro and per-type table, and write RUN/eval-SPLIT.json and RUN/pred-SPLIT.txt.")
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument("--split", default="test", help="split name: reads SPLIT.txt (default: test)")
    p.add_argument("--data", default=None, help="data folder (default: the one the run was trained on)")
    p.add_argument("--unconstrained", action="store_true", help="plain Viterbi instead of constrained decoding")
    p.add_argument("--strict", action="store_true", help="print the strict IOB2 table instead of the default one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="score only the first N tweets of the split, for a quick look (0 = all); the files "
                        "written are then named eval-SPLIT-firstN.json / pred-SPLIT-firstN.txt")
    p.add_argument("--features", default=None, metavar="DIR",
                   help="mgcmt runs: image features folder (default: the one recorded in the run)")
    p.add_argument("--objects", default=None, metavar="FILE",
                   help="mgcmt runs: object-label file (default: the one recorded in the run)")
    p.add_argument("--accept-new-features", action="store_true",
                   help="mgcmt runs: use features extracted with other ResNet weights than the run's (default: "
                        "an error)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def image_report(source, sentences) -> dict | None:
    """``{"used": n, "missing": {kind: n}}`` of the tweets' pictures (None for a text-only run).

    Kinds: no IMGID, not in the features folder, the run has no image features."""
    if source is None:
        return None
    used, missing = 0, {}
    for s in sentences:
        ok, why = source.image_status(s.image_id)
        if ok:
            used += 1
        else:
            missing[missing_kind(why)] = missing.get(missing_kind(why), 0) + 1
    return {"used": used, "missing": missing}


def run(args) -> int:
    model, tok, info = load_run(args.run)
    data = Path(args.data or info["config"]["data_dir"])
    path = data / f"{args.split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (choose --split or --data)")
    if args.limit < 0:
        raise CLIError(f"--limit must be 0 (all tweets) or a positive number, got {args.limit}")
    sents = read_conll(path)
    if args.limit:
        sents = sents[:args.limit]
    examples = encode_sentences(tok, sents)
    source = run_source(info, args.split, features=args.features, objects=args.objects,
                        accept_new_features=args.accept_new_features)
    images = image_report(source, sents)
    if images is not None:
        print(f"images: {images['used']} of {len(sents)} tweets read their picture"
              + "".join(f"; {n} missing ({why})" for why, n in sorted(images["missing"].items())), file=sys.stderr)
    pred, scores = evaluate_examples(model, sents, examples, constrained=not args.unconstrained,
                                     desc=args.split, progress=not args.no_progress,
                                     collator=run_text_collator(info).with_source(source))
    run_dir = Path(args.run)
    # A partial score never overwrites the full one (benchmarks read eval-SPLIT.json).
    name = f"{args.split}-first{args.limit}" if args.limit else args.split
    result = {"split": args.split, "file": str(path), "tweets": len(sents), "limit": args.limit or None,
              "constrained": not args.unconstrained, **({} if images is None else {"images": images}), **scores}
    write_text_atomic(run_dir / f"eval-{name}.json", json.dumps(result, indent=2))
    write_conll(run_dir / f"pred-{name}.txt", sents, tags=pred)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(scores["strict" if args.strict else "default"]))
    return 0
