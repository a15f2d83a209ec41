"""Object labels from Mask R-CNN (docs/data.md §6): COCO-80 class ids, the 5-slot id vector and its mask.

Dimension legend: B batch, O object slots (5), Vo object vocabulary rows (85).

Convention (matterport Mask R-CNN with COCO weights, as the original used):

* class ids 1…80 in :data:`COCO_CLASSES` order (id = index + 1); 0 = background,
  i.e. "no object";
* MSCMT's ``object_embeddings`` has Vo = 85 rows (:data:`NUM_OBJECT_ROWS`); row 0
  is the "no object" vector and rows 81–84 are never indexed;
* per image, the detected ids in the detector's order (descending score) fill the
  first ``min(n, 5)`` of 5 slots, duplicates kept (five people -> ``[1, 1, 1, 1, 1]``),
  the rest stay 0; an image without an entry or without detections is all 0;
* the mask is ``id != 0``.

The stored table maps an image to its list of ids; the original keyed it by file
name *with* ``.jpg``. Loaders here normalise keys to the bare image id
(``"17_06_12483.jpg"`` -> ``"17_06_12483"``), so lookups work either way.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["COCO_CLASSES", "NUM_OBJECT_ROWS", "NO_OBJECT", "OBJECT_SLOTS", "class_id", "class_name",
           "object_ids", "object_ids_batch", "lookup_batch", "image_key", "load_object_json", "load_object_torch",
           "load_objects"]

#: COCO's 80 detection classes in the order of Mask R-CNN's class ids 1…80.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
assert len(COCO_CLASSES) == 80

NUM_OBJECT_ROWS = 85    # Vo: rows of MSCMT's object embedding table (img_object_label_num)
NO_OBJECT = 0           # id of an empty slot ("background")
OBJECT_SLOTS = 5        # O: obj_num

_BY_NAME = {name: i + 1 for i, name in enumerate(COCO_CLASSES)}


def class_id(label) -> int:
    """COCO class id 1…80 of a name (``'person'``, case/space-insensitive) or an id (returned checked).

    Raises
    ------
    ValueError
        naming the label when it is not a COCO-80 name or an id in 1…80.
    """
    if isinstance(label, (bool, np.bool_)):
        raise ValueError(f"object label {label!r} is a bool, not a COCO class id or name")
    if isinstance(label, (int, np.integer)):
        if not 1 <= int(label) <= 80:
            raise ValueError(f"object id {int(label)} is outside the COCO-80 ids 1…80")
        return int(label)
    if isinstance(label, str):
        key = " ".join(label.strip().lower().replace("_", " ").split())
        if key.isdigit():
            return class_id(int(key))
        if key not in _BY_NAME:
            raise ValueError(f"unknown object label {label!r}: not one of the 80 COCO classes")
        return _BY_NAME[key]
    raise ValueError(f"object label {label!r} ({type(label).__name__}) is neither a COCO class name nor an id")


def class_name(i: int) -> str:
    """Name of COCO id ``i`` (1…80); ``'<none>'`` for 0."""
    if i == NO_OBJECT:
        return "<none>"
    return COCO_CLASSES[class_id(i) - 1]


def object_ids(labels, slots: int = OBJECT_SLOTS):
    """The fixed-length id vector of one image and its mask.

    Parameters
    ----------
    labels : sequence of COCO names or ids in detector order (None or empty: no objects)
    slots : int, O

    Returns
    -------
    ids : np.ndarray (O,) int64, the first min(n, O) labels' ids then zeros
    mask : np.ndarray (O,) bool, ``ids != 0``
    """
    ids = np.zeros(slots, dtype=np.int64)                  # (O,)
    for k, label in enumerate(list(labels or [])[:slots]):
        ids[k] = class_id(label)
    return ids, ids != NO_OBJECT


def object_ids_batch(batch_labels, slots: int = OBJECT_SLOTS):
    """Stack :func:`object_ids` over a batch: (B, O) int64 ids and (B, O) bool mask."""
    rows = [object_ids(labels, slots)[0] for labels in batch_labels]
    ids = np.stack(rows) if rows else np.zeros((0, slots), dtype=np.int64)  # (B, O)
    return ids, ids != NO_OBJECT


def lookup_batch(table, image_ids, slots: int = OBJECT_SLOTS):
    """(B, O) ids and mask for ``image_ids`` from a loaded table; an image without an entry is all 0."""
    return object_ids_batch([table.get(image_key(i)) for i in image_ids], slots)


def image_key(name) -> str:
    """``'dir/17_06_12483.jpg'`` / ``17_06_12483`` / ``1015799`` -> the bare image id string."""
    s = Path(str(name)).name
    return s[:-4] if s.lower().endswith(".jpg") else s


def _normalise_table(raw, where) -> dict:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping image -> list of labels, got {type(raw).__name__}")
    table = {}
    for key, labels in raw.items():
        if hasattr(labels, "tolist"):                      # numpy array or torch tensor of ids
            labels = labels.tolist()
        if labels is None:
            labels = []
        if not isinstance(labels, (list, tuple)):
            raise ValueError(f"{where}: entry {key!r} should be a list of labels, got {type(labels).__name__}")
        try:
            ids = [class_id(x) for x in labels]
        except ValueError as e:
            raise ValueError(f"{where}: entry {key!r}: {e}") from None
        k = image_key(key)
        if k in table:
            raise ValueError(f"{where}: image {k!r} appears twice (e.g. with and without .jpg)")
        table[k] = ids
    return table


def load_object_json(path) -> dict:
    """Read ``{image: [labels or ids]}`` from JSON; returns ``{image_id: [ids 1…80]}``.

    Raises
    ------
    FileNotFoundError; ValueError naming the file and the bad entry.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"object label file not found: {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON: {e}") from None
    return _normalise_table(raw, p)


