"""Weight converters: PyTorch / safetensors files to minimner ``.npz`` + manifest, with strict key accounting.

The general readers, hashes, manifests and :class:`~minimner.files.KeyAccountant` are on the
ground floor (:mod:`minimner.files`); the ``convert`` command is :mod:`minimner.cli.convert`.
Nothing here imports the command line.
"""
