"""GPU check: minimner on CuPy against minimner on NumPy (parity) and against PyTorch CUDA (time).

Run it on a machine with CuPy and a CUDA device::

    python benchmarks/gpu.py              # MiniLM sizes, B = 24, T = 64 -> benchmarks/results/gpu.{json,md}
    python benchmarks/gpu.py --quick      # tiny sizes, 2 repeats (a smoke run)
    python benchmarks/gpu.py --no-time    # the parity checks only

Without CuPy or without a visible device it says so and exits 0, having measured nothing.
``--device strict`` runs the same script on the CPU under CuPy's rules (the ``strict``
backend) against torch on the CPU: that is how the test suite exercises this script's
device path without a GPU; it never writes results.

1. **Parity**, float32, the same inputs and weights on the host (NumPy) and on the device,
   every verdict an assertion (exit status 1 on any failure): the ops (linear, layernorm,
   GELU, softmax, attention, conv2d, embedding; forward and every gradient), the CRF (NLL,
   its gradients, Viterbi paths), BERT forward and backward (every parameter gradient) and
   one MGCMT train step (loss, every parameter gradient) with its decoded paths.
   Differences are ``max |device − host| / max(1, max |host|)`` (gradients: ``/ max |host|``).
2. **Time** against PyTorch on the same device and weights, both sides synchronised after
   each run and interleaved run by run (:func:`_harness.time_pair`): BERT forward+backward
   against ``transformers.BertModel`` (random weights of MiniLM's sizes), and the MGCMT
   train step against the PyTorch formulation of MSCMT in ``tests/models/torch_mscmt.py``
   (checked against the authors' module itself in ``tests/models/test_torch_reference.py``).
"""
from __future__ import annotations

import argparse
import sys
from collections import OrderedDict

import _harness as H  # puts the repository root on sys.path

import numpy as np  # noqa: E402

from minimner import backend  # noqa: E402

#: Parity limits: forward values, and gradients relative to their largest entry.
FWD_TOL, GRAD_TOL = 1e-4, 1e-3
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
              max_position_embeddings=512)
