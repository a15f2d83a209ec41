"""ResNet weights (torchvision ``.pth`` or timm-style ``.safetensors``) to a minimner ``.npz`` + manifest.

Dimension legend: none computed here; converters only rename and check.

The name map is the identity: minimner's ResNet uses torchvision's state-dict
names (``conv1.weight``, ``layer3.35.bn2.running_var``, ``layer4.0.downsample.0.weight``,
…), and timm's ``resnet*`` checkpoints (e.g. ``timm/resnet152.tv_in1k``) use the
same names. The explicit rules, applied by :class:`minimner.files.KeyAccountant`:

* strip a ``module.`` (DataParallel) or ``resnet.`` (MSCMT's ``pytorch_encoder.bin``) prefix;
* ignore ``fc.weight`` / ``fc.bias`` (the ImageNet classifier: MSCMT uses the 7×7
  grid, not the logits);
* ``*.num_batches_tracked`` is taken from the file when present and set to 0 when
  absent (torchvision's 2017 ``resnet152-b121ed2d.pth`` predates that buffer;
  PyTorch fills it the same way);
* every other tensor must fill exactly one parameter of the chosen architecture
  with exactly its shape, and every parameter must be filled; anything else is an
  error naming the key. Nothing is transposed.

No code from a weight file is ever executed: ``.pth``/``.pt``/``.bin`` go through
``torch.load(weights_only=True)`` (torch needed), ``.safetensors`` through the
safetensors NumPy reader, ``.npz`` with ``allow_pickle=False``.

Where to get ImageNet ResNet-152 weights (the README repeats this):
torchvision's ``https://download.pytorch.org/models/resnet152-b121ed2d.pth`` (the
file MSCMT used), or the same weights as safetensors from the Hugging Face hub
repository ``timm/resnet152.tv_in1k`` (``model.safetensors``; no torch needed).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from minimner import files
from minimner.models.resnet import ResNet, arch_depth

__all__ = ["RENAME", "IGNORE", "accountant", "load_state", "map_state", "load_model", "convert_file", "manifest_path"]

#: Regex renames applied in order to every source key.
RENAME = [(r"^module\.", ""), (r"^resnet\.", "")]
#: Source keys deliberately unused, with the reason recorded in the manifest.
IGNORE = [(r"(?:module\.|resnet\.)?fc\.(?:weight|bias)",
           "ImageNet classifier head: the encoder's output is the final feature map, not the logits")]

_NBT = "num_batches_tracked"


def accountant() -> files.KeyAccountant:
    """The :class:`~minimner.files.KeyAccountant` for torchvision/timm ResNet sources."""
    return files.KeyAccountant(rename=RENAME, ignore=IGNORE)


def _model(depth) -> ResNet:
    return ResNet(depth, init=False)                      # only shapes (and a target to load into) are needed


def load_state(path, arch="resnet152", model: ResNet | None = None):
    """Read a weight file and map it onto ``arch``'s state dict with strict key accounting.

    Parameters
    ----------
    path : str or Path
        ``.pth``/``.pt``/``.bin`` (torch installed), ``.safetensors`` or a converted ``.npz``.
    arch : ``'resnet18'`` … ``'resnet152'`` or the depth as an int
    model : optional ResNet of that depth (its shapes are the targets; built if omitted)

    Returns
    -------
    state, report : as :func:`map_state`

    Raises
    ------
    FileNotFoundError, RuntimeError (a torch file without torch), ValueError (unreadable
    or refused file), and whatever :func:`map_state` raises.
    """
    source = files.read_weights(path)
    source = OrderedDict((k, v) for k, v in source.items() if not k.startswith(files.META_PREFIX))
    return map_state(source, arch, model, where=str(path))


def map_state(source, arch="resnet152", model: ResNet | None = None, where: str = "source"):
    """Map a ``{name: array}`` source onto ``arch``'s state dict (the rules in the module docstring).

    Parameters
    ----------
    source : mapping name -> array (torchvision/timm names, optionally prefixed)
    arch : ``'resnet18'`` … ``'resnet152'`` or the depth
    model : optional ResNet of that depth (its shapes are the targets; built if omitted)
    where : how to name the source in error messages (its file path)

    Returns
    -------
    state : OrderedDict name -> np.ndarray in the model's order (float32; the
        ``num_batches_tracked`` counters int64 scalars)
    report : dict with ``renamed``, ``ignored`` (key -> reason) and ``defaulted``
        (counters absent from the source, set to 0)

    Raises
    ------
    KeyError
        naming unknown keys, keys filling the same parameter twice, and parameters left unfilled.
    ValueError
        naming the key and both shapes on a shape mismatch.
    """
    depth = arch_depth(arch)
    model = _model(depth) if model is None else model
    if model.depth != depth:
        raise ValueError(f"map_state: model is resnet{model.depth} but arch is resnet{depth}")
    source = OrderedDict(source)
    acc = accountant()
    expected = files.expected_shapes(model)
    counters = OrderedDict((k, s) for k, s in expected.items() if k.endswith(_NBT))
    # num_batches_tracked is optional, so it is accounted here rather than by the accountant
    given = OrderedDict()
    for key in [k for k in source if acc.target_name(k).endswith(_NBT)]:
        tgt = acc.target_name(key)
        if tgt not in counters:
            raise KeyError(f"{where}: unknown key {key!r}: resnet{depth} has no BatchNorm named "
                           f"{tgt[:-len(_NBT) - 1]!r}")
        if tgt in given:
            raise KeyError(f"{where}: {tgt!r} is given twice (with and without a prefix?)")
        if np.asarray(source[key]).size != 1:
            raise ValueError(f"{where}: {key!r} should be a scalar counter, got shape {np.shape(source[key])}")
        given[tgt] = np.asarray(source.pop(key), dtype=np.int64).reshape(())
    params = OrderedDict((k, s) for k, s in expected.items() if k not in counters)
    state = acc.apply(source, params, where=where)
    defaulted = [k for k in counters if k not in given]
    full = OrderedDict()
    for k in expected:
        full[k] = state[k] if k in state else given.get(k, np.zeros((), dtype=np.int64))
    report = {"renamed": acc.report()["renamed"], "ignored": acc.report()["ignored"], "defaulted": defaulted}
    return full, report


def load_model(path, arch="resnet152") -> ResNet:
    """Build ``arch`` and load weights from ``path`` (any format :func:`load_state` reads); eval mode."""
    model = _model(arch_depth(arch))
    state, _ = load_state(path, arch, model)
    model.load_state_dict(state)
    return model.eval()


def manifest_path(npz_path) -> Path:
    """``weights/resnet152.npz`` → ``weights/resnet152.manifest.json``."""
    p = Path(npz_path)
    return p.with_name(p.stem + ".manifest.json")


def convert_file(src, dst, arch="resnet152", verbose: bool = False) -> dict:
    """Convert a torchvision/timm ResNet checkpoint to ``dst`` (.npz) and ``<dst stem>.manifest.json``.

    Both files are written atomically. The manifest records the architecture, the
    source's SHA-256, every tensor's name/shape/dtype/SHA-256, and which keys were
    renamed, ignored (``fc.*``) or defaulted (``num_batches_tracked``).

    Returns
    -------
    dict, the manifest.

    Raises
    ------
    ValueError if ``dst`` does not end in ``.npz`` or ``src`` is already a converted
    ``.npz``; otherwise as :func:`load_state`.
    """
    dst = Path(dst)
    if dst.suffix != ".npz":
        raise ValueError(f"{dst}: the output must end in .npz")
    if Path(src).suffix.lower() == ".npz":
        raise ValueError(f"{src}: already a .npz; convert the original .pth or .safetensors file")
    depth = arch_depth(arch)
    state, report = load_state(src, depth)
    extra = OrderedDict(model_type="resnet", arch=f"resnet{depth}", renamed=report["renamed"],
                        ignored=report["ignored"], defaulted=report["defaulted"])
    manifest = files.make_manifest(src, state, extra=extra)
    files.write_npz_atomic(dst, state)
    files.write_manifest(manifest_path(dst), manifest)
    if verbose:
        print(f"converted resnet{depth}: {manifest['num_tensors']} tensors ({manifest['num_scalars']:,} values) "
              f"from {src}")
        for k, why in report["ignored"].items():
            print(f"  ignored {k}: {why}")
        if report["defaulted"]:
            print(f"  {len(report['defaulted'])} num_batches_tracked counters absent from the file, set to 0")
        print(f"wrote {dst} and {manifest_path(dst)}")
    return manifest
