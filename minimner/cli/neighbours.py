"""``python -m minimner neighbours WORD... [--lexicon FILE] [-k 4] [--json]``.

Prints each word's k nearest lexicon neighbours (cosine, the word itself
excluded), their similarities and the softmax weights that build its
augmentation vector (docs/augmentation.md §1). ``--json`` prints
``{word: [{"word", "similarity", "weight"}, ...]}`` (an empty list for a word not
in the lexicon). Without ``--lexicon`` the converted GloVe 6B 50-d in
``$MINIMNER_HOME`` is used, converted from the kumo package on first use.
"""
from __future__ import annotations

import json
import sys

from minimner.lexicon.augment import open_lexicon
from minimner.lexicon.neighbours import CASE_POLICIES, describe_neighbours


def _run(args) -> int:
    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    lex = open_lexicon(args.lexicon, progress=not args.json, verbose=True)
    if args.k > len(lex) - 1:
        raise ValueError(f"-k {args.k} is too large for a lexicon of {len(lex)} words")
    res = describe_neighbours(lex, args.words, k=args.k, case=args.case)
    missing = [w for w, r in res.items() if r["matched"] is None]
    if args.json:
        print(json.dumps({w: r["neighbours"] for w, r in res.items()}, ensure_ascii=False, indent=2))
    else:
        for w, r in res.items():
            if r["matched"] is None:
                print(f"{w}: not in the lexicon")
                continue
            via = "" if r["matched"] == w else f" (as {r['matched']!r})"
            print(f"{w}{via}:")
            width = max(len(n["word"]) for n in r["neighbours"])
            print(f"  {'rank':>4}  {'neighbour':<{width}}  {'similarity':>10}  {'weight':>8}")
            for i, n in enumerate(r["neighbours"], 1):
                print(f"  {i:>4}  {n['word']:<{width}}  {n['similarity']:>10.4f}  {n['weight']:>8.4f}")
    if missing:
        print(f"note: not in {lex.source}: {', '.join(missing)}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "neighbours", help="show words' nearest lexicon neighbours and augmentation weights",
        description="Print each word's k nearest neighbours in a word-vector lexicon (cosine similarity, the "
                    "word excluded), their similarities and softmax weights (docs/augmentation.md §1).")
    p.add_argument("words", nargs="+", metavar="WORD")
    p.add_argument("--lexicon", default=None, metavar="FILE",
                   help="lexicon (.npz from `convert glove`, GloVe/word2vec text, word2vec .bin); default: the "
                        "converted GloVe 6B 50-d in $MINIMNER_HOME (~/.cache/minimner), made on first use")
    p.add_argument("-k", type=int, default=4, help="neighbours per word (default 4)")
    p.add_argument("--case", choices=CASE_POLICIES, default="auto",
                   help="lookup: auto = the word, then its lower-case form (default); exact; lower")
    p.add_argument("--json", action="store_true", help='print {word: [{"word", "similarity", "weight"}, ...]}')
    p.set_defaults(func=_run)
