"""How well a random-init ResNet's features separate the synthetic scenes: linear probes, NumPy only.

An experiment on the demo's data (moved here from ``minimner.data.synthetic``: the data layer
does not import the models). Usage::

    python benchmarks/separability.py DATA_DIR [--depth 18] [--seed 0] [--limit N]
    python benchmarks/separability.py DEMO_OUT/data --features DEMO_OUT/features   # a demo's own features

Dimension legend: N images, R = 49 regions, C ResNet channels, D probe inputs, K classes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _harness  # noqa: F401  (puts the repository root on sys.path)

import numpy as np  # noqa: E402

from minimner.data.synthetic import GRID, SCENES  # noqa: E402
from minimner.models.resnet import build  # noqa: E402
from minimner.vision.images import load_batch  # noqa: E402

__all__ = ["separability_probe", "features_probe", "ridge_classifier"]


def _ridge_fit(x, y, lams):
    """Multi-output ridge regressions with a free bias, one per lam: (W, b) minimising |x W + b − y|² + lam |W|².

    x (N, D) float64, y (N, K) -> list of (W (D, K), b (K,)), one per entry of ``lams``
    """
    mu = x.mean(0)                                                                   # (D,)
    xc = x - mu                                                                      # (N, D)
    ym = y.mean(0)                                                                   # (K,)
    gram = xc.T @ xc                                                                 # (D, N) @ (N, D) -> (D, D)
    rhs = xc.T @ (y - ym)                                                            # (D, N) @ (N, K) -> (D, K)
    out = []
    for lam in lams:
        w = np.linalg.solve(gram + lam * np.eye(x.shape[1]), rhs)                    # (D, D) \ (D, K) -> (D, K)
        out.append((w, ym - mu @ w))
    return out


def ridge_classifier(xtr, ytr, ncls, lams=(1.0, 10.0, 100.0, 1000.0), folds=3):
    """One-vs-rest ridge classifier; lam chosen by ``folds``-fold cross-validation, then refitted on all rows.

    Returns (W (D, ncls), b (ncls,), lam).
    """
    onehot = np.eye(ncls)[ytr]                                                       # (N, ncls)
    fold = np.arange(len(xtr)) % folds
    correct = np.zeros(len(lams))
    for f in range(folds):
        fit, held = fold != f, fold == f
        for k, (w, b) in enumerate(_ridge_fit(xtr[fit], onehot[fit], lams)):
            correct[k] += ((xtr[held] @ w + b).argmax(1) == ytr[held]).sum()
    lam = lams[int(np.flatnonzero(correct == correct.max())[-1])]                   # ties: the stronger ridge
    (w, b), = _ridge_fit(xtr, onehot, (lam,))
    return w, b, lam


def _auc(pos, neg) -> float:
    """ROC AUC = P(score of a positive > score of a negative), by ranks (Mann-Whitney)."""
    scores = np.concatenate([pos, neg])                                              # (P + N,)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def separability_probe(data_dir, depth: int = 18, seed: int = 0, batch_size: int = 16,
                       limit: int | None = None) -> dict:
    """How well a random-init ResNet's features separate the scenes: linear probes, NumPy only.

    Features come through the real pipeline: :func:`minimner.vision.images.load_batch`
    (eval transform) -> a random-init (seed ``seed``), eval-mode (BN with its init
    statistics), BN-folded :mod:`minimner.models.resnet` of ``depth`` ->
    :meth:`ResNet.regions` (N, R, C), compressed with log1p. Ridge classifiers
    (one-vs-rest, lam in {1, 10, 100, 1000} by 3-fold cross-validation) are fitted on the
    ``train`` split's images and scored on the ``test`` split's images.

    Parameters
    ----------
    data_dir : folder written by :func:`generate`
    depth : ResNet depth (18 for the demo's encoder)
    seed : seed of the ResNet's random init
    batch_size : images per forward pass
    limit : use at most this many images per split (None: all)

    Returns
    -------
    dict
        ``scene_acc``: 4-way scene type of test images showing a key object, from the
        pooled features ([mean; max] over the R cells, standardised);
        ``scene5_acc``: 5-way, with "none" (no key object) as a class;
        ``object_acc``: 4-way from the mean feature over the key object's cells (what
        an attention map that lands on the object would pool);
        ``cell_auc``: ROC AUC of a per-cell ridge score separating key-object cells
        from all other cells; ``cell_type_acc``: 4-way type of each key-object cell
        from that cell's feature alone; ``n_train``, ``n_test`` (images), ``lams``
        (chosen), ``depth``, ``seconds``.
    """
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))["images"]
    model = build(depth, rng=np.random.default_rng(seed)).eval().fold_bn()
    feats = {}
    for split in ("train", "test"):
        ids = [i for i, m in meta.items() if m["split"] == split and m["image"]][:limit]
        grids = []
        for k in range(0, len(ids), batch_size):
            chunk = ids[k:k + batch_size]
            x, present, _ = load_batch([data_dir / "images" / f"{i}.jpg" for i in chunk])  # (B, 3, S, S)
            if not present.all():
                raise ValueError(f"{data_dir}: unreadable images among {chunk}")
            grids.append(model.regions(model.features(x)))                                # (B, R, C)
        feats[split] = (ids, np.log1p(np.maximum(np.concatenate(grids).astype(np.float64), 0)))  # (N, R, C)
    (tr_ids, tr), (te_ids, te) = feats["train"], feats["test"]
    ytr = np.array([SCENES.index(meta[i]["scene"]) for i in tr_ids])                  # (N,)
    yte = np.array([SCENES.index(meta[i]["scene"]) for i in te_ids])
    out = {"n_train": len(tr_ids), "n_test": len(te_ids), "depth": depth, "lams": {}}

    ptr = np.concatenate([tr.mean(1), tr.max(1)], 1)                                  # (N, 2C) pooled
    pte = np.concatenate([te.mean(1), te.max(1)], 1)
    mu, sd = ptr.mean(0), ptr.std(0) + 1e-6                                            # (2C,)
    ptr, pte = (ptr - mu) / sd, (pte - mu) / sd
    for name, ncls in (("scene_acc", 4), ("scene5_acc", 5)):
        mtr, mte = ytr < ncls, yte < ncls
        w, b, out["lams"][name] = ridge_classifier(ptr[mtr], ytr[mtr], ncls)
        out[name] = float(((pte[mte] @ w + b).argmax(1) == yte[mte]).mean())

    def cell_labels(ids):                                  # (N, R): scene index on key cells, 4 elsewhere
        lab = np.full((len(ids), GRID * GRID), 4)
        for n, i in enumerate(ids):
            if meta[i]["scene"] != "none":
                lab[n, meta[i]["cells"]] = SCENES.index(meta[i]["scene"])
        return lab.ravel()
    def object_mean(ids, grid):                            # (M, C): mean feature over each key object's cells
        return np.stack([grid[n, meta[i]["cells"]].mean(0) for n, i in enumerate(ids) if meta[i]["cells"]])
    otr, ote = object_mean(tr_ids, tr), object_mean(te_ids, te)
    mu, sd = otr.mean(0), otr.std(0) + 1e-6                                            # (C,)
    w, b, out["lams"]["object_acc"] = ridge_classifier((otr - mu) / sd, ytr[ytr < 4], 4)
    out["object_acc"] = float(((((ote - mu) / sd) @ w + b).argmax(1) == yte[yte < 4]).mean())

    ctr, cte = cell_labels(tr_ids), cell_labels(te_ids)                                # (N·R,)
    xtr, xte = tr.reshape(-1, tr.shape[-1]), te.reshape(-1, te.shape[-1])              # (N·R, C)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6                                            # (C,)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w, b, out["lams"]["cell_auc"] = ridge_classifier(xtr, (ctr < 4).astype(int), 2)
    score = xte @ (w[:, 1] - w[:, 0]) + (b[1] - b[0])                                   # (N·R,)
    out["cell_auc"] = _auc(score[cte < 4], score[cte == 4])
    w, b, out["lams"]["cell_type_acc"] = ridge_classifier(xtr[ctr < 4], ctr[ctr < 4], 4)
    out["cell_type_acc"] = float(((xte[cte < 4] @ w + b).argmax(1) == cte[cte < 4]).mean())
    out["seconds"] = time.perf_counter() - t0
    return out


def features_probe(data_dir, features_dir) -> dict:
    """The scene probes on a ``features`` folder as a run reads it (standardised where it records a mean and std).

    Only the pooled probes (``scene_acc``, ``scene5_acc``, on the mean over the R cells): the train
    split's grids come from seeded random crops, so the key object's cells of ``meta.json`` (drawn
    for the centre crop) do not hold there and the cell-level probes are left out.
    """
    t0 = time.perf_counter()
    data_dir, features_dir = Path(data_dir), Path(features_dir)
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))["images"]
    entry = json.loads((features_dir / "features.json").read_text(encoding="utf-8")).get("standardise")
    mean, std = (np.asarray(entry["mean"]), np.asarray(entry["std"])) if entry else (0.0, 1.0)
    pooled, labels = {}, {}
    for split in ("train", "test"):
        ids = [i for i, m in meta.items() if m["split"] == split and (features_dir / split / f"{i}.npy").is_file()]
        pooled[split] = np.stack([((np.load(features_dir / split / f"{i}.npy") - mean) / std).mean(0)
                                  for i in ids])                                          # (N, C)
        labels[split] = np.array([SCENES.index(meta[i]["scene"]) for i in ids])           # (N,)
    out = {"n_train": len(labels["train"]), "n_test": len(labels["test"]), "features": str(features_dir),
           "standardised": bool(entry), "lams": {}}
    for name, ncls in (("scene_acc", 4), ("scene5_acc", 5)):
        mtr, mte = labels["train"] < ncls, labels["test"] < ncls
        w, b, out["lams"][name] = ridge_classifier(pooled["train"][mtr], labels["train"][mtr], ncls)
        out[name] = float(((pooled["test"][mte] @ w + b).argmax(1) == labels["test"][mte]).mean())
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a folder written by minimner.data.synthetic.generate")
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--features", default=None, metavar="DIR",
                    help="probe this features folder (e.g. the demo's OUT/features) instead of extracting")
    a = ap.parse_args(argv)
    if a.features:
        print(json.dumps(features_probe(a.data, a.features), indent=2))
        return 0
    print(json.dumps(separability_probe(a.data, depth=a.depth, seed=a.seed, limit=a.limit), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
