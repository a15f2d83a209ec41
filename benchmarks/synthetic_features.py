"""A `features` folder of synthetic region grids, for timing MGCMT with images when the pictures are absent.

Writes ``OUT/features.json`` (the settings ``python -m minimner features`` would record for
ResNet-152 at 224: a 7×7 grid of 2048 channels, plus a ``synthetic`` note) and one
``OUT/<split>/<image id>.npy`` of shape (49, 2048) per ``IMGID`` line of DATA's
train/valid/test.txt: ``|N(0, 1)|`` (non-negative like ReLU outputs) from a seeded generator,
stored in float16 (or float32). The numbers mean nothing; the shapes, dtype and file layout
are the real ones, so training reads, widens and moves exactly what it would with real
features. Existing files are kept (a rerun completes an interrupted folder).

Usage::

    python benchmarks/synthetic_features.py ../shared/data/twitter2015 /tmp/feat2015
    python -m minimner train --model mgcmt --data ../shared/data/twitter2015 --features /tmp/feat2015 ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _harness  # noqa: F401  (puts the repository root on sys.path)

import numpy as np  # noqa: E402

from minimner.atomic import write_json_atomic  # noqa: E402
from minimner.cli.features import SPLITS, read_image_ids  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with train.txt / valid.txt / test.txt (IMGID lines)")
    ap.add_argument("out", type=Path, help="features folder to write")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    write_json_atomic(args.out / "features.json", {
        "format_version": 1, "arch": "resnet152", "size": 224, "dtype": args.dtype,
        "synthetic": f"|N(0, 1)| per entry, numpy default_rng({args.seed}); not image features"})
    written = kept = 0
    for split in SPLITS:
        if not (args.data / f"{split}.txt").is_file():
            continue
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for image_id in read_image_ids(args.data / f"{split}.txt"):
            path = args.out / split / f"{image_id}.npy"
            if path.exists():
                kept += 1
                continue
            grid = np.abs(rng.standard_normal((49, 2048), dtype=np.float32)).astype(args.dtype)   # (R, C_img)
            np.save(path, grid)
            written += 1
    print(f"{args.out}: {written} grids written, {kept} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
