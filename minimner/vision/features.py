"""Image → region-grid features: the one home of feature extraction.

The ``features`` command (a folder of pre-computed grids), ``predict --images`` and
``explain --image`` (grids computed on the fly for a trained run) all call this module, so
a picture gives the same (R, C_img) grid whichever way it reaches the model:

    file ─ :func:`minimner.vision.images.load_batch` (decode, transform, normalise)
         ─ eval-mode ResNet with BatchNorm folded into the convolutions
         ─ last feature map (B, C_img, h, w) ─ :meth:`ResNet.regions` ─ (B, R, C_img)

A run records the settings of its features (``features.json``, copied into ``run.json`` as
``features_settings``): the architecture, the crop size and the weights' file name, path and
SHA-256. :meth:`FeatureExtractor.from_settings` rebuilds the same ResNet from them and refuses
weights whose SHA-256 differs, since other weights would give the model features it never saw.

Dimension legend: B images, S crop size (224), R regions (⌈S/32⌉², 49 at S = 224), C_img feature
size (512 for ResNet-18/34, 2048 for ResNet-50+).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minimner import backend
from minimner.convert.resnet import load_model
from minimner.files import sha256_file
from minimner.models.resnet import ResNet, arch_depth
from minimner.vision.images import CROP, load_batch

__all__ = ["FeatureExtractor", "load_resnet", "image_file", "IMAGE_EXTENSIONS"]

#: File extensions tried for an image id (``<id>.jpg`` first, the data sets' own).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def image_file(image_id: str, folder=None) -> Path:
    """The picture file of a tweet's ``IMGID``.

    An id that names a file, i.e. ends in an image extension (``1015799.jpg``, ``photos/me.png``),
    is that path (relative to ``folder`` when given and the path is relative). Any other id is
    ``folder/<id>.jpg``, or ``<id>`` with another extension of :data:`IMAGE_EXTENSIONS` if only
    that exists. The path may not exist; the caller reports it (a missing picture is never replaced).
    """
    folder = Path(folder) if folder is not None else Path(".")
    if Path(image_id).suffix in IMAGE_EXTENSIONS:
        p = Path(image_id).expanduser()
        return p if p.is_absolute() else folder / p
    first = folder / f"{image_id}.jpg"
    if first.exists():
        return first
    for ext in IMAGE_EXTENSIONS[1:]:
        cand = folder / f"{image_id}{ext}"
        if cand.exists():
            return cand
    return first


def load_resnet(weights, arch: str, sha256: str | None = None):
    """The eval-mode, BN-folded ResNet ``arch`` with ``weights``, on the current backend.

    Parameters
    ----------
    weights : path of a converted ``.npz`` (``python -m minimner convert resnet``), or a
        torchvision ``.pth`` / timm ``.safetensors``.
    arch : ``resnet18`` … ``resnet152``.
    sha256 : the weights file's expected SHA-256 (hex), or None not to check.

    Raises
    ------
    FileNotFoundError
        when ``weights`` does not exist.
    ValueError
        when its SHA-256 differs from ``sha256`` (naming both), or the file does not fit ``arch``.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ResNet weights file not found")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise ValueError(f"{path}: SHA-256 {got[:12]}… differs from the {sha256[:12]}… of the weights the "
                             "run's image features were made with; pass the same converted ResNet")
    model = load_model(path, arch_depth(arch))
    if backend.get_backend() == "cupy":
        model.to("cupy")
    return model.fold_bn()


class FeatureExtractor:
    """A ResNet and a crop size: image files → (R, C_img) region grids.

    Parameters
    ----------
    model : an eval-mode ResNet (BN folded: :func:`load_resnet`).
    size : S, the crop size (the grid is ceil(S/32)²; 224 → 7×7).
    arch : its architecture name (for messages).
    """

    def __init__(self, model, size: int = CROP, arch: str = "resnet"):
        self.model, self.size, self.arch = model, int(size), str(arch)

    @classmethod
    def from_settings(cls, settings: dict, weights=None) -> "FeatureExtractor":
        """The extractor a ``features.json`` describes (``arch``, ``size``, ``weights_path``, ``weights_sha256``).

        ``weights`` overrides the recorded path (the file may have moved); its SHA-256 must still
        match the recorded one.

        Raises
        ------
        FileNotFoundError
            when no weights file is given and the recorded one is gone.
        ValueError
            for settings without an architecture, or weights with another SHA-256.
        """
        if not settings or "arch" not in settings:
            raise ValueError("the image-feature settings name no ResNet architecture")
        path = weights or settings.get("weights_path")
        if not path or not Path(path).is_file():
            raise FileNotFoundError(
                f"the ResNet weights the image features were made with ({settings.get('weights', 'unknown')}, "
                f"recorded at {settings.get('weights_path', 'no path')}) are not there: pass the converted "
                "ResNet file (--resnet FILE)")
        model = load_resnet(path, settings["arch"], sha256=settings.get("weights_sha256"))
        return cls(model, size=int(settings.get("size", CROP)), arch=settings["arch"])

    def grids_of_batch(self, images) -> np.ndarray:
        """(B, 3, S, S) float32 normalised images → host (B, R, C_img) float32 region grids."""
        x = backend.asarray(images, backend=backend.get_backend())               # (B, 3, S, S)
        fmap = self.model.features(x)                                            # (B, C_img, h, w)
        return np.ascontiguousarray(backend.asnumpy(ResNet.regions(fmap)), dtype=np.float32)  # (B, R, C_img)

    def grids(self, paths, image_ids=None, train: bool = False, seed: int = 0):
        """Region grids of image files, in order: ``(grids, results)``.

        ``grids[b]`` is the (R, C_img) float32 grid of ``paths[b]``, or None when that image is
        missing or unreadable (``results[b].reason`` says why; nothing replaces it). ``train``:
        the seeded random crop + flip of the train split (per ``image_ids[b]``), else the eval
        centre crop.
        """
        paths = list(paths)
        images, present, results = load_batch(paths, train=train, seed=seed, image_ids=image_ids,
                                              size=self.size)                    # (B, 3, S, S), (B,)
        grids: list[np.ndarray | None] = [None] * len(paths)
        if present.any():
            done = self.grids_of_batch(images[present])                          # (b, R, C_img)
            for b, g in zip(np.flatnonzero(present), done):
                grids[int(b)] = g
        return grids, results

    def grid(self, path):
        """``(grid, result)`` of one image file: the (R, C_img) grid, or None with ``result.reason``."""
        grids, results = self.grids([path])
        return grids[0], results[0]
