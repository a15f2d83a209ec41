"""Modules: thin wrappers holding parameters and gradients around the ops pairs."""
from minimner.nn.module import Module, ModuleList, Parameter  # noqa: F401
from minimner.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, Sigmoid, Tanh  # noqa: F401
