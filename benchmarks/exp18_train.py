"""Issue-18 research: train MGCMT (or text-CRF) with library pieces; per-epoch dev scores + channel ablations."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from minimner import backend
from minimner.convert.bert import default_minilm_dir
from minimner.data.batching import encode_sentences, iterate_batches
from minimner.data.conll import read_conll
from minimner.data.labels import NUM_TAGS
from minimner.data.multimodal import ImageFeatures, MultimodalSource
from minimner.metrics import get_entities
from minimner.models.mgcmt import MGCMTConfig
from minimner.optim import AdamW, linear_warmup_decay
from minimner.tokenization import BertWordPieceTokenizer
from minimner.train import TrainConfig, _build_model, evaluate_examples, group_learning_rates, train_step
from minimner.vision.objects import load_objects


class Ablated(MultimodalSource):
    def __init__(self, base, image_remap=None, object_remap=None, no_pixels=False, no_objects=False):
        super().__init__(base.split, base.features, base.objects, slots=base.slots)
        self.base, self.ir, self.orm, self.np_, self.no_ = base, image_remap, object_remap, no_pixels, no_objects

    def inputs(self, batch, dtype=np.float32):
        a = MultimodalSource(self.split, None if self.np_ else self.features, self.objects, remap=self.ir,
                             slots=self.slots).inputs(batch, dtype)
        b = MultimodalSource(self.split, None, None if self.no_ else self.objects, remap=self.orm,
                             slots=self.slots).inputs(batch, dtype)
        return {"image": a["image"], "region_mask": a["region_mask"], "objects": b["objects"]}


def cyclic(ids, seed):
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {ids[perm[k]]: ids[perm[(k + 1) % len(ids)]] for k in range(len(ids))}


def image_decided(sents, pred, meta):
    """Recall on ambiguous entities whose picture shows the gold type's key object; + misleading/no-picture."""
    acc = {"decided": [0, 0], "misleading": [0, 0], "no_picture": [0, 0]}
    for s, p in zip(sents, pred):
        m = meta.get(s.image_id, {})
        spans = m.get("image_spans", [])
        if not spans:
            continue
        kind = "no_picture" if not m.get("image") else "misleading" if m.get("misleading") else "decided"
        gold = {(a, b): t for t, a, b in get_entities(s.tags)}
        got = {(a, b): t for t, a, b in get_entities(p)}
        for a, b in spans:
            if (a, b) in gold:
                acc[kind][1] += 1
                acc[kind][0] += got.get((a, b)) == gold[(a, b)]
    return {k: (h / n if n else None) for k, (h, n) in acc.items()} | {"n": acc["decided"][1]}


def arms(model, sents, x, src, meta, which=("mm", "no_pixels", "shuf_pixels", "no_objects", "shuf_objects")):
    out = {}
    if src is None:
        which = ("mm",)
    ids_img = sorted({s.image_id for s in sents if s.image_id and meta.get(s.image_id, {}).get("image")})
    ids_obj = sorted({s.image_id for s in sents if s.image_id and src is not None and src.objects is not None
                      and (s.image_id + ".jpg") in src.objects or (src is not None and src.objects is not None
                      and s.image_id in src.objects)})
    for w in which:
        s = src
        if w == "no_pixels":
            s = Ablated(src, no_pixels=True)
        elif w == "no_objects":
            s = Ablated(src, no_objects=True)
        elif w == "shuf_pixels":
            s = Ablated(src, image_remap=cyclic(ids_img, 7))
        elif w == "shuf_objects":
            s = Ablated(src, object_remap=cyclic(ids_img, 7))
        pred, sc = evaluate_examples(model, sents, x, 64, True, progress=False, source=s)
        out[w] = {"f1": round(sc["default"]["micro"]["f1"], 4),
                  **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in image_decided(sents, pred, meta).items()}}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--features", default=None)
    ap.add_argument("--model", default="mgcmt")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--bs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-head", type=float, default=None)
    ap.add_argument("--lr-crf", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bert", default=None)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--no-objects", action="store_true")
    ap.add_argument("--mgcmt", default="{}")
    ap.add_argument("--test", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    data = Path(a.data)
    meta = json.loads((data / "meta.json").read_text())["images"]
    tr, dv = read_conll(data / "train.txt"), read_conll(data / "valid.txt")
    if a.limit:
        tr = tr[:a.limit]
    bert_src = Path(a.bert) if a.bert else default_minilm_dir()
    rng = backend.rng(a.seed)
    mm = a.model == "mgcmt"
    feats = ImageFeatures(a.features) if (mm and a.features) else None
    objs = load_objects(data / "objects.json") if (mm and not a.no_objects) else None
    mcfg = None
    if mm:
        flags = json.loads(a.mgcmt)
        if feats is not None:
            flags.update(image_dim=feats.channels, regions=feats.regions)
        mcfg = MGCMTConfig(aug="none", **flags).to_dict()
    model = _build_model({}, NUM_TAGS, 0.1, rng, bert_src=bert_src, mgcmt_config=mcfg)
    tok = BertWordPieceTokenizer.from_pretrained(bert_src)
    trx, dvx = encode_sentences(tok, tr), encode_sentences(tok, dv)
    trs = MultimodalSource("train", feats, objs) if mm else None
    dvs = MultimodalSource("valid", feats, objs) if mm else None
    cfg = TrainConfig(data_dir=str(data), out="/tmp/x", lr=a.lr, lr_head=a.lr_head, lr_crf=a.lr_crf)
    rates = group_learning_rates(model, cfg)
    opt = AdamW(model.named_parameters(), lr=a.lr, weight_decay=0.01, no_decay=("bias", "LayerNorm.weight"),
                lr_scale={n: r / a.lr for n, r in rates.items()})
    spe = math.ceil(len(trx) / a.bs)
    total = a.epochs * spe
    wu = int(a.warmup * total)
    step = 0
    t0 = time.time()
    cpu0 = time.process_time()
    model.zero_grad()
    for ep in range(a.epochs):
        model.train()
        losses = []
        for batch in iterate_batches(trx, a.bs, shuffle=True, rng=np.random.default_rng([a.seed, ep])):
            lr = a.lr * linear_warmup_decay(step, total, wu)
            losses.append(train_step(model, batch, opt, lr, 1.0, source=trs))
            step += 1
        t1 = time.time()
        res = arms(model, dv, dvx, dvs, meta, which=("mm", "no_pixels", "shuf_pixels") if mm else ("mm",))
        extra = {}
        if mm:
            crf = backend.asnumpy(model.crf.transitions.data) if hasattr(model.crf, "transitions") else None
            g = {k: float(np.asarray(backend.asnumpy(v)).mean()) for k, v in model.gates.items()} if model.gates else {}
            extra = {"gates": {k: round(v, 3) for k, v in g.items()}}
        print(json.dumps({"epoch": ep + 1, "loss": round(float(np.mean(losses)), 4), "train_s": round(t1 - t0, 1),
                          "cpu_s": round(time.process_time() - cpu0, 1), "dev": res, **extra}), flush=True)
    if a.test:
        te = read_conll(data / "test.txt")
        tes = MultimodalSource("test", feats, objs) if mm else None
        print(json.dumps({"test": arms(model, te, encode_sentences(tok, te), tes, meta)}), flush=True)
    if a.out:
        from minimner.checkpoint import save_checkpoint
        save_checkpoint(Path(a.out), model.state_dict(), {"args": vars(a)})


if __name__ == "__main__":
    main()
