"""Image loading and preprocessing for the ResNet encoder (Pillow + NumPy).

Dimension legend: B batch, S crop size (224), images are (B, 3, S, S) float32 NCHW.

Pipeline (docs/differences.md §4: deterministic, never a substitute image)::

    open → decode fully → EXIF orientation → RGB → resize → crop (→ flip) → [0, 1] → ImageNet normalise

* **Decoding**: a missing, empty, truncated or undecodable file (or one above
  Pillow's decompression-bomb limit) is *not* an exception for the caller: the
  result is marked ``missing`` with a one-line ``reason`` and logged on the
  ``minimner.vision`` logger. The model masks it; no other image replaces it (the
  original pipeline silently substituted ``17_06_4705.jpg``, docs/data.md §5).
* **EXIF orientation** is applied (phone photos are stored sideways with a tag).
* **Mode → RGB**: RGB passes through; images with transparency (RGBA, LA, PA,
  palette with a transparent colour) are composited onto **white** (the colour a
  transparent tweet image is shown on), rather than Pillow's plain ``convert``
  which exposes whatever colour the transparent pixels happen to hold; grayscale,
  bilevel, palette, CMYK (Pillow's profile-free conversion), YCbCr … use
  ``convert('RGB')``; 16-bit / 32-bit grayscale is scaled to 8 bits first.
* **Eval transform** (dev/test): resize the shorter side to 256 (bilinear with
  Pillow's antialiasing, as torchvision's ``Resize`` on a PIL image; longer side
  ``int(256·long/short)``), then centre-crop 224 (torchvision's ``CenterCrop``
  rounding). This is the standard ImageNet evaluation transform the ResNet
  weights were trained for. For another crop size S the resize is ``round(S·256/224)``.
* **Train transform**: the same resize, then a random S×S crop and a horizontal
  flip with probability 1/2, drawn from ``numpy.random.default_rng([seed,
  crc32(image_id)])``: reproducible for a given seed and image, independent of
  batch order (so an interrupted feature extraction resumes identically).
* **Tiny images** (e.g. 10×10) are upscaled by the same resize, never rejected
  (``upscaled=True`` in the result). Extreme panoramas are first centre-cropped to
  a long/short ratio of at most 4 (so a 1×10000 strip cannot blow up to 256×2.5M);
  below that ratio the transform is exactly the torchvision one.
* **Normalisation**: ``(x/255 − mean) / std`` with ImageNet's mean (0.485, 0.456,
  0.406) and std (0.229, 0.224, 0.225), in float32, CHW.
"""
from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CROP", "RESIZE", "MAX_ASPECT", "ImageResult", "open_rgb", "to_rgb",
           "eval_transform", "train_transform", "normalise", "load_image", "load_batch", "image_rng"]

logger = logging.getLogger("minimner.vision")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP = 224          # S: the crop the encoder sees (7×7 = 49 regions for ResNet)
RESIZE = 256        # shorter side before cropping (the 256/224 ImageNet ratio)
MAX_ASPECT = 4.0    # long/short ratio above which the long side is centre-cropped first


class ImageError(Exception):
    """An image that cannot be used; ``str(e)`` is the one-line reason."""


@dataclass
class ImageResult:
    """One preprocessed image, or the reason it is missing.

    Attributes
    ----------
    path : str
    array : np.ndarray (3, S, S) float32, normalised; None when ``missing``
    missing : bool
    reason : str, why it is missing ('' otherwise)
    original_size : (width, height) after EXIF orientation, or None
    original_mode : Pillow mode before conversion ('RGBA', 'CMYK', …), or None
    upscaled : bool, the shorter side was below the resize target
    """

    path: str
    array: np.ndarray | None = None
    missing: bool = False
    reason: str = ""
    original_size: tuple | None = None
    original_mode: str | None = None
    upscaled: bool = False


# ----------------------------------------------------------------------------- decoding
def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 'L' (values above 255 are taken as 16-bit)."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or a.max(initial=0) > 255:
        a = a / 257.0                                      # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'RGB' (transparency composited onto white; see the module docstring)."""
    if im.mode == "RGB":
        return im
    if (im.mode == "P" and "transparency" in im.info) or im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit_gray(im)
    return im.convert("RGB")


