"""Issue-18 research experiments (helper D): features, probes, training arms. Not part of the package."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from minimner.data.synthetic import generate, SCENES
from minimner.models.resnet import build
from minimner.vision.images import load_batch
from minimner.atomic import write_npz_atomic
from minimner import backend

ROOT = Path("/tmp/d18")


def resnet(seed=0, recal_paths=None, batch=16):
    m = build(18, rng=np.random.default_rng(seed))
    if recal_paths:
        m.train()
        bns = [bn for _, bn in m._conv_bn_pairs()]
        for bn in bns:
            bn.running_mean[...] = 0
            bn.running_var[...] = 1
        k = 0
        for b0 in range(0, len(recal_paths), batch):
            x, present, _ = load_batch(recal_paths[b0:b0 + batch])
            for bn in bns:
                bn.momentum = 1.0 / (k + 1)
            m.features(x[present])
            k += 1
        m.eval()
    return m


def grids(model, paths, batch=8):
    model.fold_bn()
    out = []
    for b0 in range(0, len(paths), batch):
        x, present, _ = load_batch(paths[b0:b0 + batch])
        f = model.features(x)
        out.append(np.asarray(model.regions(f), dtype=np.float32))
    return np.concatenate(out)


def ridge_acc(xtr, ytr, xte, yte, ncls, lam=(0.1, 1, 10, 100, 1000)):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    Y = np.eye(ncls)[ytr]
    best = None
    n = len(xtr)
    fold = np.arange(n) % 3
    for l in lam:
        c = 0
        for f in range(3):
            a, h = fold != f, fold == f
            W = np.linalg.solve(xtr[a].T @ xtr[a] + l * np.eye(xtr.shape[1]), xtr[a].T @ (Y[a] - Y[a].mean(0)))
            c += ((xtr[h] @ W).argmax(1) == ytr[h]).sum()
        if best is None or c >= best[0]:
            best = (c, l)
    l = best[1]
    W = np.linalg.solve(xtr.T @ xtr + l * np.eye(xtr.shape[1]), xtr.T @ (Y - Y.mean(0)))
    return float(((xte @ W).argmax(1) == yte).mean()), l


def probes(data, G, ids, meta):
    """G: dict split -> (N, R, C) for ids[split]."""
    out = {}
    tr, te = G["train"], G["test"]
    def lab(split):
        return np.array([SCENES.index(meta[i]["scene"]) for i in ids[split]])
    ytr, yte = lab("train"), lab("test")
    # cosine between regions of one image, and between images
    x = te.astype(np.float64)
    xn = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-9)
    cos_r = np.einsum("nrc,nsc->nrs", xn[:50], xn[:50])
    out["cos_regions"] = float((cos_r.sum((1, 2)) - 49).mean() / (49 * 48))
    m = x.mean(1)
    mn = m / np.linalg.norm(m, axis=-1, keepdims=True)
    cm = mn @ mn.T
    out["cos_image_means"] = float((cm.sum() - len(mn)) / (len(mn) * (len(mn) - 1)))
    a = ytr < 4
    b = yte < 4
    out["mean_probe"], _ = ridge_acc(tr.mean(1)[a], ytr[a], te.mean(1)[b], yte[b], 4)
    keytr = np.stack([tr[n, meta[i]["cells"]].mean(0) for n, i in enumerate(ids["train"]) if meta[i]["cells"]])
    keyte = np.stack([te[n, meta[i]["cells"]].mean(0) for n, i in enumerate(ids["test"]) if meta[i]["cells"]])
    out["key_probe"], _ = ridge_acc(keytr, ytr[a], keyte, yte[b], 4)
    # log1p variants
    out["mean_probe_log1p"], _ = ridge_acc(np.log1p(np.maximum(tr, 0)).mean(1)[a], ytr[a],
                                           np.log1p(np.maximum(te, 0)).mean(1)[b], yte[b], 4)
    # size of the type signal in the mean relative to total variation (between-class var / total var of mean)
    mtr = tr.mean(1)[a]
    cls_means = np.stack([mtr[ytr[a] == k].mean(0) for k in range(4)])
    out["mean_between_over_total"] = float(cls_means.var(0).sum() / mtr.var(0).sum())
    sd_tr = tr.reshape(-1, tr.shape[-1]); mu_c, sd_c = sd_tr.mean(0), sd_tr.std(0) + 1e-6
    zs = ((tr - mu_c) / sd_c).mean(1)[a]
    cz = np.stack([zs[ytr[a] == k].mean(0) for k in range(4)])
    out["std_mean_between_over_total"] = float(cz.var(0).sum() / zs.var(0).sum())
    out["mean_norm_over_std"] = float(np.linalg.norm(mtr.mean(0)) / np.sqrt(mtr.var(0).sum()))
    return out


VARIANTS = {"v2": {}, "v3": {"CLUTTER": (4, 10)}, "v3b": {"CLUTTER": (4, 10), "KEY_WIDTH": (3.4, 4.4),
                                                                    "KEY_MAX_HEIGHT": 5.0},
            "v3c": {"KEY_WIDTH": (3.4, 4.4), "KEY_MAX_HEIGHT": 5.0}}


def variant(tag):
    from minimner.data.synthetic import scenes
    for k, v in VARIANTS.get(tag.split("-")[0], {}).items():
        setattr(scenes, k, v)


def features_exp(tag, sizes=None, data_kw=None, recal=False, seed=0):
    variant(tag)
    data = ROOT / f"data-{tag}"
    t0 = time.time()
    s = generate(data, seed=seed, sizes=sizes, **(data_kw or {}))
    meta = json.loads((data / "meta.json").read_text())["images"]
    ids = {sp: [i for i, m in meta.items() if m["split"] == sp and m["image"]] for sp in ("train", "test")}
    paths = {sp: [data / "images" / f"{i}.jpg" for i in v] for sp, v in ids.items()}
    t1 = time.time()
    model = resnet(seed, paths["train"] if recal else None)
    t2 = time.time()
    G = {sp: grids(model, paths[sp]) for sp in ("train", "test")}
    t3 = time.time()
    p = probes(data, G, ids, meta)
    p.update(tag=tag, recal=recal, t_gen=round(t1 - t0, 1), t_recal=round(t2 - t1, 1), t_feat=round(t3 - t2, 1))
    return p


def prep(tag, recal=True, sizes=None, data_kw=None, seed=0):
    from minimner.cli import main as cli
    variant(tag)
    data = ROOT / f"data-{tag}"
    generate(data, seed=seed, sizes=sizes, **(data_kw or {}))
    meta = json.loads((data / "meta.json").read_text())["images"]
    w = ROOT / f"resnet-{tag}-{'recal' if recal else 'raw'}.npz"
    if not w.exists():
        paths = [data / "images" / f"{i}.jpg" for i, m in meta.items() if m["split"] == "train" and m["image"]]
        model = resnet(seed, paths if recal else None)
        write_npz_atomic(w, {k: np.asarray(backend.asnumpy(v)) for k, v in model.state_dict().items()})
    feats = ROOT / f"feat-{tag}-{'recal' if recal else 'raw'}"
    rc = cli(["features", "--images", str(data / "images"), "--ids", str(data), "--arch", "resnet18", "--weights",
              str(w), "--out", str(feats), "--no-progress"])
    assert rc == 0
    return data, feats


def standardise_copy(src, dst):
    """A copy of a features folder with every channel standardised by the train split's region mean/std."""
    import shutil
    src, dst = Path(src), Path(dst)
    tr = sorted((src / "train").glob("*.npy"))
    X = np.stack([np.load(p) for p in tr]).astype(np.float64)        # (N, R, C)
    mu, sd = X.mean((0, 1)), X.std((0, 1)) + 1e-6
    for split in ("train", "valid", "test"):
        (dst / split).mkdir(parents=True, exist_ok=True)
        for p in (src / split).glob("*.npy"):
            np.save(dst / split / p.name, ((np.load(p) - mu) / sd).astype(np.float32))
    for f in ("features.json", "summary.json"):
        if (src / f).exists():
            shutil.copy(src / f, dst / f)


