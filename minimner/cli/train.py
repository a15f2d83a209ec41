"""``python -m minimner train``: train a tagger, select on dev, save an atomic run folder.

``--aug {none,add,gate,embed}`` (default ``none``) adds the semantic augmentation
of SPEC §2 (``--lexicon FILE``, ``--aug-k`` …, see
:func:`minimner.lexicon.augment.add_augment_arguments`); the table used is saved in
the run folder, so ``evaluate`` and ``predict`` need no flags for it.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a tagger on CoNLL data (selects on dev micro-F1)",
        description="Train the text-only BERT-CRF tagger, optionally with semantic augmentation "
                    "(--aug add|gate|embed: word vectors averaged over each word's --aug-k nearest "
                    "neighbours in --lexicon, fused after BERT or inside its embeddings; SPEC §2). "
                    "The checkpoint with the best dev micro-F1 is kept in OUT/best.npz; OUT/last.npz lets an "
                    "interrupted run --resume; the augmentation table used is saved as OUT/augment.npz. "
                    "The test split's labels are never read here (its words only enter the augmentation "
                    "table): score it once with `evaluate`.")
    p.add_argument("--data", required=True, help="folder with train.txt and valid.txt (CoNLL with IMGID)")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--model", default="text-crf", choices=("text-crf",), help="model to train (default: text-crf)")
    p.add_argument("--bert", default=None,
                   help="Hugging Face BERT folder or converted .npz (default: the installed MiniLM-L6-H384)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps used for linear warmup")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="global-norm clipping (0 disables)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--unconstrained", action="store_true",
                   help="plain Viterbi for dev decoding (default: constrained, SPEC §8.3)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N train/dev sentences")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimiser steps (0 = no limit)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from minimner.lexicon.augment import add_augment_arguments

    add_augment_arguments(p, default_mode="none")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from minimner.lexicon.augment import augment_config_from_args
    from minimner.train import TrainConfig, train

    aug = augment_config_from_args(args)
    cfg = TrainConfig(data_dir=args.data, out=args.out, model=args.model, bert=args.bert, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
                      max_grad_norm=args.max_grad_norm, seed=args.seed, patience=args.patience,
                      constrained=not args.unconstrained, limit=args.limit, max_steps=args.max_steps,
                      aug=aug.mode, lexicon=aug.lexicon, aug_k=aug.k, aug_case=aug.case, aug_oov=aug.oov,
                      aug_seed=aug.seed, aug_cache=aug.cache_dir)
    summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0
