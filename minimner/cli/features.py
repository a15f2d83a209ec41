"""``python -m minimner features``: pre-compute the ResNet region grid of every tweet image.

    python -m minimner features --images DIR --ids DATA_DIR --arch resnet152 --weights FILE --out OUT

Dimension legend: R regions (49 = 7×7 at 224×224), C_img channels (2048 for ResNet-50+).

* Image ids come from the ``IMGID:`` lines of ``train.txt`` / ``valid.txt`` /
  ``test.txt`` in DATA_DIR (those present); the image is ``DIR/<id>.jpg``.
* Each image is preprocessed by :mod:`minimner.vision.images` (train split:
  seeded random crop + flip; valid/test: resize 256 + centre crop 224; docs/differences.md §4),
  batched through an eval-mode, BN-folded ResNet
  (:class:`minimner.vision.features.FeatureExtractor`, the same code ``predict --images``
  and ``explain --image`` run on the fly), and its grid is stored as
  ``OUT/<split>/<id>.npy`` with shape (R, C_img) (region r = 7·row + col) in float32
  or float16.
* **Resumable**: each ``.npy`` is written to a temporary file and renamed into
  place, so a file that exists is complete. A rerun skips finished images; a crash
  or Ctrl-C loses at most the batch in flight. ``OUT/features.json`` records the
  settings, and a rerun with different settings is refused rather than mixing them.
* Missing, empty, truncated or undecodable images are not replaced by anything:
  they get no ``.npy`` and are listed with their reason in ``OUT/summary.json``
  and ``OUT/features.log`` (the model masks them).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minimner.atomic import remove_stale_temporaries, write_json_atomic, write_npy_atomic
from minimner.cli import CLIError
from minimner.data.conll import read_image_ids as read_image_ids_of_conll
from minimner.files import sha256_file
from minimner.finite import NonFiniteError, first_nonfinite
from minimner.models.resnet import arch_depth
from minimner.vision.features import FeatureExtractor, image_file, load_resnet

SPLITS = ("train", "valid", "test")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features", help="pre-compute ResNet region features (R, C) for every tweet image",
        description="Run an eval-mode ResNet over the images named by the IMGID lines of DATA_DIR's "
                    "train/valid/test.txt and store one (R, C) array per image under OUT/<split>/<id>.npy "
                    "(resumable; missing images are reported, never replaced).")
    p.add_argument("--images", required=True, metavar="DIR", help="folder holding <image id>.jpg files")
    p.add_argument("--ids", required=True, metavar="DATA_DIR", help="folder with train.txt / valid.txt / test.txt")
    p.add_argument("--arch", default="resnet152", help="resnet18/34/50/101/152 (default resnet152)")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="converted .npz (python -m minimner convert resnet), or a torchvision .pth / .safetensors")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    # Small batches keep each convolution's im2col matrix in cache: measured 1.9x faster per image
    # than 16 for ResNet-18 and 1.4x for ResNet-152 on this 2-core CPU.
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="storage dtype of the features (float16 halves the disk use; default float32)")
    p.add_argument("--size", type=int, default=224, help="crop size S; the grid is ceil(S/32)² regions (default 224)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train split's random crops and flips")
    p.add_argument("--train-crop", choices=("random", "centre"), default="random",
                   help="train split: seeded random crop + flip (default) or the eval centre crop")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=None, help="only these splits")
    p.add_argument("--limit", type=int, default=None, help="at most this many images per split (for a quick try)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- inputs
def read_image_ids(path) -> list[str]:
    """Image ids of a CoNLL file's ``IMGID:<id>`` lines, in order, each once.

    An id that is not a plain name (a path separator, ``..``, an absolute path) or a
    file that is not UTF-8 is refused naming the file and line
    (:func:`minimner.data.conll.read_image_ids`), so no image is read from outside
    ``--images`` and no ``.npy`` is written outside ``--out``.
    """
    return read_image_ids_of_conll(path)


def _read_settings(path: Path) -> dict:
    """An existing ``features.json``, or a ValueError naming the file and the JSON problem."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid UTF-8 JSON ({e}); delete it or use a new --out folder") from None
    if not isinstance(old, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(old).__name__}")
    return old


def _check_grids(image_ids, grids, paths: dict, weights) -> None:
    """Refuse to store a grid holding NaN/inf (finite weights and pixels should never give one)."""
    bad = first_nonfinite((i, g) for i, g in zip(image_ids, grids) if g is not None)   # None: a missing image
    if bad is not None:
        n = bad[1]
        raise NonFiniteError(f"{paths[bad[0]]}: the ResNet ({weights}) gave {n} NaN/inf feature "
                             f"value{'s' if n != 1 else ''} for this image; nothing was written for it")


def _settings(args, depth, splits) -> dict:
    train_crop = "random crop + flip (seeded)" if args.train_crop == "random" else "resize + centre crop"
    return OrderedDict(
        format_version=1, arch=f"resnet{depth}", weights=Path(args.weights).name,
        weights_sha256=sha256_file(args.weights), weights_path=str(Path(args.weights).resolve()), dtype=args.dtype,
        size=args.size, seed=args.seed,
        transforms={s: (train_crop if s == "train" else "resize + centre crop") for s in splits},
        layout="OUT/<split>/<image id>.npy, shape (R, C), region r = w·row + col",
        bn="eval mode (running statistics), folded into the convolutions")


def run(args) -> int:
    summary = _extract(args)
    for split, info in summary["splits"].items():
        print(f"{split}: {info['done']}/{info['images']} images have features "
              f"({info['written']} new), {len(info['missing'])} missing")
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


