"""Issue-18 diagnostic: does the fused input at the entity word linearly encode the picture's type (at init / ckpt)?"""
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from exp18 import ridge_acc
from minimner import backend
from minimner.convert.bert import default_minilm_dir
from minimner.data.batching import encode_sentences, iterate_batches
from minimner.data.conll import read_conll
from minimner.data.labels import NUM_TAGS
from minimner.data.multimodal import ImageFeatures, MultimodalSource
from minimner.models.mgcmt import MGCMTConfig
from minimner.train import _build_model
from minimner.tokenization import BertWordPieceTokenizer
from minimner.vision.objects import load_objects

TYPES = ("PER", "LOC", "ORG", "MISC")


def collect(model, sents, x, src, meta):
    cap = {}
    orig = model.fusion.forward
    def wrap(*a):
        cap["in"] = [backend.asnumpy(t) for t in a]
        out = orig(*a)
        cap["out"] = backend.asnumpy(out)
        return out
    model.fusion.forward = wrap
    feats = {k: [] for k in ("u_img", "u_imgtxt", "u_obj", "fv", "m_only")}
    ys = []
    model.eval()
    for batch in iterate_batches(x, 32, shuffle=False):
        inp = src.inputs(batch)
        model.emissions(batch.input_ids, batch.attention_mask, None, inp["image"], inp["objects"],
                        region_mask=inp["region_mask"])
        for b, s in enumerate(batch.sentences):
            m = meta.get(s.image_id, {})
            if not m.get("image_spans") or not m.get("image") or m.get("misleading"):
                continue
            w = m["image_spans"][0][0]
            piece = int(backend.asnumpy(batch.first_piece)[b, w])
            u = cap["in"]
            feats["u_img"].append(u[0][b, piece]); feats["u_imgtxt"].append(u[1][b, piece])
            feats["u_obj"].append(u[2][b, piece]); feats["fv"].append(cap["out"][b, piece])
            ys.append(TYPES.index(m["gold"]))
    model.fusion.forward = orig
    return {k: np.stack(v) for k, v in feats.items() if v}, np.array(ys)


if __name__ == "__main__":
    data, featdir = Path(sys.argv[1]), sys.argv[2]
    ckpt = sys.argv[3] if len(sys.argv) > 3 else None
    meta = json.loads((data / "meta.json").read_text())["images"]
    feats = ImageFeatures(featdir)
    objs = load_objects(data / "objects.json")
    bert_src = default_minilm_dir()
    mcfg = MGCMTConfig(aug="none", image_dim=feats.channels, regions=feats.regions).to_dict()
    model = _build_model({}, NUM_TAGS, 0.1, backend.rng(1), bert_src=bert_src, mgcmt_config=mcfg)
    if ckpt:
        from minimner.checkpoint import load_checkpoint
        model.load_state_dict(load_checkpoint(ckpt)[0])
    tok = BertWordPieceTokenizer.from_pretrained(bert_src)
    R = {}
    for split, n in (("train", 400), ("test", 300)):
        s = read_conll(data / f"{split}.txt")[:n]
        R[split] = collect(model, s, encode_sentences(tok, s), MultimodalSource(split, feats, objs), meta)
    (ftr, ytr), (fte, yte) = R["train"], R["test"]
    out = {}
    for k in ftr:
        out[k] = ridge_acc(ftr[k].astype(np.float64), ytr, fte[k].astype(np.float64), yte, 4)[0]
        # how much of u's variance across tweets is image-driven: between-type var / total
        cm = np.stack([ftr[k][ytr == c].mean(0) for c in range(4)])
        out[k + "_between/total"] = round(float(cm.var(0).sum() / ftr[k].var(0).sum()), 4)
    print(json.dumps({"n": [len(ytr), len(yte)], **out}))
