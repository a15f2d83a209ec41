"""``python -m minimner predict``: tag tweets with a trained run, with their pictures.

    python -m minimner predict --run RUN --input tweets.txt [--images DIR] [--output OUT]

**Input.** CoNLL (``token<TAB>tag`` lines, ``IMGID:<id>`` lines, a blank line between tweets;
the tags are ignored) or, when the file has no tab, plain text: one whitespace-tokenised tweet
per line, an optional ``IMGID:<id>`` line before it.

**Pictures** (``--model mgcmt`` runs). Each tweet's picture is found from its ``IMGID``:

* ``--images DIR``: the picture file ``DIR/<id>.jpg`` (or ``.jpeg``/``.png``); an ``IMGID`` that
  names a file (``IMGID:photos/me.jpg``) is that file, relative to DIR. Its features are computed
  on the fly with the run's own ResNet (the architecture, crop size and weights the run's
  features were made with, checked by SHA-256; ``--resnet FILE`` if the weights file moved);
  :mod:`minimner.vision.features`, the code of the ``features`` command;
* otherwise the pre-computed features folder (``--features DIR``, default the run's): the
  ``IMGID`` is looked up in every split's sub-folder, so tweets of any split get their picture.

Every tweet's image status is reported on standard error (``FILE:LINE: image ID: used (…)`` or
``missing (no IMGID | no file … | unreadable … | not in the features folder …)``) with a summary;
a missing picture is never replaced: the model reads its learned "no image" input.

**Output streams**: CoNLL is written chunk by chunk, to standard output or to ``OUT.part``,
renamed to ``OUT`` when every tweet is done; an interrupted run leaves the tweets tagged so far in
``OUT.part``. **A bad tweet** (malformed lines, more word pieces than the model's positions) is
reported with its file and line and skipped (``--on-error skip``, the default; the exit code is
then 1), or stops the run (``--on-error stop``, exit 2).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import minimner.train as training
from minimner.cli import CLIError
from minimner.data.batching import encode_sentences
from minimner.data.conll import DataFormatError, Sentence, format_conll, iter_conll, iter_text
from minimner.data.multimodal import ImageGrids, MultimodalSource
from minimner.vision.features import FeatureExtractor, image_file
from minimner.vision.objects import load_objects


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="tag tweets (and their pictures) with a trained run (CoNLL or plain text in, CoNLL out)",
        description="Read FILE as CoNLL (one token<TAB>tag per line, IMGID lines optional) or, when it has "
                    "no tabs, as plain text with one whitespace-tokenised tweet per line (an IMGID:<id> line "
                    "before a tweet names its picture); write CoNLL with the predicted tags to --output "
                    "(default: standard output), chunk by chunk. mgcmt runs read each tweet's picture from "
                    "--images DIR (features computed with the run's ResNet) or from a features folder.")
    p.add_argument("--run", required=True, help="run folder written by `train`")
    p.add_argument("--input", required=True, help="CoNLL or plain text file")
    p.add_argument("--output", default=None,
                   help="where to write CoNLL (default: stdout); written as OUTPUT.part, renamed when done")
    p.add_argument("--unconstrained", action="store_true", help="plain Viterbi instead of constrained decoding")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="mgcmt runs: folder of the tweets' pictures (<IMGID>.jpg); features are computed with "
                        "the run's ResNet")
    p.add_argument("--resnet", default=None, metavar="FILE",
                   help="with --images: the converted ResNet weights of the run's features, when the recorded "
                        "file has moved (its SHA-256 must match)")
    p.add_argument("--features", default=None, metavar="DIR",
                   help="mgcmt runs: pre-computed features folder, IMGIDs looked up in every split (default: "
                        "the one recorded in the run)")
    p.add_argument("--objects", default=None, metavar="FILE",
                   help="mgcmt runs: object-label file (default: the one recorded in the run)")
    p.add_argument("--accept-new-features", action="store_true",
                   help="mgcmt runs: use features extracted with other ResNet weights than the run's (default: "
                        "an error)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="tweets tagged and written per step")
    p.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                   help="a bad tweet: report it (file:line) and skip it, or stop there")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- input
def _read_tweets(path):
    """Sentences and DataFormatErrors of ``path``, in file order (CoNLL if it has a tab, else plain text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if b"\t" in path.read_bytes():
        return iter_conll(path, require_image_id=False)
    return iter_text(path)


def _chunks(items, size: int):
    """Lists of at most ``size`` Sentences; a DataFormatError is yielded alone, between chunks."""
    chunk = []
    for item in items:
        if isinstance(item, DataFormatError):
            if chunk:
                yield chunk
                chunk = []
            yield item
            continue
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _encode(tok, sentences, max_positions: int):
    """``(examples, bad)``: the encodable sentences' examples, and ``(sentence, problem)`` for the others."""
    try:
        encoded = encode_sentences(tok, sentences)
    except ValueError:                              # find the tweet(s) the tokenizer cannot align
        encoded = []
        for s in sentences:
            try:
                encoded += encode_sentences(tok, [s])
            except ValueError as e:
                encoded.append(e)
    good, bad = [], []
    for s, ex in zip(sentences, encoded):
        if isinstance(ex, ValueError):
            bad.append((s, str(ex)))
        elif len(ex.input_ids) > max_positions:
            bad.append((s, f"{len(ex.input_ids)} word pieces, more than the model's {max_positions} positions"))
        else:
            good.append((s, ex))
    return good, bad


# ----------------------------------------------------------------------------- pictures
class _FolderPictures:
    """Pictures from a pre-computed features folder (or none): one source for every chunk."""

    def __init__(self, source):
        self.source = source                        # MultimodalSource, or None (text-only run)

    def for_chunk(self, sentences):
        """``(source, statuses)``: the chunk's image source and ``(used, why)`` per sentence."""
        if self.source is None:
            return None, [None] * len(sentences)
        return self.source, [self.source.image_status(s.image_id) for s in sentences]


class _FilePictures:
    """Pictures from image files, turned into grids with the run's ResNet chunk by chunk."""

    def __init__(self, folder: Path, extractor, objects, slots: int, grid: tuple, channels: int, settings=None):
        self.folder, self.extractor, self.objects, self.slots = folder, extractor, objects, slots
        self.grid, self.channels, self.settings = grid, channels, settings

    def for_chunk(self, sentences):
        files = {s.image_id: image_file(s.image_id, self.folder) for s in sentences if s.image_id is not None}
        ids = list(files)
        grids, why = {}, {}
        for b0 in range(0, len(ids), 4):            # 4 images per ResNet pass, as the features command
            part = ids[b0:b0 + 4]
            got, results = self.extractor.grids([files[i] for i in part])
            for i, g, r in zip(part, got, results):
                if g is not None:
                    grids[i] = g
                elif r.reason == "file not found":
                    why[i] = f"no file {files[i]}"
                else:
                    why[i] = f"unreadable {files[i]}: {r.reason}"
        statuses = [(False, "no IMGID") if s.image_id is None
                    else (True, str(files[s.image_id])) if s.image_id in grids
                    else (False, why[s.image_id]) for s in sentences]
        source = MultimodalSource(None, ImageGrids(grids, self.grid, self.channels, self.settings), self.objects, slots=self.slots)
        return source, statuses


def _pictures(args, info, model):
    """The picture provider the options ask for (see the module docstring)."""
    multimodal = info.get("config", {}).get("model") == "mgcmt"
    if not multimodal:
        if args.images or args.features or args.objects or args.resnet:
            raise CLIError(f"{args.run} is a text-only run: --images, --features, --objects and --resnet are for "
                           "--model mgcmt runs")
        return _FolderPictures(None)
    if args.images is None:
        if args.resnet:
            raise CLIError("--resnet is used with --images")
        return _FolderPictures(training.run_source(info, None, features=args.features, objects=args.objects,
                                           accept_new_features=args.accept_new_features))
    if args.features:
        raise CLIError("give either --images (picture files) or --features (a pre-computed folder), not both")
    folder = Path(args.images)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images: folder not found: {folder}")
    settings = info.get("features_settings")
    if not settings:
        raise CLIError(f"{args.run} was trained without image features (every image missing): its image encoders "
                       "never saw a picture, so --images has nothing to feed them")
    mcfg = info["mgcmt_config"]
    side = int(round(mcfg["regions"] ** 0.5))
    obj_path = args.objects or info["config"].get("objects")
    return _FilePictures(folder, FeatureExtractor.from_settings(settings, weights=args.resnet),
                         load_objects(obj_path) if obj_path else None, mcfg["object_slots"], (side, side),
                         mcfg["image_dim"], settings)


# ----------------------------------------------------------------------------- output
class _Output:
    """CoNLL written as it goes: to stdout, or to ``OUT.part`` renamed to ``OUT`` by :meth:`finish`."""

    def __init__(self, path):
        self.final = Path(path) if path else None
        if self.final is None:
            self.part, self.file = None, sys.stdout
        else:
            if not self.final.parent.is_dir():
                raise FileNotFoundError(f"--output: folder not found: {self.final.parent}")
            self.part = self.final.with_name(self.final.name + ".part")
            self.file = open(self.part, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def finish(self) -> None:
        if self.part is not None:
            self.file.close()
            os.replace(self.part, self.final)

    def leave(self) -> str:
        """Close without renaming (interrupted or stopped); says where the tweets done so far are."""
        if self.part is None:
            return "the tweets tagged so far were written above"
        self.file.close()
        return f"the tweets tagged so far are in {self.part}"


def _status_line(where: str, image_id, status) -> str:
    used, why = status
    return f"{where}: image {image_id}: used ({why})" if used else f"{where}: image {image_id}: missing ({why})"


def _summary(n_done: int, n_bad: int, used: int, missing: dict, multimodal: bool) -> str:
    text = f"predict: tagged {n_done} tweets" + (f", skipped {n_bad} bad ones" if n_bad else "")
    if not multimodal:
        return text + " (text-only run: pictures are not read)"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(missing.items()))
    text += f"; images: {used} used, {sum(missing.values())} missing" + (f" ({kinds})" if kinds else "")
    if n_done and not used:
        text += (". Every image is missing: the model read its learned 'no image' input for every tweet "
                 "(give the pictures with --images DIR, or a features folder with --features DIR)")
    return text


def missing_kind(why: str) -> str:
    """The short kind of a missing-image reason, for the summary."""
    for kind in ("no IMGID", "no file", "unreadable", "not in the features folder", "no image features"):
        if kind in why:
            return kind
    return why


# ----------------------------------------------------------------------------- command
def run(args) -> int:
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, tok, info = training.load_run(args.run)
    text_inputs = training.run_text_collator(info)          # the run's augmentation table and char vocabulary
    pictures = _pictures(args, info, model)
    multimodal = info.get("config", {}).get("model") == "mgcmt"
    max_positions = model.bert.config.max_position_embeddings
    items = _read_tweets(args.input)
    out = _Output(args.output)
    n_done = n_bad = used = 0
    missing: dict[str, int] = {}
    bar = tqdm(desc="predict", unit="tweet", disable=args.no_progress, file=sys.stderr, leave=False)

    def bad_tweet(where: str, problem: str) -> None:
        nonlocal n_bad
        if args.on_error == "stop":
            raise CLIError(f"{where}: {problem} (stopped by --on-error stop; {out.leave()})")
        n_bad += 1
        print(f"{where}: skipped: {problem}", file=sys.stderr)

    try:
        for chunk in _chunks(items, args.batch_size):
            if not isinstance(chunk, list):                      # a DataFormatError: "file:line: problem"
                bad_tweet(f"{chunk.path}:{chunk.line_no}", chunk.problem)
                continue
            chunk = [Sentence(words=s.words, tags=None, image_id=s.image_id, line_no=s.line_no, source=s.source)
                     for s in chunk]
            good, bad = _encode(tok, chunk, max_positions)
            for s, problem in bad:
                bad_tweet(f"{args.input}:{s.line_no}", problem)
            if not good:
                continue
            sents = [s for s, _ in good]
            source, statuses = pictures.for_chunk(sents)
            for s, status in zip(sents, statuses):
                if status is None:
                    continue
                print(_status_line(f"{args.input}:{s.line_no}", s.image_id, status), file=sys.stderr)
                if status[0]:
                    used += 1
                else:
                    missing[missing_kind(status[1])] = missing.get(missing_kind(status[1]), 0) + 1
            examples = [ex for _, ex in good]
            for i, ex in enumerate(examples):
                ex.index = i
            tags = training.predict_sentences(model, examples, batch_size=len(examples),
                                              constrained=not args.unconstrained, progress=False,
                                              collator=text_inputs.with_source(source))
            out.write(format_conll(sents, tags=tags))
            n_done += len(sents)
            bar.update(len(sents))
    except KeyboardInterrupt:
        bar.close()
        print(f"predict: interrupted after {n_done} tweets; {out.leave()}", file=sys.stderr)
        raise
    bar.close()
    if n_done == 0 and n_bad == 0:
        out.leave()
        raise CLIError(f"{args.input}: no tweets to tag")
    out.finish()
    print(_summary(n_done, n_bad, used, missing, multimodal), file=sys.stderr)
    return 1 if n_bad else 0
