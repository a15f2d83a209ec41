"""Primitive ops, one file each, as ``<op>_forward`` / ``<op>_backward`` pairs."""
