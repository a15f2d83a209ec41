"""``python -m minimner train``: train a tagger, select on dev, save an atomic run folder.

``--model mgcmt`` trains the paper's cross-modal model (its flags, ``--features`` and
``--objects``; see :mod:`minimner.train`) instead of the text-only BERT-CRF.

``--aug {none,add,gate,embed}`` (default ``none``; ``add`` for mgcmt) adds the semantic augmentation
of docs/augmentation.md (``--lexicon FILE``, ``--aug-k`` …, see
:func:`minimner.lexicon.augment.add_augment_arguments`); the table used is saved in
the run folder, so ``evaluate`` and ``predict`` need no flags for it.
"""
from __future__ import annotations

from minimner.cli import CLIError
from minimner.lexicon.augment import add_augment_arguments, augment_config_from_args
from minimner.models.fusion import FUSION_METHODS
import minimner.train as training


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a tagger on CoNLL data (selects on dev micro-F1)",
        description="Train the text-only BERT-CRF tagger or (--model mgcmt) the cross-modal MGCMT, optionally with "
                    "semantic augmentation "
                    "(--aug add|gate|embed: word vectors averaged over each word's --aug-k nearest "
                    "neighbours in --lexicon, fused after BERT or inside its embeddings; docs/augmentation.md). "
                    "The checkpoint with the best dev micro-F1 is kept in OUT/best.npz; OUT/last.npz lets an "
                    "interrupted run --resume; the augmentation table used is saved as OUT/augment.npz. "
                    "The test split's labels are never read here (its words only enter the augmentation "
                    "table): score it once with `evaluate`.")
    p.add_argument("--data", required=True, help="folder with train.txt and valid.txt (CoNLL with IMGID)")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--model", default="text-crf", choices=("text-crf", "mgcmt"),
                   help="text-crf: the BERT-CRF baseline (default); mgcmt: the paper's cross-modal model")
    p.add_argument("--bert", default=None,
                   help="Hugging Face BERT folder or converted .npz (default: the installed MiniLM-L6-H384)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training tweets")
    p.add_argument("--batch-size", type=int, default=24, help="tweets per optimiser step (the paper's 24)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW peak learning rate (of BERT and, without the group options below, of every parameter)")
    p.add_argument("--lr-bert", type=float, default=None, metavar="LR",
                   help="peak rate of BERT's parameters (default: --lr)")
    p.add_argument("--lr-head", type=float, default=None, metavar="LR",
                   help="peak rate of the new layers after BERT: classifier, cross-modal encoders, gates, object "
                        "embeddings (default: --lr)")
    p.add_argument("--lr-crf", type=float, default=None, metavar="LR",
                   help="peak rate of the CRF transition scores (default: --lr); all groups share the schedule")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decoupled weight decay")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps used for linear warmup")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="global-norm clipping (0 disables)")
    p.add_argument("--seed", type=int, default=1, help="seed of the initialisation, dropout and shuffling")
    p.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--unconstrained", action="store_true",
                   help="plain Viterbi for dev decoding (default: constrained, docs/differences.md §3)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N train/dev sentences")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimiser steps (0 = no limit)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    add_augment_arguments(p, default_mode="none", default_help="add for --model mgcmt, as the paper; none for text-crf")
    p.set_defaults(aug=None)   # resolved per model in run(): none for text-crf, add (the paper's) for mgcmt

    g = p.add_argument_group("cross-modal model (--model mgcmt; defaults: the paper's flags, see the README)")
    g.add_argument("--features", default=None, metavar="DIR",
                   help="`python -m minimner features` output folder (default: every image marked missing)")
    g.add_argument("--objects", default=None, metavar="FILE",
                   help="object-label file, JSON {image: [COCO labels]} or the original's .pt (default: none)")
    g.add_argument("--accept-new-features", action="store_true",
                   help="with --resume: use --features although they were extracted with other ResNet weights "
                        "than the run recorded (default: an error)")
    g.add_argument("--fusion", default=None, choices=FUSION_METHODS,
                   help="fusion of the four cross-modal paths (default gate_concat; original ffusion_method)")
    g.add_argument("--merge", default=None, choices=("main", "bert"),
                   help="concatenate the fused vector with the main text branch (main, default) or with BERT's "
                        "augmented output (bert) (original main_cat 0 / 1)")
    g.add_argument("--aux-mix", action="store_const", const=True, default=None,
                   help="mix ½ of the aux span emissions into the main ones (original alpha_seg = 0)")
    g.add_argument("--no-aux-loss", action="store_const", const=True, default=None,
                   help="train without the auxiliary span CRF (original seg_task = 1)")
    g.add_argument("--char-cnn", action="store_const", const=True, default=None,
                   help="add the char-CNN inside BERT's embeddings (original use_char_cnn = 0)")
    p.set_defaults(func=run)


def mgcmt_flags(args) -> dict:
    """The MGCMT plain flags given on the command line (only those set)."""
    flags = {"fusion": args.fusion, "merge": args.merge, "aux_mix": args.aux_mix,
             "aux_loss": None if args.no_aux_loss is None else False, "char_cnn": args.char_cnn}
    return {k: v for k, v in flags.items() if v is not None}


def run(args) -> int:
    import json



    mflags = mgcmt_flags(args)
    if args.model != "mgcmt" and (mflags or args.features or args.objects):
        raise CLIError("--features, --objects, --fusion, --merge, --aux-mix, --no-aux-loss and --char-cnn are "
                       "options of --model mgcmt")
    if args.aug is None:
        args.aug = "add" if args.model == "mgcmt" else "none"
    aug = augment_config_from_args(args)
    cfg = training.TrainConfig(
        data_dir=args.data, out=args.out, model=args.model, bert=args.bert, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_bert=args.lr_bert, lr_head=args.lr_head,
        lr_crf=args.lr_crf, weight_decay=args.weight_decay, warmup=args.warmup,
        max_grad_norm=args.max_grad_norm, seed=args.seed, patience=args.patience,
        constrained=not args.unconstrained, limit=args.limit, max_steps=args.max_steps,
        aug=aug.mode, lexicon=aug.lexicon, aug_k=aug.k, aug_case=aug.case, aug_oov=aug.oov,
        aug_seed=aug.seed, aug_cache=aug.cache_dir, features=args.features, objects=args.objects, mgcmt=mflags)
    summary = training.train(cfg, resume=args.resume, progress=not args.no_progress,
                             accept_new_features=args.accept_new_features)
    print(json.dumps(summary))
    hint = zero_f1_hint(summary)
    if hint:
        import sys

        print(hint, file=sys.stderr)
    return 0


def zero_f1_hint(summary: dict) -> str | None:
    """What a dev F1 that never left 0 usually means, or None when the run found entities on dev."""
    if summary.get("epochs_run", 0) < 1 or summary.get("best_dev_f1", -1.0) != 0.0:
        return None
    return (f"note: dev F1 stayed 0.0 over {summary['epochs_run']} epoch(s), {summary['steps']} optimiser step(s). "
            "This is expected for so short a run: almost every word is O, so the CRF first learns to predict "
            "all O (which scores 0) and needs many more steps before it marks entities. Train longer (more "
            "--epochs, a larger --limit or none) before reading anything into this score.")