def prep2(tag, sizes, ncal=128, seed=0, data_kw=None):
    """Data + calibrated ResNet (ncal train pictures) + features + standardised copy."""
    from minimner.cli import main as cli
    from minimner.cli.demo import _resnet_weights
    variant(tag)
    data = ROOT / f"data-{tag}"
    generate(data, seed=seed, sizes=sizes, **(data_kw or {}))
    meta = json.loads((data / "meta.json").read_text())["images"]
    pics = [data / "images" / f"{i}.jpg" for i, m in meta.items() if m["split"] == "train" and m["image"]][:ncal]
    t = time.time()
    w = _resnet_weights(ROOT / f"resnet-{tag}-cal{ncal}.npz", seed, pics)
    t_cal = time.time() - t
    feats = ROOT / f"feat-{tag}-cal{ncal}"
    t = time.time()
    assert cli(["features", "--images", str(data / "images"), "--ids", str(data), "--arch", "resnet18", "--weights",
                str(w), "--out", str(feats), "--no-progress"]) == 0
    t_feat = time.time() - t
    standardise_copy(feats, str(feats) + "-std")
    print(json.dumps({"t_cal": t_cal, "t_feat": t_feat, "cpu": time.process_time()}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prep":
        t = time.time(); print(prep(sys.argv[2], recal=sys.argv[3] == "recal"), time.time() - t)
    if cmd == "std":
        standardise_copy(sys.argv[2], sys.argv[3])
    if cmd == "probe":
        tag = sys.argv[2]
        for recal in ((False, True) if len(sys.argv) < 4 else (sys.argv[3] == "recal",)):
            print(json.dumps(features_exp(tag, sizes={"train": 400, "valid": 10, "test": 200}, recal=recal)), flush=True)
    if cmd == "prep2":
        prep2(sys.argv[2], json.loads(sys.argv[3]), ncal=int(sys.argv[4]))
