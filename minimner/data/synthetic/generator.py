"""Writing a synthetic set: settings, the files in the real on-disk layout, meta.json, reuse of an identical set."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from minimner.atomic import atomic_write, write_json_atomic
from minimner.data.conll import Sentence, write_conll
from minimner.data.synthetic.scenes import CROP, GRID, SCENES, TYPES, crop_frame, noise_bank, render
from minimner.data.synthetic.text import tweet
from minimner.vision.objects import class_id

__all__ = ["generate", "DEFAULT_SIZES", "VERSION", "SPLITS"]

#: Format version of the generated set (bump when the generator's output changes).
VERSION = 3

#: Tweets per split of the default set, sized for a CPU demo that trains a text-only and a multimodal
#: model: ~950 images, generated in ~3 s; random-init ResNet-18 features through the real pipeline take
#: ~0.07 s per image on one core (~65 s), and a text-CRF (MiniLM) epoch ~4.5 s per 100 train tweets.
DEFAULT_SIZES = {"train": 600, "valid": 100, "test": 300}

SPLITS = ("train", "valid", "test")


# ------------------------------------------------------------------------------------------- API
def _check_prob(name, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0 or p != p:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _settings(seed, sizes, p_misleading, p_no_objects, p_no_image, p_ambiguous, p_typed, image_size,
              jpeg_quality) -> dict:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if set(sizes) != set(SPLITS):
        raise ValueError(f"sizes must give the splits {list(SPLITS)}, got {sorted(sizes)}")
    for k, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"sizes[{k!r}] must be a non-negative integer, got {n!r}")
    probs = {k: _check_prob(k, v) for k, v in (("p_misleading", p_misleading), ("p_no_objects", p_no_objects),
                                                ("p_no_image", p_no_image), ("p_ambiguous", p_ambiguous),
                                                ("p_typed", p_typed))}
    if probs["p_ambiguous"] + probs["p_typed"] > 1.0 + 1e-12:
        raise ValueError(f"p_ambiguous + p_typed must be at most 1 (the rest are O-only tweets), got "
                         f"{p_ambiguous} + {p_typed}")
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
        raise ValueError(f"image_size must be (width, height) in whole pixels, got {image_size!r}")
    w, h = int(size[0]), int(size[1])
    if min(w, h) < CROP or max(w, h) > 4 * min(w, h):
        raise ValueError(f"image_size must be (width, height) with both sides >= {CROP} and an aspect ratio "
                         f"of at most 4, got {tuple(image_size)!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be an integer in 1..95, got {jpeg_quality!r}")
    return {"version": VERSION, "seed": int(seed), "sizes": {k: int(sizes[k]) for k in SPLITS}, **probs,
            "image_size": [w, h], "jpeg_quality": jpeg_quality}


def _summarise(meta_images: dict, splits: dict, settings: dict) -> dict:
    out = {"version": VERSION, "seed": settings["seed"], "splits": {}}
    for split, stats in splits.items():
        out["splits"][split] = dict(stats)
    ims = list(meta_images.values())
    with_image = [m for m in ims if m["image"]]
    out["tweets"] = len(ims)
    out["images"] = len(with_image)
    out["no_image"] = len(ims) - len(with_image)
    out["no_objects"] = sum(1 for m in with_image if not m["objects"])
    out["detector_miss"] = sum(1 for m in with_image if m["detector_miss"])
    amb = [m for m in ims if m["kind"] == "ambiguous"]
    out["ambiguous"] = len(amb)
    out["misleading"] = sum(1 for m in amb if m["misleading"])
    out["scenes"] = {s: sum(1 for m in with_image if m["scene"] == s) for s in SCENES}
    return out


def _write_jpeg(path: Path, im: Image.Image, quality: int) -> None:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data), "wb", mkdir=False)


def _existing(out: Path, settings: dict):
    """The meta of a complete identical set in ``out``, None when ``out`` is free; raises when it holds other data."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output folder")
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        if any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty and holds no synthetic data set (no meta.json); refusing "
                                  "to overwrite it: choose another folder or empty it")
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        old = meta["settings"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise FileExistsError(f"{meta_path} is not the meta file of a synthetic set ({e}); refusing to overwrite "
                              f"{out}") from None
    if old != settings:
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        raise FileExistsError(f"{out} already holds a synthetic set with other settings (existing, requested): "
                              f"{diff}; choose another folder or delete it")
    if not meta.get("complete"):
        return None                                       # our own interrupted run: redo it (same bytes)
    files = [out / f"{s}.txt" for s in SPLITS] + [out / "objects.json"]
    files += [out / "images" / f"{i}.jpg" for i, m in meta["images"].items() if m["image"]]
    if not all(f.is_file() for f in files):
        return None                                       # files removed since: regenerate them
    return meta


def _count(stats: dict, tags: list[str], plan: dict) -> None:
    """Add one tweet to its split's statistics."""
    stats["tweets"] += 1
    begins = [k for k, t in enumerate(tags) if t.startswith("B-")]
    for k in begins:
        stats["entities"][tags[k][2:]] += 1
        stats["multiword"] += int(k + 1 < len(tags) and tags[k + 1].startswith("I-"))
    stats["o_only"] += int(not begins)
    stats["image_decided"] += len(plan["image_spans"])


def _write_split(out: Path, settings: dict, si: int, split: str, noise, images: dict, objects: dict) -> dict:
    """Write one split's tweets (``OUT/<split>.txt``) and pictures; fills ``images`` / ``objects``; its statistics."""
    width, height = settings["image_size"]
    text_rng = np.random.default_rng([settings["seed"], si, 0])
    sentences = []
    stats = {"tweets": 0, "entities": {t: 0 for t in TYPES}, "multiword": 0, "o_only": 0, "image_decided": 0}
    for i in range(settings["sizes"][split]):
        words, tags, plan = tweet(text_rng, settings["p_ambiguous"], settings["p_typed"], settings["p_misleading"])
        has_image = not text_rng.random() < settings["p_no_image"]
        miss = bool(text_rng.random() < settings["p_no_objects"])
        image_id = f"{split}_{i:05d}"
        sentences.append(Sentence(words=words, tags=tags, image_id=image_id))
        _count(stats, tags, plan)
        entry = {"split": split, "kind": plan["kind"], "gold": plan["gold"], "image_spans": plan["image_spans"],
                 "image": has_image, "scene": None, "variant": None, "misleading": plan["misleading"], "bbox": None,
                 "cells": [], "objects": [], "detector_miss": False, "type_hint": False}
        if has_image:
            image_rng = np.random.default_rng([settings["seed"], si, i + 1])
            im, variant, box, cells, found, hint = render(plan["scene"], image_rng, width, height, noise)
            _write_jpeg(out / "images" / f"{image_id}.jpg", im, settings["jpeg_quality"])
            found = [] if miss else found
            for c in found:
                class_id(c)                               # a COCO-80 name, or fail loudly here
            objects[f"{image_id}.jpg"] = found
            entry.update(scene=plan["scene"], variant=variant, bbox=box, cells=cells, objects=found,
                         detector_miss=miss, type_hint=hint and not miss)
        images[image_id] = entry
    write_conll(out / f"{split}.txt", sentences)
    return stats


def generate(out_dir, seed: int = 0, sizes: dict | None = None, p_misleading: float = 0.1,
             p_no_objects: float = 0.15, p_no_image: float = 0.05, p_ambiguous: float = 0.7,
             p_typed: float = 0.2, image_size=(320, 256), jpeg_quality: int = 90) -> dict:
    """Write a synthetic multimodal tweet set whose images decide the ambiguous entity types.

    See the module docstring for the design. Files (all written atomically):
    ``{train,valid,test}.txt``, ``images/<id>.jpg``, ``objects.json``, ``meta.json``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder; created when missing. It must be empty, absent, or hold a set
        generated with the same settings (then nothing is rewritten).
    seed : int
        Seed of every random draw (same seed and settings -> byte-identical files).
    sizes : dict, optional
        Tweets per split, ``{"train": n, "valid": n, "test": n}``; default :data:`DEFAULT_SIZES`.
    p_misleading : float
        Probability that an ambiguous tweet's picture shows another type than the gold one.
    p_no_objects : float
        Probability that the simulated detector reports nothing for a picture.
    p_no_image : float
        Probability that a tweet has an ``IMGID`` line but no image file.
    p_ambiguous, p_typed : float
        Shares of ambiguous (type decided by the picture) and text-decidable tweets;
        the remaining ``1 − p_ambiguous − p_typed`` are O-only.
    image_size : (int, int)
        (width, height) of the saved JPEGs; both at least 224, aspect at most 4.
    jpeg_quality : int
        Pillow JPEG quality, 1..95.

    Returns
    -------
    dict
        Summary: ``version``, ``seed``, ``out_dir``, ``reused`` (True when an identical
        set was already there), ``seconds``, ``tweets``, ``images``, ``no_image``,
        ``no_objects``, ``detector_miss``, ``ambiguous``, ``misleading``, ``scenes``
        (pictures per scene) and per split ``splits[split]`` = tweets, entities per
        type, multi-word entities, O-only tweets and ``image_decided`` (entities whose
        type only the picture tells).

    Raises
    ------
    ValueError
        for negative or non-integer sizes or seed, probabilities outside [0, 1],
        ``p_ambiguous + p_typed > 1``, or a bad image size or quality.
    FileExistsError
        when ``out_dir`` holds anything other than an identical synthetic set.
    """
    t0 = time.perf_counter()
    settings = _settings(seed, sizes, p_misleading, p_no_objects, p_no_image, p_ambiguous, p_typed,
                         image_size, jpeg_quality)
    out = Path(out_dir)
    meta = _existing(out, settings)
    if meta is not None:
        return {**meta["summary"], "out_dir": str(out), "reused": True, "seconds": time.perf_counter() - t0}
    (out / "images").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "meta.json", {"settings": settings, "complete": False})
    width, height = settings["image_size"]
    noise = noise_bank(settings["seed"], width, height)
    images: dict[str, dict] = {}
    objects: dict[str, list[str]] = {}
    split_stats = {split: _write_split(out, settings, si, split, noise, images, objects)
                   for si, split in enumerate(SPLITS)}
    write_json_atomic(out / "objects.json", objects)
    summary = _summarise(images, split_stats, settings)
    grid = {"crop": CROP, "grid": GRID, "frame": list(crop_frame(width, height))}
    write_json_atomic(out / "meta.json", {"settings": settings, "complete": True, "summary": summary, "grid": grid,
                                          "images": images})
    return {**summary, "out_dir": str(out), "reused": False, "seconds": time.perf_counter() - t0}