def open_rgb(path) -> tuple[Image.Image, str]:
    """Open, fully decode, orient and convert an image. Returns ``(rgb_image, original_mode)``.

    Raises
    ------
    ImageError
        with a one-line reason: missing file, empty file, unknown format, truncated
        or corrupt data, or too many pixels.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError("file not found" if not p.exists() else "not a regular file")
    if p.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()                                      # decode now: truncation surfaces here
            mode = im.mode
            im = ImageOps.exif_transpose(im)
            return to_rgb(im), mode
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:        # truncated / corrupt data
        raise ImageError(f"truncated or corrupt image data ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------- transforms
def _limit_aspect(im: Image.Image) -> Image.Image:
    w, h = im.size
    short, long_ = min(w, h), max(w, h)
    if long_ <= MAX_ASPECT * short:
        return im
    keep = int(MAX_ASPECT * short)
    if w > h:
        left = (w - keep) // 2
        return im.crop((left, 0, left + keep, h))
    top = (h - keep) // 2
    return im.crop((0, top, w, top + keep))


def _resize_shorter(im: Image.Image, target: int) -> Image.Image:
    """torchvision ``Resize(target)`` on a PIL image: shorter side -> target, bilinear + antialias."""
    w, h = im.size
    if w <= h:
        size = (target, int(target * h / w))
    else:
        size = (int(target * w / h), target)
    return im if size == (w, h) else im.resize(size, Image.BILINEAR)


def _resize_for(size: int) -> int:
    return RESIZE if size == CROP else int(round(size * RESIZE / CROP))


def eval_transform(im: Image.Image, size: int = CROP) -> Image.Image:
    """Resize the shorter side to 256 (for S = 224) and take the centre S×S crop. RGB in, RGB out."""
    im = _resize_shorter(_limit_aspect(im), _resize_for(size))
    w, h = im.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image's train-time crop and flip: seeded by (seed, crc32(image_id))."""
    return np.random.default_rng([int(seed), zlib.crc32(str(image_id).encode("utf-8"))])


def train_transform(im: Image.Image, rng: np.random.Generator, size: int = CROP) -> Image.Image:
    """Resize as :func:`eval_transform`, then a random S×S crop and a horizontal flip with p = 1/2."""
    im = _resize_shorter(_limit_aspect(im), _resize_for(size))
    w, h = im.size
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    im = im.crop((left, top, left + size, top + size))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return im


def normalise(im: Image.Image) -> np.ndarray:
    """RGB image (S, S) -> (3, S, S) float32, ``(x/255 − mean) / std`` per channel."""
    a = np.asarray(im, dtype=np.float32) / np.float32(255)         # (S, S, 3) in [0, 1]
    a = (a - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)  # (S, S, 3)
    return np.ascontiguousarray(a.transpose(2, 0, 1))               # (3, S, S)


# ------------------------------------------------------------------------------ entry points
def load_image(path, train: bool = False, seed: int = 0, image_id: str | None = None,
               size: int = CROP) -> ImageResult:
    """Load and preprocess one image; failures come back as ``missing`` results, never as exceptions.

    Parameters
    ----------
    path : str or Path
    train : bool, random crop + flip (seeded) instead of the centre crop
    seed : int, the train-time seed
    image_id : str, names the image for the train-time generator (default: the file stem)
    size : int, S (224 for a 7×7 ResNet grid)

    Returns
    -------
    ImageResult; ``array`` is (3, S, S) float32 when the image is usable.
    """
    result = ImageResult(path=str(path))
    try:
        im, result.original_mode = open_rgb(path)
    except ImageError as e:
        result.missing, result.reason = True, str(e)
        logger.warning("image %s marked missing: %s", path, e)
        return result
    result.original_size = im.size
    result.upscaled = min(im.size) < _resize_for(size)
    if result.upscaled:
        logger.info("image %s is small (%d×%d): upscaled", path, *im.size)
    if train:
        key = image_id if image_id is not None else Path(os.fspath(path)).stem
        im = train_transform(im, image_rng(seed, key), size)
    else:
        im = eval_transform(im, size)
    result.array = normalise(im)
    return result


def load_batch(paths, train: bool = False, seed: int = 0, image_ids=None, size: int = CROP):
    """Load several images into one batch with a presence mask.

    Returns
    -------
    images : np.ndarray (B, 3, S, S) float32; rows of missing images are zeros
    present : np.ndarray (B,) bool, False where the image is missing (mask it in the model)
    results : list of ImageResult (reasons for the missing ones)
    """
    paths = list(paths)
    ids = list(image_ids) if image_ids is not None else [None] * len(paths)
    if len(ids) != len(paths):
        raise ValueError(f"load_batch: {len(paths)} paths but {len(ids)} image ids")
    results = [load_image(p, train, seed, i, size) for p, i in zip(paths, ids)]
    images = np.zeros((len(paths), 3, size, size), dtype=np.float32)  # (B, 3, S, S)
    for b, r in enumerate(results):
        if not r.missing:
            images[b] = r.array
    present = np.array([not r.missing for r in results], dtype=bool)   # (B,)
    return images, present, results