def _numpy_array_globals():
    """The few globals a pickled *numeric* NumPy array needs (no object arrays, no code)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    numeric = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float32,
               np.float64, np.bool_)
    return [_reconstruct, np.ndarray, np.dtype] + [type(np.dtype(t)) for t in numeric]


def load_object_torch(path) -> dict:
    """Read the original torch-saved ``{'<id>.jpg': [ids]}`` dict with ``torch.load(weights_only=True)``.

    Lists of ints, tensors and numeric NumPy arrays are accepted (the last through
    an allowlist of NumPy's array-rebuilding globals only); anything else in the
    pickle is refused, never executed.

    Raises
    ------
    FileNotFoundError; RuntimeError without torch; ValueError for a refused or bad file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"object label file not found: {p}")
    try:
        import torch
    except ImportError as e:
        raise RuntimeError(f"{p}: reading a torch-saved object dict needs torch; or export it as JSON") from e
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{p}: refused or unreadable (loaded with weights_only=True, which never executes "
                         f"code from the file): {type(e).__name__}: {_torch_reason(e)}") from None
    return _normalise_table(raw, p)


def _torch_reason(e: Exception) -> str:
    """The line of torch's error that says what is wrong with the file, without its advice to load it unsafely."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    specific = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    if specific:
        return specific[0]
    safe = [ln for ln in lines if "weights_only" not in ln and "torch.load" not in ln]
    return safe[0] if safe else "the file holds something other than tensors, numbers, strings and lists"


def _object_file_kind(p: Path) -> str:
    """``"json"``, ``"torch"`` or ``"unknown"``, from the file's first bytes (never its suffix).

    A torch save is a zip archive (``PK\\x03\\x04``, torch ≥ 1.6) or a bare pickle
    (protocol byte ``\\x80``); JSON starts, after an optional byte-order mark and
    white space, with ``{`` (or ``[``/``"``, refused later as not a mapping).
    """
    with open(p, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "torch"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"[", b'"') or not text:
        return "json"
    return "unknown"


def load_objects(path) -> dict:
    """Read an object-label file, recognising JSON or a torch save by its content (not its suffix).

    Raises
    ------
    FileNotFoundError; ValueError naming the file when it is neither (or, from the
    loaders, a bad entry); RuntimeError for a torch file without torch.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"object label file not found: {p}")
    kind = _object_file_kind(p)
    if kind == "unknown":
        raise ValueError(f"{p}: not an object-label file: neither JSON {{image: [labels]}} nor a torch save "
                         "(it starts with neither '{' nor a zip/pickle header)")
    return load_object_json(p) if kind == "json" else load_object_torch(p)
