"""minimner: a from-scratch NumPy/CuPy reference implementation of multimodal NER
on social media (Liu et al., MSCMT/MGCMT), with hand-written forward and backward
passes for every layer.

Dimension legend used across the package: B batch, T word-piece tokens, R image
regions, C hidden, H heads, D head size (C = H·D), K tags, V vocab.
"""
__version__ = "0.1.0"

from minimner import backend  # noqa: F401
