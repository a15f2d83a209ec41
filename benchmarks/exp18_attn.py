"""Issue-18: the word's own text->image attention on the key object (entity vs O words), gates, CRF grammar."""
import json, sys
from pathlib import Path
import numpy as np
from minimner import backend
from minimner.checkpoint import load_checkpoint
from minimner.convert.bert import default_minilm_dir
from minimner.data.batching import encode_sentences, iterate_batches
from minimner.data.conll import read_conll
from minimner.data.labels import NUM_TAGS, MAIN_TAGS
from minimner.data.multimodal import ImageFeatures, MultimodalSource
from minimner.models.mgcmt import MGCMTConfig
from minimner.train import _build_model
from minimner.tokenization import BertWordPieceTokenizer
from minimner.vision.objects import load_objects


def measure(model, sents, x, src, meta):
    ent_hit = ent_n = o_hit = o_n = 0
    chance = []
    gates = {"ent": [], "o": []}
    model.eval()
    for batch in iterate_batches(x, 32, shuffle=False):
        inp = src.inputs(batch)
        model.emissions(batch.input_ids, batch.attention_mask, None, inp["image"], inp["objects"],
                        region_mask=inp["region_mask"])
        att = backend.asnumpy(model.attention["txt2img"]).mean(1)              # (B, T, R)
        gi = backend.asnumpy(model.gates["image"]).mean(-1) if "image" in model.gates else None  # (B, T)
        fp = backend.asnumpy(batch.first_piece)
        for b, s in enumerate(batch.sentences):
            ents = {k for k, t in enumerate(s.tags) if t != "O"}
            if gi is not None and meta.get(s.image_id, {}).get("image"):
                for w in range(len(s.words)):
                    gates["ent" if w in ents else "o"].append(gi[b, fp[b, w]])
            m = meta.get(s.image_id, {})
            if not (m.get("image") and m.get("cells") and m.get("image_spans")) or m.get("misleading"):
                continue
            cells = set(m["cells"])
            chance.append(len(cells) / att.shape[-1])
            w = m["image_spans"][0][0]
            ent_hit += int(att[b, fp[b, w]].argmax()) in cells
            ent_n += 1
            for k in range(len(s.words)):
                if k not in ents:
                    o_hit += int(att[b, fp[b, k]].argmax()) in cells
                    o_n += 1
    crf = backend.asnumpy(model.crf.transitions.data)
    O = MAIN_TAGS.index("O")
    oi = [crf[O, MAIN_TAGS.index(t)] for t in MAIN_TAGS if t.startswith("I-")]
    bi = [crf[MAIN_TAGS.index("B-" + t[2:]), MAIN_TAGS.index(t)] for t in MAIN_TAGS if t.startswith("I-")]
    return {"entity_peak_on_key_object": ent_hit / ent_n, "non_entity_peak_on_key_object": o_hit / o_n,
            "chance": float(np.mean(chance)), "n_entities": ent_n, "n_o_words": o_n,
            "gate_image_entity": float(np.mean(gates["ent"])), "gate_image_o": float(np.mean(gates["o"])),
            "crf_O_to_I": float(np.mean(oi)), "crf_B_to_I": float(np.mean(bi))}


if __name__ == "__main__":
    data, featdir, ckpt = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    bert_src = Path(sys.argv[4]) if len(sys.argv) > 4 else default_minilm_dir()
    meta = json.loads((data / "meta.json").read_text())["images"]
    feats = ImageFeatures(featdir)
    objs = load_objects(data / "objects.json")
    mcfg = MGCMTConfig(aug="none", image_dim=feats.channels, regions=feats.regions).to_dict()
    model = _build_model({}, NUM_TAGS, 0.1, backend.rng(1), bert_src=bert_src, mgcmt_config=mcfg)
    model.load_state_dict(load_checkpoint(ckpt)[0])
    tok = BertWordPieceTokenizer.from_pretrained(bert_src)
    te = read_conll(data / "test.txt")
    print(json.dumps(measure(model, te, encode_sentences(tok, te), MultimodalSource("test", feats, objs), meta)))
