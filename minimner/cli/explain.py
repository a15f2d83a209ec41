"""``python -m minimner explain``: what a trained cross-modal model attends to for one tweet.

    python -m minimner explain --run RUN --tweet "can't stop thinking about Varno" [--image FILE]
                               [--objects person,car] [--other-image FILE] [--word Varno] [--out FIG.png]

Prints the predicted tags, then the counterfactuals: the tags the model gives the same tweet
without its picture, without its objects and (``--other-image``) with another picture, so that
what each channel decides can be read off (:func:`minimner.explain.counterfactual_tags`). Writes the figures of
:mod:`minimner.explain`: ``OUT`` (the counterfactual tags under the tweet, the chosen word's
text → image attention over the picture's 7×7 grid, the same row minus the mean row of the
tweet's words (where this word looks more than the others), its text → object attention, every
word's fusion gates),
``OUT_crf.png`` (the main CRF's transitions and this tweet's per-piece marginals with the
decoded path), ``OUT_augment.png`` (the chosen word's semantic-augmentation neighbours, for
runs with augmentation) and ``OUT_training.png`` (the run's training curves). ``--image``
is turned into region features by :class:`minimner.vision.features.FeatureExtractor` with the
eval transform and the ResNet of the run's ``features`` folder (checked by SHA-256; ``--resnet``
when the recorded weights file has moved); the picture's status is printed (used, or missing
and why: an unreadable picture is treated as missing, as in training). Without ``--image`` the
tweet has no image. ``--objects`` gives the detector's COCO labels (there is no detector here);
without it, none.
"""
from __future__ import annotations

from pathlib import Path

from minimner.cli import CLIError
from minimner.data.multimodal import standardisation
from minimner.explain import SingleImageSource, counterfactual_tags, explain_tweet
from minimner.plots.attention import feature_crop
from minimner.plots.augment import plot_word_neighbours
from minimner.plots.training import plot_training_curves
from minimner.train import load_run, run_text_collator
from minimner.vision.features import FeatureExtractor


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="plot what an mgcmt run attends to (image grid, objects, gates) for one tweet",
        description="Tag one tweet with a trained --model mgcmt run and draw the chosen word's attention over "
                    "the picture's region grid and the objects, with the fusion gates of every word.")
    p.add_argument("--run", required=True, help="run folder written by `train --model mgcmt`")
    p.add_argument("--tweet", required=True, help="the tweet, whitespace-tokenised")
    p.add_argument("--image", default=None, metavar="FILE", help="the tweet's picture (default: no image)")
    p.add_argument("--other-image", default=None, metavar="FILE",
                   help="another picture: also print (and draw) the tags the model gives the tweet with it")
    p.add_argument("--objects", default=None, metavar="LABELS",
                   help="comma-separated COCO labels the detector found, e.g. person,car (default: none)")
    p.add_argument("--resnet", default=None, metavar="FILE",
                   help="converted ResNet weights of the run's features (default: the path the features "
                        "command recorded)")
    p.add_argument("--word", default=None, help="the word to explain (default: the first predicted entity word)")
    p.add_argument("--out", default=None, metavar="PNG", help="figure to write (default: RUN/explain.png)")
    p.add_argument("--unconstrained", action="store_true", help="plain Viterbi instead of constrained decoding")
    p.set_defaults(func=run)


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")

    model, tok, info = load_run(args.run)
    if info["config"].get("model") != "mgcmt":
        raise CLIError(f"{args.run} is a text-only run; explain needs a --model mgcmt run")
    words = args.tweet.split()
    if not words:
        raise CLIError("--tweet is empty")
    grid, picture = _picture(args.image, "--image", info, args)
    if args.image is None:
        print("image: none (no --image given): the model reads its learned 'no image' input")
    objects = [o.strip() for o in args.objects.split(",") if o.strip()] if args.objects else None
    source = SingleImageSource(grid, objects=objects, slots=model.config.object_slots)
    inputs = run_text_collator(info)                                   # the run's augmentation table, char vocabulary
    ex = explain_tweet(model, tok, words, source, constrained=not args.unconstrained, collator=inputs)
    other = _picture(args.other_image, "--other-image", info, args)[0] if args.other_image else None
    tags = counterfactual_tags(model, tok, words, grid, objects, other, inputs, not args.unconstrained)
    word = ex.default_word()
    if args.word is not None:
        if args.word not in ex.words:
            raise CLIError(f"--word {args.word!r} is not a word of the tweet ({' '.join(ex.words)})")
        word = ex.words.index(args.word)
    print(" ".join(f"{w}/{t}" for w, t in zip(ex.words, ex.tags)))
    notes = {"without the picture": " (the learned 'no image' input)",
             "with another picture": f" ({args.other_image})"}
    for label, t in tags.items():
        if label != "MGCMT":
            print(f"{label}{notes.get(label, '')}: " + " ".join(f"{w}/{x}" for w, x in zip(ex.words, t)))
    out = Path(args.out) if args.out else Path(args.run) / "explain.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    ex.figure(picture, word, counterfactuals=tags).savefig(out, dpi=110)
    print(f"wrote {out} (word {ex.words[word]!r})")
    side = out.with_name(f"{out.stem}_crf.png")
    ex.crf_figure(model.crf, constrained=not args.unconstrained).savefig(side, dpi=100)
    print(f"wrote {side} (CRF transitions, per-piece marginals, decoded path)")
    if inputs.aug_table is not None:
        side = out.with_name(f"{out.stem}_augment.png")
        _augment_figure(inputs.aug_table, ex.words[word]).savefig(side, dpi=100)
        print(f"wrote {side} (semantic-augmentation neighbours of {ex.words[word]!r})")
    if (Path(args.run) / "metrics.jsonl").is_file():
        from matplotlib.figure import Figure

        side = out.with_name(f"{out.stem}_training.png")
        fig = Figure(figsize=(10, 4), layout="constrained")
        plot_training_curves(Path(args.run), ax=tuple(fig.subplots(1, 2)))
        fig.savefig(side, dpi=100)
        print(f"wrote {side} (training curves)")
    return 0


def _picture(path, flag: str, info: dict, args):
    """``(grid (R, C_img) standardised as the run's features, or None; the crop to draw, or None)`` of a picture."""
    if path is None:
        return None, None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: file not found: {path}")
    settings = info.get("features_settings")
    if not settings:
        raise CLIError(f"{args.run} was trained without image features (every image missing): its image "
                       f"encoders never saw a picture, so {flag} has nothing to explain")
    extractor = FeatureExtractor.from_settings(settings, weights=args.resnet)
    grid, result = extractor.grid(path)                                    # (R, C_img) or None
    if grid is None:
        print(f"{flag} {path}: missing (unreadable: {result.reason}); read as no picture, as in training")
        return None, None
    mean, std = standardisation(settings, grid.shape[1], f"{args.run}/run.json")
    grid = grid if mean is None else (grid - mean) / std                   # as the run's features were read
    print(f"{flag} {path}: used ({extractor.arch} features, {grid.shape[0]} regions)")
    return grid, feature_crop(path, extractor.size)


def _augment_figure(table, word: str):
    """The word's neighbours in the run's augmentation table (or a note that it has none there)."""
    from matplotlib.figure import Figure

    try:
        entry = table.describe(word)
    except KeyError:                      # a word the run's data never had: it reads the out-of-vocabulary vector
        entry = {"neighbours": []}
    fig = Figure(figsize=(5.5, 0.8 + 0.45 * max(1, len(entry["neighbours"]))), layout="constrained")
    plot_word_neighbours(word, entry, ax=fig.subplots())
    return fig