TINY = dict(vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def _diff(dev, host, grad=False) -> float:
    d, h = backend.asnumpy(dev).astype(np.float64), np.asarray(host, dtype=np.float64)
    assert d.shape == h.shape, (d.shape, h.shape)
    scale = np.abs(h).max() if grad else max(1.0, np.abs(h).max())
    return float(np.abs(d - h).max() / scale) if d.size and scale > 0 else float(np.abs(d).max(initial=0.0))


def _on_both(fn, *host_args, device):
    """``fn`` on the host arrays and on their device copies; returns (host result, device result)."""
    dev_args = [backend.asarray(a, backend=device) if isinstance(a, np.ndarray) else a for a in host_args]
    return fn(*host_args), fn(*dev_args)


# ----------------------------------------------------------------------------- parity
def op_parity(device: str, rng) -> dict:
    """Each op's forward and backward on both backends: {op: worst scaled difference}."""
    from minimner.ops import attention, conv2d, embedding, gelu, layernorm, linear, softmax

    f32 = np.float32
    x = rng.standard_normal((4, 6, 16)).astype(f32)                                # (B, T, C)
    w, b = rng.standard_normal((8, 16)).astype(f32), rng.standard_normal(8).astype(f32)
    g = lambda *s: rng.standard_normal(s).astype(f32)                              # noqa: E731
    mask = np.arange(6)[None] < np.array([6, 4, 2, 1])[:, None]                    # (B, T) prefix masks
    cases = {
        "linear": (lambda x, w, b, dy: (lambda r: (r[0], *linear.linear_backward(dy, r[1])))(
            linear.linear_forward(x, w, b)), (x, w, b, g(4, 6, 8))),
        "layernorm": (lambda x, w, b, dy: (lambda r: (r[0], *layernorm.layernorm_backward(dy, r[1])))(
            layernorm.layernorm_forward(x, w, b, 1e-12)), (x, g(16), g(16), g(4, 6, 16))),
        "gelu": (lambda x, dy: (lambda r: (r[0], gelu.gelu_backward(dy, r[1])))(gelu.gelu_forward(x)),
                 (x, g(4, 6, 16))),
        "softmax": (lambda x, dy: (lambda r: (r[0], softmax.softmax_backward(dy, r[1])))(
            softmax.softmax_forward(x, -1)), (x, g(4, 6, 16))),
        "attention": (lambda q, k, v, m, dy: (lambda r: (r[0], r[1], *attention.attention_backward(dy, r[2])))(
            attention.attention_forward(q, k, v, m, 4)), (x, g(4, 6, 16), g(4, 6, 16), mask, g(4, 6, 16))),
        "conv2d": (lambda x, w, b, dy: (lambda r: (r[0], *conv2d.conv2d_backward(dy, r[1])))(
            conv2d.conv2d_forward(x, w, b, stride=2, padding=1)), (g(2, 3, 9, 9), g(5, 3, 3, 3), g(5), g(2, 5, 5, 5))),
        "embedding": (lambda ids, w, dy: (lambda r: (r[0], embedding.embedding_backward(dy, r[1])))(
            embedding.embedding_forward(ids, w, padding_idx=0)),
            (rng.integers(0, 10, (4, 6)), g(10, 16), g(4, 6, 16))),
    }
    out = {}
    for name, (fn, args) in cases.items():
        host, dev = _on_both(fn, *args, device=device)
        out[name] = max(_diff(d, h, grad=i > 0) for i, (d, h) in enumerate(zip(dev, host)) if h is not None)
    return out


def crf_parity(device: str, rng) -> dict:
    from minimner.nn.crf import CRF

    B, T, K = 6, 20, 13
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tags = rng.integers(0, K, (B, T))
    mask = np.arange(T)[None] < rng.integers(1, T + 1, B)[:, None]
    res = {}
    for name in ("numpy", device):
        crf = CRF(K, rng=np.random.default_rng(0)).to(name)
        put = (lambda a: backend.asarray(a, backend=name))
        loss = crf.forward(put(em), put(tags), put(mask))
        dem = crf.backward()
        res[name] = (loss, dem, *(p.grad for p in crf.parameters()), crf.decode(put(em), put(mask)))
    host, dev = res["numpy"], res[device]
    assert dev[-1] == host[-1], "Viterbi paths differ"
    return {"crf": max(_diff(d, h, grad=i > 0) for i, (d, h) in enumerate(zip(dev[:-1], host[:-1])))}


def bert_parity(device: str, cfg: dict, B: int, T: int, rng) -> dict:
    from minimner.models.bert import BertConfig, BertModel

    ids = rng.integers(3, cfg["vocab_size"], (B, T))
    mask = np.arange(T)[None] < rng.integers(T // 2, T + 1, B)[:, None]
    dout = rng.standard_normal((B, T, cfg["hidden_size"])).astype(np.float32)
    res = {}
    for name in ("numpy", device):
        m = BertModel(BertConfig.from_dict(cfg), add_pooling_layer=False, rng=np.random.default_rng(0)).to(name).eval()
        put = (lambda a: backend.asarray(a, backend=name))
        out = m(put(ids), put(mask))
        m.backward(put(dout))
        res[name] = (out, _grads(m))
    (h_out, h_g), (d_out, d_g) = res["numpy"], res[device]
    return {"bert forward": _diff(d_out, h_out), "bert gradients": max(_diff(d, h, True) for d, h in zip(d_g, h_g))}


def mgcmt_parity(device: str, cfg: dict, x: dict) -> dict:
    res = {}
    for name in ("numpy", device):
        m = _mgcmt(cfg).to(name).eval()              # eval: no dropout, so both sides see the same function
        kw = {k: backend.asarray(v, backend=name) for k, v in x.items()}
        labels, aux = kw.pop("labels"), kw.pop("aux_labels")
        loss = m.loss(**kw, labels=labels, aux_labels=aux)
        m.backward()
        res[name] = (loss, _grads(m), m.decode(**kw, constrained=False))
    (h_loss, h_g, h_paths), (d_loss, d_g, d_paths) = res["numpy"], res[device]
    assert d_paths == h_paths, "MGCMT decoded paths differ"
    return {"mgcmt loss": abs(float(d_loss) - float(h_loss)) / abs(float(h_loss)),
            "mgcmt gradients": max(_diff(d, h, True) for d, h in zip(d_g, h_g))}


def _grads(model) -> list:
    """Every parameter gradient but the attention key biases': those are exactly zero in exact
    arithmetic (softmax is shift-invariant over keys), so both sides hold round-off only."""
    return [p.grad for n, p in model.named_parameters() if not n.endswith("attention.self.key.bias")]


# ----------------------------------------------------------------------------- the models
def _bert_dict(cfg: dict) -> dict:
    return dict(cfg, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                attention_probs_dropout_prob=0.1, initializer_range=0.02)


def _mgcmt(cfg: dict, state_dict=None):
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.mgcmt import MGCMT, MGCMTConfig

    rng = np.random.default_rng(0)
    if state_dict is not None:
        return MGCMT.from_original(state_dict, bert_config={"num_attention_heads": cfg["num_attention_heads"]},
                                   rng=rng)
    return MGCMT(BertModel(BertConfig.from_dict(_bert_dict(cfg)), add_pooling_layer=False, rng=rng), MGCMTConfig(),
                 rng=rng)


def _inputs(cfg: dict, B: int, T: int, O: int = 5, seed: int = 1) -> dict:
    from mgcmt import make_inputs  # benchmarks/mgcmt.py: the same batch as the CPU benchmark

    return make_inputs(B, T, O, cfg["vocab_size"], seed=seed)


# ----------------------------------------------------------------------------- timing
def timings(device: str, cfg: dict, B: int, T: int, repeats: int, warmup: int) -> dict:
    """BERT fwd+bwd and the MGCMT train step, minimner on ``device`` vs torch on the matching device."""
    import torch
    import transformers

    from tests.models.torch_mscmt import TorchMSCMT

    tdev = "cuda" if device == "cupy" else "cpu"

    def tsync():
        if tdev == "cuda":
            torch.cuda.synchronize()

    rng = np.random.default_rng(2)
    out = OrderedDict()
    # BERT: the same random weights on both sides.
    bcfg = _bert_dict(cfg)
    ref = transformers.BertModel(transformers.BertConfig(**bcfg, attn_implementation="eager"),
                                 add_pooling_layer=False).to(tdev)
    from minimner.models.bert import BertConfig, BertModel

    ours = BertModel(BertConfig.from_dict(bcfg), add_pooling_layer=False, rng=np.random.default_rng(0))
    ours.load_state_dict({k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()})
    ours.to(device).train()
    ref.train()
    ids = rng.integers(3, cfg["vocab_size"], (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    dout = rng.standard_normal((B, T, cfg["hidden_size"])).astype(np.float32)
    d_ids, d_mask, d_dout = (backend.asarray(a, backend=device) for a in (ids, mask, dout))
    t_ids, t_mask, t_dout = (torch.from_numpy(a).to(tdev) for a in (ids, mask, dout))

    def ours_bert():
        ours.zero_grad()
        ours(d_ids, d_mask)
        ours.backward(d_dout)
        backend.synchronize()

    def ref_bert():
        ref.zero_grad(set_to_none=False)
        (ref(input_ids=t_ids, attention_mask=t_mask).last_hidden_state * t_dout).sum().backward()
        tsync()

    out["BERT forward+backward"] = H.time_pair(ours_bert, ref_bert, repeats, warmup).row("torch", best=True)
    # MGCMT: the PyTorch formulation's own init, moved into minimner by key.
    torch.manual_seed(0)
    tref = TorchMSCMT(bcfg, char_vocab_size=15, gmf_hidden=768).to(tdev).train()   # 768: the original GMF width
    model = _mgcmt(cfg, {k: v.detach().cpu().numpy() for k, v in tref.state_dict().items()}).to(device).train()
    x = _inputs(cfg, B, T)
    kw = {k: backend.asarray(v, backend=device) for k, v in x.items()}
    labels, aux = kw.pop("labels"), kw.pop("aux_labels")
    tx = {k: torch.from_numpy(v).to(tdev) for k, v in x.items()}

    def ours_step():
        model.zero_grad()
        model.loss(**kw, labels=labels, aux_labels=aux)
        model.backward()
        backend.synchronize()

    def ref_step():
        tref.zero_grad(set_to_none=True)
        tref(tx["input_ids"], tx["input_mask"], tx["aug"], tx["image"], tx["objects"], labels=tx["labels"],
             auxlabels=tx["aux_labels"])["loss"].backward()
        tsync()

    out["MGCMT train step"] = H.time_pair(ours_step, ref_step, repeats, warmup).row("torch", best=True)
    return out


# ----------------------------------------------------------------------------- main
def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cupy", "strict"), default="cupy",
                    help="'cupy' (default): the GPU; 'strict': CuPy's rules on the CPU, to test this script")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--no-time", action="store_true", help="the parity checks only")
    return H.add_common(ap, quick="tiny BERT sizes, B = 2, T = 8, 2 repeats", repeats=10, warmup=3).parse_args(argv)


def main(argv=None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse(raw)
    if args.device == "cupy" and not backend.cupy_available():
        why = "CuPy is not installed" if not backend.CUPY_IMPORTED else "CuPy is installed but no CUDA device is visible"
        print(f"gpu.py: {why}; nothing was checked or timed (run it on a machine with a CUDA GPU and CuPy).")
        return 0
    cfg = dict(TINY if args.quick else MINILM)
    B, T = (2, 8) if args.quick else (args.batch, args.length)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    rng = np.random.default_rng(0)
    diffs = op_parity(args.device, rng)
    diffs.update(crf_parity(args.device, rng))
    diffs.update(bert_parity(args.device, _bert_dict(cfg), B, T, rng))
    diffs.update(mgcmt_parity(args.device, cfg, _inputs(cfg, B, T)))
    limits = {k: (GRAD_TOL if "gradient" in k or k == "crf" else FWD_TOL) for k in diffs}
    limits["mgcmt loss"] = 1e-5
    bad = [f"{k} {v:.2e} > {limits[k]}" for k, v in diffs.items() if not v <= limits[k]]
    result = {"device": args.device, "B": B, "T": T, "sizes": "tiny" if args.quick else "MiniLM", "bert": cfg,
              "parity": diffs, "limits": limits, "time": None, "repeats": repeats,
              "command": "python benchmarks/gpu.py" + "".join(" " + a for a in raw),
              "machine": H.machine(torch=True, transformers=True)}
    if bad:
        print(markdown(result))
        print("parity FAILED: " + "; ".join(bad), file=sys.stderr)
        return 1
    if not args.no_time:
        result["time"] = timings(args.device, cfg, B, T, repeats, warmup)
    write = args.device == "cupy" and not args.no_write and not args.quick and not args.no_time
    H.publish(result, markdown(result), "gpu", args.out, write=write)
    return 0


def markdown(r: dict) -> str:
    """The report (``benchmarks/results/gpu.md``) of a record."""
    lines = [f"# minimner on {r['device']} vs NumPy, and vs PyTorch on the same device", "",
             f"Parity, float32, B = {r['B']}, T = {r['T']}, {r['sizes']} sizes (max |device − host| / max(1, |host|); "
             "gradients relative to their largest entry):", "",
             "| check | max scaled difference | limit |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2e} | {r['limits'][k]:g} |" for k, v in r["parity"].items()]
    if r["time"]:
        lines += ["", f"Time (ms, median of {r['repeats']} interleaved runs, each side synchronised):", "",
                  "| phase | minimner | torch | ratio |", "|---|---|---|---|"]
        lines += [f"| {k} | {t['minimner_ms']:.2f} | {t['torch_ms']:.2f} | {t['ratio']:.2f} |"
                  for k, t in r["time"].items()]
    lines += ["", f"Command: `{r['command']}`.", "", H.machine_line(r["machine"]), ""]
    return "\n".join(lines)

if __name__ == "__main__":
    sys.exit(main())
