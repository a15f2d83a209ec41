"""``python -m minimner explain``: what a trained cross-modal model attends to for one tweet.

    python -m minimner explain --run RUN --tweet "can't stop thinking about Varno" [--image FILE]
                               [--objects person,car] [--word Varno] [--out FIG.png]

Prints the predicted tags and writes one figure (:mod:`minimner.explain`): the chosen
word's text → image attention over the picture's 7×7 grid, its text → object attention,
and every word's fusion gates. ``--image`` is turned into region features with the same
eval transform and ResNet as the run's ``features`` folder (``--resnet`` when the recorded
weights file has moved); without it the tweet has no image. ``--objects`` gives the
detector's COCO labels (there is no detector here); without it, none.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="plot what an mgcmt run attends to (image grid, objects, gates) for one tweet",
        description="Tag one tweet with a trained --model mgcmt run and draw the chosen word's attention over "
                    "the picture's region grid and the objects, with the fusion gates of every word.")
    p.add_argument("--run", required=True, help="run folder written by `train --model mgcmt`")
    p.add_argument("--tweet", required=True, help="the tweet, whitespace-tokenised")
    p.add_argument("--image", default=None, metavar="FILE", help="the tweet's picture (default: no image)")
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
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from minimner.cli import CLIError
    from minimner.explain import SingleImageSource, explain_tweet, image_grid, resnet_weights_for
    from minimner.plots.attention import feature_crop
    from minimner.train import load_run

    model, tok, info = load_run(args.run)
    if info["config"].get("model") != "mgcmt":
        raise CLIError(f"{args.run} is a text-only run; explain needs a --model mgcmt run")
    words = args.tweet.split()
    if not words:
        raise CLIError("--tweet is empty")
    grid = picture = None
    if args.image is not None:
        if not Path(args.image).is_file():
            raise FileNotFoundError(f"--image: file not found: {args.image}")
        settings = info.get("features_settings")
        if not settings:
            raise CLIError(f"{args.run} was trained without image features (every image missing): its image "
                           "encoders never saw a picture, so --image has nothing to explain")
        grid = image_grid(args.image, settings["arch"], resnet_weights_for(info, args.resnet),
                          size=int(settings.get("size", 224)))
        if grid is None:
            print(f"{args.image}: unreadable image, treated as missing (as in training)")
        else:
            picture = feature_crop(args.image, int(settings.get("size", 224)))
    objects = [o.strip() for o in args.objects.split(",") if o.strip()] if args.objects else None
    source = SingleImageSource(grid, objects=objects, slots=model.config.object_slots)
    ex = explain_tweet(model, tok, words, source, constrained=not args.unconstrained)
    word = ex.default_word()
    if args.word is not None:
        if args.word not in ex.words:
            raise CLIError(f"--word {args.word!r} is not a word of the tweet ({' '.join(ex.words)})")
        word = ex.words.index(args.word)
    print(" ".join(f"{w}/{t}" for w, t in zip(ex.words, ex.tags)))
    out = Path(args.out) if args.out else Path(args.run) / "explain.png"
    fig = ex.figure(picture, word)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} (word {ex.words[word]!r})")
    return 0
