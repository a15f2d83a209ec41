"""``python -m minimner visualise``: pictures of what a trained tagger does with one sentence.

Two figures for a sentence (plain words, or ``--index`` of a CoNLL file):

* ``crf``: the learned transition matrix and the CRF marginals P(y_t = k) of every
  word piece, with the (constrained) Viterbi path marked
  (:func:`minimner.plots.crf.plot_crf`);
* ``attention``: BERT's real attention probabilities (B, H, T, T) of one layer,
  averaged over heads or for one head (docs/differences.md §5: real maps, not placeholders).

Both work for text-only and ``--model mgcmt`` runs (the latter reads the sentence's image
from the run's features, sub-folder ``--split``); ``explain`` draws the cross-modal maps.
"""
from __future__ import annotations

from minimner import backend
from minimner.constraints import paper_constraints
from minimner.data.batching import encode_sentences
from minimner.data.conll import Sentence, read_conll
from minimner.data.labels import MAIN_TAGS
from minimner.models.text_crf import piece_word_mask
from minimner.plots.crf import plot_crf
from minimner.train import load_run, run_collator


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "visualise", help="plot CRF marginals or BERT attention of a trained run for one sentence",
        description="Write a PNG of the CRF transitions and marginals (--what crf) or of one BERT layer's "
                    "attention probabilities (--what attention) for one sentence.")
    p.add_argument("--run", required=True, help="run folder written by `train`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="a whitespace-tokenised sentence")
    src.add_argument("--input", help="a CoNLL file; --index picks the sentence")
    p.add_argument("--index", type=int, default=0, help="sentence index in --input (default 0)")
    p.add_argument("--what", choices=("crf", "attention"), default="crf",
                   help="CRF marginals of the tweet or BERT's attention")
    p.add_argument("--layer", type=int, default=-1, help="BERT layer for --what attention (default: last)")
    p.add_argument("--head", type=int, default=None, help="one head instead of the mean over heads")
    p.add_argument("--split", default="test",
                   help="mgcmt runs: the features sub-folder of --input's images (default: test)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np


    model, tok, info = load_run(args.run)
    if args.text is not None:
        words = args.text.split()
        if not words:
            raise ValueError("--text is empty")
        sent = Sentence(words=words)
    else:
        sents = read_conll(args.input, require_image_id=False)
        if not 0 <= args.index < len(sents):
            raise ValueError(f"{args.input}: --index {args.index} is out of range (0..{len(sents) - 1})")
        s = sents[args.index]
        sent = Sentence(words=s.words, image_id=s.image_id)
    [example] = encode_sentences(tok, [sent])
    batch = run_collator(info, args.split)([example])                  # every input the model reads
    em = model.batch_emissions(batch)                                   # (1, T, K)
    pieces = tok.convert_ids_to_tokens(backend.asnumpy(batch.input_ids)[0].tolist())
    if args.what == "crf":
        fig = plot_crf(model.crf, em, batch.attention_mask, tag_names=list(MAIN_TAGS), tokens=pieces,
                       allowed=paper_constraints(piece_word_mask(batch)))
    else:
        layers = model.bert.attentions                                  # list of (1, H, T, T)
        if not -len(layers) <= args.layer < len(layers):
            raise ValueError(f"--layer {args.layer} is out of range for a {len(layers)}-layer BERT")
        probs = backend.asnumpy(layers[args.layer])[0]                  # (H, T, T)
        if args.head is not None and not 0 <= args.head < probs.shape[0]:
            raise ValueError(f"--head {args.head} is out of range (0..{probs.shape[0] - 1})")
        m = probs.mean(axis=0) if args.head is None else probs[args.head]   # (T, T) queries x keys
        fig, ax = plt.subplots(figsize=(0.35 * len(pieces) + 2, 0.35 * len(pieces) + 1.5))
        im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=float(np.max(m)))
        ax.set_xticks(range(len(pieces)), pieces, rotation=90)
        ax.set_yticks(range(len(pieces)), pieces)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        which = "mean over heads" if args.head is None else f"head {args.head}"
        ax.set_title(f"BERT layer {args.layer % len(layers)} attention ({which})")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return 0
