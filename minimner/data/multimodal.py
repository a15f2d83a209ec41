"""Image features and object labels for a batch of tweets: the multimodal inputs of MGCMT.

Two sources, both optional (a run without them has every image marked missing):

* :class:`ImageFeatures` reads the folder written by ``python -m minimner features``:
  ``OUT/features.json`` (the settings) and one ``OUT/<split>/<image id>.npy`` of shape
  (R, C_img) per image (region r = w·row + col). Train-split features come from seeded
  random crops, valid/test from the centre crop (docs/differences.md §4), hence one folder per split.
* an object-label table ``{image id: [COCO ids]}`` from :func:`minimner.vision.objects.load_objects`
  (the vision code's JSON or the original's torch dict), turned into the 5-slot id vector.

:class:`MultimodalSource` binds them to one split and builds, for a
:class:`~minimner.data.batching.Batch`, the model's ``regions`` (B, R, C_img) — the grid exactly
as stored, no transpose —, ``region_mask`` (B, R) and ``objects`` (B, O). Training binds each split to its own
sub-folder; ``split=None`` (prediction and evaluation of any tweets) looks each image id up in
every sub-folder instead (the eval-transform splits first, ``train`` last), so a tweet gets its
picture whichever split it comes from. :class:`ImageGrids` holds grids computed in memory
(``predict --images``) behind the same interface. A tweet whose image is absent from
the data (no ``IMGID``), absent from the folder (the features command found the file
missing or unreadable and wrote nothing) gets zero features and an all-0 region mask —
the same input either way, never another tweet's picture. A feature file that exists
must be a finite float grid of the folder's shape, else the error names it. ``remap``
replaces each image id by another (for the "shuffled images" control: the model sees a
random other tweet's picture and objects).

Dimension legend: B batch, R regions (h·w, 49 at 224×224), C_img feature size
(512 for ResNet-18/34, 2048 for ResNet-50+), O object slots (5).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.atomic import write_json_atomic
from minimner.vision.objects import image_key, lookup_batch

__all__ = ["ImageFeatures", "ImageGrids", "MultimodalSource", "feature_channels", "standardise_features",
           "standardisation"]

#: Output channels of the last ResNet stage, by depth.
_CHANNELS = {18: 512, 34: 512, 50: 2048, 101: 2048, 152: 2048}


def feature_channels(arch: str) -> int:
    """C_img of a ``resnetN`` architecture name (512 for 18/34, 2048 for 50/101/152)."""
    try:
        return _CHANNELS[int(str(arch).lower().replace("resnet", ""))]
    except (KeyError, ValueError):
        raise ValueError(f"unknown ResNet architecture {arch!r}; expected one of "
                         f"{', '.join('resnet%d' % d for d in _CHANNELS)}") from None


def standardise_features(root, split: str = "train") -> dict:
    """Record the per-channel mean and std of a features folder's ``split`` in its ``features.json``.

    ``mean[c]`` and ``std[c]`` are taken over every region of every image of ``split`` (the
    training split: nothing of dev or test is looked at). From then on :class:`ImageFeatures`
    returns ``(grid − mean) / std`` for every split, and so does :class:`ImageGrids` built from
    that folder's settings (prediction and explanation of new pictures); the ``.npy`` files are
    not changed. Calling it again recomputes the entry from the files.

    Why: the features of a *randomly initialised* ResNet (the demo's; no pretrained one is
    available here) share one large common component (the mean over a picture's regions has
    cosine 0.9 between any two pictures), so what tells pictures apart is a small part of each
    vector; a freshly initialised cross-modal layer then learns to read it far too slowly
    (measured in the README's demo section). Standardising is the usual input normalisation that
    removes the common part.

    Returns
    -------
    dict : the ``standardise`` entry (``split``, ``images``, ``mean``, ``std`` as lists of C_img floats).

    Raises
    ------
    FileNotFoundError
        when the folder or its ``split`` has no feature files.
    """
    feats = ImageFeatures(root)
    files = sorted((feats.root / split).glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"{feats.root / split}: no feature files to standardise with")
    total = np.zeros(feats.channels, np.float64)                              # (C_img,) running Σ x
    total_sq = np.zeros(feats.channels, np.float64)                           # (C_img,) running Σ x²
    n = 0
    for f in files:
        g = feats._read_grid(f).astype(np.float64)                             # (R, C_img), checked
        total += g.sum(0)
        total_sq += (g * g).sum(0)
        n += g.shape[0]
    mean = total / n                                                          # (C_img,)
    std = np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0)) + 1e-3         # dead channels: no division by 0
    entry = {"split": split, "images": len(files), "mean": [float(x) for x in mean], "std": [float(x) for x in std]}
    settings = {k: v for k, v in feats.settings.items() if k != "standardise"}
    write_json_atomic(feats.root / "features.json", dict(settings, standardise=entry))
    return entry


def standardisation(settings: dict, channels: int, where) -> tuple:
    """``(mean, std)`` (C_img,) float32 of a features settings' ``standardise`` entry, or ``(None, None)``."""
    st = settings.get("standardise")
    if not st:
        return None, None
    mean = np.asarray(st.get("mean", ()), dtype=np.float32)                   # (C_img,)
    std = np.asarray(st.get("std", ()), dtype=np.float32)                     # (C_img,)
    if mean.shape != (channels,) or std.shape != (channels,) or not (std > 0).all() or not np.isfinite(mean).all():
        raise ValueError(f"{where}: malformed standardise entry (mean and std must be {channels} finite values, "
                         "std > 0)")
    return mean, std


class ImageFeatures:
    """The region grids of a ``features`` output folder.

    Parameters
    ----------
    root : folder holding ``features.json`` and ``<split>/<image id>.npy``.

    Attributes
    ----------
    root : Path. settings : dict (``features.json``). channels : C_img. grid : (h, w).
    regions : R = h·w.

    Raises
    ------
    FileNotFoundError
        when ``root`` or its ``features.json`` does not exist.
    ValueError
        when ``features.json`` is malformed.
    """

    def __init__(self, root):
        self.root = Path(root)
        path = self.root / "features.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {self.root} is not a `python -m minimner features` "
                                    "output folder")
        try:
            self.settings = json.loads(path.read_text(encoding="utf-8"))
            self.channels = feature_channels(self.settings["arch"])
            side = math.ceil(int(self.settings["size"]) / 32)
        except KeyError as e:
            raise ValueError(f"{path}: malformed features settings (no key {e.args[0]!r})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: malformed features settings ({e})") from None
        if side < 1:
            raise ValueError(f"{path}: malformed features settings (size {self.settings['size']!r} < 1)")
        self.grid = (side, side)
        self.regions = side * side
        self.mean, self.std = standardisation(self.settings, self.channels, path)   # (C_img,) each, or None

    def path(self, split: str, image_id: str) -> Path:
        return self.root / split / f"{image_id}.npy"

    def _read_grid(self, p: Path) -> np.ndarray:
        """One ``.npy`` grid (R, C_img), checked: readable, floating point, the run's shape, finite.

        Raises
        ------
        ValueError
            naming the file and what is wrong with it.
        """
        redo = "; delete it and rerun `python -m minimner features` to recompute it"
        try:
            g = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{p}: unreadable feature file ({e}){redo}") from None
        if g.dtype.kind != "f":
            raise ValueError(f"{p}: feature grid has dtype {g.dtype}, expected float32 or float16{redo}")
        if g.shape != (self.regions, self.channels):
            raise ValueError(f"{p}: feature grid has shape {g.shape}, expected (R, C_img) = "
                             f"{(self.regions, self.channels)} (features.json: {self.settings.get('arch')}, "
                             f"size {self.settings.get('size')})")
        if not np.isfinite(g).all():                  # the fast test (~40 µs a grid); count only when it fails
            bad = int(g.size - np.isfinite(g).sum())
            raise ValueError(f"{p}: feature grid holds {bad} NaN/inf value{'s' if bad != 1 else ''}{redo}")
        return g

    def same_extractor(self, recorded: Mapping | None) -> list[str]:
        """The settings that differ from ``recorded`` (a run's ``features_settings``): [] when the same.

        Compared: the architecture, the crop size, the ResNet weights' SHA-256 and the
        storage dtype; a folder re-extracted with other weights gives other features,
        which a trained model would read as nonsense without any error.
        """
        if not recorded:
            return []
        keys = ("arch", "size", "weights_sha256", "dtype")
        return [k for k in keys if k in recorded and self.settings.get(k) != recorded.get(k)]

    def find(self, image_id: str, split: str | None = None, search: bool = True) -> Path | None:
        """The ``.npy`` of ``image_id``: in ``split``'s sub-folder, else (``search``) the first of
        :meth:`splits` that has it; None when there is none."""
        if split is not None:
            p = self.path(split, image_id)
            if p.is_file() or not search:
                return p if p.is_file() else None
        return self.locate(image_id)

    def splits(self) -> list[str]:
        """The sub-folders to search for an image of unknown split: test, valid, the others, train last
        (eval-transform features before the train split's random crops)."""
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        rank = {"test": 0, "valid": 1, "train": 3}
        return sorted(names, key=lambda n: (rank.get(n, 2), n))

    def locate(self, image_id: str) -> Path | None:
        """The first ``<split>/<image_id>.npy`` of :meth:`splits` that exists, or None."""
        for split in self.splits():
            p = self.root / split / f"{image_id}.npy"
            if p.is_file():
                return p
        return None

    def lookup(self, split: str | None, image_ids, search: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Host arrays ``(grid (B, R, C_img) float32, present (B,) bool)`` for ``image_ids``.

        ``None`` ids and ids without a file give zeros and ``present = False``. With ``search``
        (or ``split=None``) an image missing from ``split``'s sub-folder is looked up in the
        others (:meth:`find`); training never searches, so a split reads only its own features.

        Raises
        ------
        ValueError
            naming the file when a ``.npy`` cannot be read or has the wrong shape.
        """
        B = len(image_ids)
        grid = np.zeros((B, self.regions, self.channels), dtype=np.float32)   # (B, R, C_img)
        present = np.zeros(B, dtype=bool)                                     # (B,)
        for b, image_id in enumerate(image_ids):
            if image_id is None:
                continue
            p = self.find(image_id, split, search=search)
            if p is None:
                continue
            grid[b] = self._read_grid(p)                                      # float16 files are widened here
            present[b] = True
        if self.mean is not None:
            grid[present] = (grid[present] - self.mean) / self.std            # (b, R, C_img) standardised
        return grid, present


class ImageGrids:
    """Region grids held in memory, keyed by image id: :class:`ImageFeatures`' interface for pictures
    whose features are computed on the fly (``predict --images``).

    Parameters
    ----------
    grids : mapping image id → (R, C_img) float32 grid, as the ResNet gives it.
    grid : (h, w) with h·w = R.
    channels : C_img.
    settings : the run's features settings; their ``standardise`` entry (:func:`standardise_features`),
        if any, is applied to every grid as :class:`ImageFeatures` does.
    """

    def __init__(self, grids: Mapping, grid: tuple, channels: int, settings: Mapping | None = None):
        self.grids, self.grid, self.channels = dict(grids), tuple(grid), int(channels)
        self.mean, self.std = standardisation(settings or {}, self.channels, "the run's features settings")
        self.regions = self.grid[0] * self.grid[1]
        for key, g in self.grids.items():
            if tuple(np.shape(g)) != (self.regions, self.channels):
                raise ValueError(f"image {key}: grid of shape {np.shape(g)}, expected (R, C_img) = "
                                 f"{(self.regions, self.channels)}")

    def lookup(self, split, image_ids, search: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ImageFeatures.lookup` (``split`` and ``search`` are ignored)."""
        grid = np.zeros((len(image_ids), self.regions, self.channels), dtype=np.float32)   # (B, R, C_img)
        present = np.zeros(len(image_ids), dtype=bool)                                   # (B,)
        for b, image_id in enumerate(image_ids):
            if image_id is not None and image_id in self.grids:
                grid[b], present[b] = self.grids[image_id], True
        if self.mean is not None:
            grid[present] = (grid[present] - self.mean) / self.std            # (b, R, C_img) standardised
        return grid, present


class MultimodalSource:
    """Image features and object ids of one split, per batch.

    Parameters
    ----------
    split : the features sub-folder (``train``, ``valid``, ``test``), or None to look every image
        up in all of them (:meth:`ImageFeatures.locate`).
    features : ImageFeatures, ImageGrids or None (no images: every image is missing).
    objects : mapping image id → list of COCO ids (``load_objects``), or None (no objects).
    remap : mapping image id → image id whose picture and objects to use instead, or None.
    slots : O, object slots per tweet (5).
    search : look an image missing from ``split``'s sub-folder up in the others (prediction and
        evaluation; training keeps each split to its own features).
    """

    def __init__(self, split: str | None, features: ImageFeatures | ImageGrids | None = None,
                 objects: Mapping | None = None, remap: Mapping | None = None, slots: int = 5, search: bool = False):
        self.split, self.features, self.objects, self.remap, self.slots = split, features, objects, remap, int(slots)
        self.search = bool(search)

    def image_status(self, image_id: str | None) -> tuple[bool, str]:
        """``(used, why)`` for one tweet's image id: whether the model gets a picture, and where
        from or why not (no IMGID, no image features, not in the features folder)."""
        if image_id is None:
            return False, "no IMGID"
        if self.remap is not None:
            image_id = self.remap.get(image_id, image_id)
        if self.features is None:
            return False, "the run has no image features"
        if isinstance(self.features, ImageGrids):
            return (True, "computed") if image_id in self.features.grids else (False, "no picture")
        p = self.features.find(image_id, self.split, search=self.search)
        if p is None:
            return False, f"{image_id} is not in the features folder {self.features.root}"
        return True, str(p)

    def coverage(self, sentences) -> dict:
        """How many of ``sentences`` have image features and objects in this split.

        Returns ``{"tweets", "with_image_id", "with_features", "with_objects"}``;
        ``with_features`` / ``with_objects`` are None when the source has no features
        folder / object table (not asked for). A tweet "has objects" when its image
        has an entry in the table, even an empty one (the detector found nothing).
        """
        ids = [s.image_id for s in sentences]
        if self.remap is not None:
            ids = [None if i is None else self.remap.get(i, i) for i in ids]
        out = {"tweets": len(ids), "with_image_id": sum(i is not None for i in ids),
               "with_features": None, "with_objects": None}
        if self.features is not None:
            out["with_features"] = sum(self.image_status(s.image_id)[0] for s in sentences)
        if self.objects is not None:
            out["with_objects"] = sum(i is not None and image_key(i) in self.objects for i in ids)
        return out

    def image_ids(self, batch) -> list:
        ids = [s.image_id for s in batch.sentences]
        if self.remap is not None:
            ids = [None if i is None else self.remap.get(i, i) for i in ids]
        return ids

    def inputs(self, batch, dtype=np.float32) -> dict:
        """``{"regions": (B, R, C_img) or None, "region_mask": (B, R) bool or None, "objects": (B, O) or None}``.

        Arrays live on the backend of ``batch.input_ids`` (one transfer each). ``regions`` is
        None when no tweet of the batch has features (the model then uses the missing-image
        input, the same as an all-masked grid).
        """
        where = backend.device_of(batch.input_ids)
        ids = self.image_ids(batch)
        out = {"regions": None, "region_mask": None, "objects": None}
        if self.features is not None:
            grid, present = self.features.lookup(self.split, ids, search=self.search)  # (B, R, C_img), (B,)
            if present.any():
                R = grid.shape[1]
                out["regions"] = backend.asarray(grid.astype(dtype, copy=False), backend=where)   # (B, R, C_img)
                rmask = np.repeat(present[:, None], R, axis=1)                 # (B, R): all regions of a present image
                out["region_mask"] = backend.asarray(rmask, backend=where)
        if self.objects is not None:
            obj, _ = lookup_batch(self.objects, [i if i is not None else "" for i in ids], self.slots)  # (B, O)
            out["objects"] = backend.asarray(np.asarray(obj, dtype=np.int64), backend=where)
        return out
