"""Modules: thin wrappers holding parameters and gradients around the ops pairs."""
from minimner.nn.module import Module, ModuleList, Parameter  # noqa: F401
