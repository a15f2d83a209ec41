"""``python -m minimner predict``: tag CoNLL or plain whitespace-tokenised text with a trained run."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="tag a file with a trained run (CoNLL in -> CoNLL out)",
        description="Read FILE as CoNLL (one token<TAB>tag per line, IMGID lines optional) or, when it has "
                    "no tabs, as plain text with one whitespace-tokenised tweet per line; write CoNLL with "
                    "the predicted tags to --output (default: standard output).")
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument("--input", required=True, help="CoNLL or plain text file")
    p.add_argument("--output", default=None, help="where to write CoNLL (default: stdout)")
    p.add_argument("--unconstrained", action="store_true", help="plain Viterbi instead of constrained decoding")
    p.add_argument("--features", default=None, metavar="DIR",
                   help="mgcmt runs: image features folder (default: the one recorded in the run)")
    p.add_argument("--features-split", default="test", metavar="SPLIT",
                   help="mgcmt runs: the features sub-folder holding these tweets' images (default: test)")
    p.add_argument("--objects", default=None, metavar="FILE",
                   help="mgcmt runs: object-label file (default: the one recorded in the run)")
    p.add_argument("--accept-new-features", action="store_true",
                   help="mgcmt runs: use features extracted with other ResNet weights than the run's (default: "
                        "an error)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _read_any(path):
    from pathlib import Path

    from minimner.data.conll import read_conll, read_text

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    text = path.read_bytes()
    if b"\t" in text:
        return read_conll(path, require_image_id=False)
    return read_text(path)


def run(args) -> int:
    import sys

    from minimner.data.batching import encode_sentences
    from minimner.data.conll import Sentence, write_conll
    from minimner.train import load_run, predict_sentences, run_source

    model, tok, info = load_run(args.run)
    source = run_source(info, args.features_split, features=args.features, objects=args.objects,
                        accept_new_features=args.accept_new_features)
    sents = _read_any(args.input)
    if not sents:
        raise ValueError(f"{args.input}: no sentences to tag")
    unlabelled = [Sentence(words=s.words, tags=None, image_id=s.image_id, line_no=s.line_no) for s in sents]
    examples = encode_sentences(tok, unlabelled)
    pred = predict_sentences(model, examples, constrained=not args.unconstrained,
                             progress=not args.no_progress, source=source)
    if args.output:
        write_conll(args.output, unlabelled, tags=pred)
    else:
        for s, tags in zip(unlabelled, pred):
            if s.image_id is not None:
                sys.stdout.write(f"IMGID:{s.image_id}\n")
            sys.stdout.write("".join(f"{w}\t{t}\n" for w, t in zip(s.words, tags)) + "\n")
    return 0
