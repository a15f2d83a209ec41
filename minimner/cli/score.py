"""``python -m minimner score --gold FILE --pred FILE [--strict] [--json]``: score predictions.

Both files are CoNLL (``token<TAB>tag`` lines, blank line between tweets, optional
``IMGID:`` lines; Twitter-2015's ``OTHER`` is read as ``MISC``). They must hold the
same tweets with the same words in the same order; the first disagreement is
reported with its line numbers. The prediction file may contain the word-piece
tags ``X``/``[CLS]``/``[SEP]``/``PAD``; see ``--specials``.

``--released FILE`` scores a prediction file in the format the original authors
released (``best_model/t2015/pre_output.txt``), which carries its own gold row.
"""
from __future__ import annotations

import json

from minimner.cli import CLIError
from minimner.data.conll import read_conll, read_released_output
from minimner.metrics import format_table, score

_EPILOG = """\
Examples:
  python -m minimner score --gold ../shared/data/twitter2015/test.txt --pred runs/t15/test_pred.txt
  python -m minimner score --gold test.txt --pred pred.txt --strict --json
  python -m minimner score --released pre_output.txt --specials seqeval

Chunking: by default entities are read the conlleval / seqeval way (an I-x that does
not continue an x entity starts one); --strict uses strict IOB2 (seqeval
mode='strict', scheme=IOB2: such an I-x belongs to no entity).

Word-piece tags predicted on a word (X, [CLS], [SEP], PAD) are scored as O and
counted ('--specials o', the default), or read exactly as seqeval >= 1.0 reads them
('--specials seqeval', which reproduces the original repository's numbers).

--json prints {"micro": {"precision", "recall", "f1"}, "per_type": {TYPE:
{"precision", "recall", "f1", "support"}}, ...} with fractions in [0, 1], plus
"counts", "special_predictions", "mode" and "specials".
"""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "score", help="entity-level P/R/F1 of a prediction file against a gold file",
        description="Score predicted NER tags against gold tags: entity-level micro and per-type "
                    "precision, recall and F1 over words.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gold", metavar="FILE", help="gold CoNLL file (token<TAB>tag, IMGID lines optional)")
    p.add_argument("--pred", metavar="FILE", help="predicted CoNLL file with the same words as --gold")
    p.add_argument("--released", metavar="FILE",
                   help="instead of --gold/--pred: the authors' released pre_output.txt (gold row included)")
    p.add_argument("--strict", action="store_true", help="strict IOB2 chunking (default: conlleval chunking)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    p.add_argument("--specials", choices=("o", "seqeval"), default="o",
                   help="how predicted X/[CLS]/[SEP]/PAD on a word are scored (default: o)")
    p.add_argument("--digits", type=int, default=4, help="decimals in the table (default: 4)")
    p.set_defaults(func=run)


def _align(gold, pred, gold_path, pred_path) -> None:
    """Raise CLIError at the first place where the two files' tweets or words differ."""
    for i in range(max(len(gold), len(pred))):
        if i >= len(pred):
            raise CLIError(f"{pred_path} has {len(pred)} tweets but {gold_path} has {len(gold)}; "
                           f"the first one missing from the predictions starts at {gold_path}:{gold[i].line_no}")
        if i >= len(gold):
            raise CLIError(f"{pred_path} has {len(pred)} tweets but {gold_path} has {len(gold)}; "
                           f"the first extra prediction starts at {pred_path}:{pred[i].line_no}")
        g, p = gold[i], pred[i]
        for j in range(min(len(g), len(p))):
            if g.words[j] != p.words[j]:
                raise CLIError(f"{pred_path}:{p.line_no + j}: word {p.words[j]!r} does not match "
                               f"{gold_path}:{g.line_no + j} word {g.words[j]!r} (tweet {i + 1}, word {j + 1})")
        if len(g) != len(p):
            k = min(len(g), len(p))
            longer, lpath = (g, gold_path) if len(g) > len(p) else (p, pred_path)
            raise CLIError(f"{lpath}:{longer.line_no + k}: tweet {i + 1} has {len(g)} words in {gold_path} "
                           f"(line {g.line_no}) but {len(p)} in {pred_path} (line {p.line_no})")
        if g.image_id is not None and p.image_id is not None and g.image_id != p.image_id:
            raise CLIError(f"{pred_path}:{p.line_no}: tweet {i + 1} has IMGID {p.image_id!r} but "
                           f"{gold_path}:{g.line_no} has {g.image_id!r}")


def run(args) -> int:
    if args.released is not None:
        if args.gold is not None or args.pred is not None:
            raise CLIError("--released carries its own gold tags; do not combine it with --gold/--pred")
        rows = read_released_output(args.released)
        gold_tags, pred_tags = [g for _, g, _ in rows], [p for _, _, p in rows]
    else:
        if args.gold is None or args.pred is None:
            raise CLIError("give both --gold FILE and --pred FILE (or --released FILE)")
        gold = read_conll(args.gold, require_image_id=False)
        pred = read_conll(args.pred, require_image_id=False, allow_special=True)
        _align(gold, pred, args.gold, args.pred)
        gold_tags, pred_tags = [s.tags for s in gold], [s.tags for s in pred]
    if args.digits < 0:
        raise CLIError(f"--digits must be >= 0, got {args.digits}")
    result = score(gold_tags, pred_tags, strict=args.strict, specials=args.specials)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result, digits=args.digits), end="")
    return 0
