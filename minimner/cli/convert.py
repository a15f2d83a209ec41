"""``python -m minimner convert {bert,resnet,glove,mgcmt} SRC DST``: weight/lexicon converters.

Each kind's converter module (``minimner.convert.<kind>``) adds its own
sub-parser through ``register_cli(subparsers)``.
"""
from __future__ import annotations

import importlib

KINDS = ("bert", "resnet", "glove", "mgcmt")


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert PyTorch/safetensors/text weights to minimner .npz",
                              description="Convert weights to a NumPy .npz plus a JSON manifest "
                                          "(names, shapes, dtypes, sha256 of the source).")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind in KINDS:
        try:
            mod = importlib.import_module(f"minimner.convert.{kind}")
        except ModuleNotFoundError as e:
            if e.name == f"minimner.convert.{kind}":
                continue
            raise
        mod.register_cli(kinds)