def extract_features(images, ids, weights, out, arch: str = "resnet152", batch_size: int = 4,
                     dtype: str = "float32", size: int = 224, seed: int = 0, train_crop: str = "random",
                     splits=None, limit: int | None = None, progress: bool = True) -> dict:
    """The ``features`` command as a library call (the demo uses it); the options are the command's.

    Returns the summary the command writes to ``OUT/summary.json`` (per split: images, written,
    already done, missing with the reason, upscaled).
    """
    return _extract(argparse.Namespace(images=str(images), ids=str(ids), weights=str(weights), out=str(out),
                                       arch=arch, batch_size=batch_size, dtype=dtype, size=size, seed=seed,
                                       train_crop=train_crop, splits=splits, limit=limit, no_progress=not progress))


def _extract(args) -> OrderedDict:
    """Extract the features the options ask for; returns the summary (also written to OUT/summary.json)."""
    images_dir, data_dir, out = Path(args.images), Path(args.ids), Path(args.out)
    depth, splits = _check_arguments(args, images_dir, data_dir)
    ids = {s: read_image_ids(data_dir / f"{s}.txt")[:args.limit] for s in splits}
    settings_path = _write_settings(out, _settings(args, depth, splits), splits)
    extractor = FeatureExtractor(load_resnet(args.weights, f"resnet{depth}"), size=args.size, arch=f"resnet{depth}")
    log, handler, old_level = _open_log(out)
    summary = OrderedDict(settings=settings_path.name, splits=OrderedDict())
    start = time.time()
    try:
        log.info("features: resnet%d, %s, splits %s", depth, args.weights, splits)
        for split in splits:
            info = summary["splits"][split] = _extract_split(args, extractor, split, ids[split], images_dir, out)
            log.info("features %s: %d images, %d written now, %d done before, %d missing", split, info["images"],
                     info["written"], info["already_done"], len(info["missing"]))
    finally:
        summary["seconds"] = round(time.time() - start, 1)
        summary["complete"] = all("done" in summary["splits"].get(s, {}) for s in splits)
        write_json_atomic(out / "summary.json", summary)
        log.removeHandler(handler)
        log.setLevel(old_level)
        handler.close()
    return summary


def _check_arguments(args, images_dir: Path, data_dir: Path) -> tuple[int, list[str]]:
    """The ResNet depth and the splits present in DATA_DIR; errors name the flag and the path."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"--images: folder not found: {images_dir}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--ids: folder not found: {data_dir}")
    if not Path(args.weights).is_file():
        raise FileNotFoundError(f"--weights: file not found: {args.weights}")
    if args.batch_size < 1 or args.size < 32:
        raise CLIError("--batch-size must be ≥ 1 and --size ≥ 32")
    depth = arch_depth(args.arch)
    wanted = args.splits or SPLITS
    splits = [s for s in wanted if (data_dir / f"{s}.txt").is_file()]
    if not splits:
        raise FileNotFoundError(f"--ids: none of {', '.join(s + '.txt' for s in wanted)} found in {data_dir}")
    return depth, splits


def _write_settings(out: Path, settings: dict, splits) -> Path:
    """Create ``out``, clean stale temporaries, refuse other settings, write ``features.json``."""
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "features.json"
    for folder in [out] + [out / s for s in splits]:
        remove_stale_temporaries(folder)                 # left by a killed earlier run
    if settings_path.exists():
        old = _read_settings(settings_path)
        # The weights' location may change between runs (their SHA-256 is what must match).
        diff = [k for k in settings if k not in ("transforms", "weights_path") and old.get(k) != settings[k]]
        diff += [f"transforms[{s}]" for s in splits if old.get("transforms", {}).get(s, settings["transforms"][s])
                 != settings["transforms"][s]]
        if diff:
            raise CLIError(f"{out} holds features made with other settings ({', '.join(diff)}); "
                           "use a new --out folder")
        settings["transforms"] = {**old.get("transforms", {}), **settings["transforms"]}
    write_json_atomic(settings_path, settings)
    return settings_path


def _open_log(out: Path):
    """Log ``minimner.vision`` at INFO to ``out/features.log``; returns (logger, handler, previous level)."""
    log = logging.getLogger("minimner.vision")
    handler = logging.FileHandler(out / "features.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    return log, handler, old_level


def _extract_split(args, extractor, split: str, split_ids, images_dir: Path, out: Path) -> OrderedDict:
    """Write ``out/<split>/<id>.npy`` for every image not done yet; returns the split's summary."""
    dtype = np.dtype(args.dtype)
    folder = out / split
    folder.mkdir(exist_ok=True)
    todo = [i for i in split_ids if not (folder / f"{i}.npy").exists()]
    info = OrderedDict(images=len(split_ids), already_done=len(split_ids) - len(todo), written=0,
                       missing=OrderedDict(), upscaled=0)
    train = split == "train" and args.train_crop == "random"
    bar = tqdm(total=len(todo), desc=f"features {split}", unit="img", disable=args.no_progress)
    for b0 in range(0, len(todo), args.batch_size):
        chunk = todo[b0:b0 + args.batch_size]
        paths = [image_file(i, images_dir) for i in chunk]
        grids, results = extractor.grids(paths, image_ids=chunk, train=train, seed=args.seed)
        _check_grids(chunk, grids, paths=dict(zip(chunk, paths)), weights=args.weights)
        for i, g, r in zip(chunk, grids, results):                        # g: (R, C_img) or None
            if r.missing:
                info["missing"][i] = r.reason
            info["upscaled"] += int(r.upscaled)
            if g is not None:
                write_npy_atomic(folder / f"{i}.npy", np.ascontiguousarray(g, dtype=dtype))
                info["written"] += 1
        bar.update(len(chunk))
    bar.close()
    info["done"] = info["already_done"] + info["written"]
    return info
