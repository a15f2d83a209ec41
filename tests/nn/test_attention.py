"""Tests for minimner.nn.attention: names, gradients, masking properties, torch/transformers parity."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.gradcheck import check_grads, check_module, numerical_grad
from minimner.nn.attention import (BertCrossAttentionLayer, BertCrossEncoder, BertEncoder, BertLayer,
                                   BertSelfAttention, BertSelfEncoder)
from minimner.nn.layers import Dropout

TEMPLATE = [  # docs/parameters.md §2, in transformers' registration order
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias",
]


def _mask(lengths, L):
    return (np.arange(L)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)   # (B, L) prefix mask


def _reseed_dropout(module, seed):
    """Give every dropout a fresh generator with a fixed seed, so repeated forwards draw the same masks."""
    for _, m in module.named_modules():
        if isinstance(m, Dropout):
            m.rng = np.random.default_rng(seed)


def _randomise_layernorms(module, rng):
    """LayerNorm starts at 1/0; perturb it so a gradient check exercises the affine terms too."""
    for name, p in module.named_parameters():
        if "LayerNorm" in name:
            p.data = p.data + rng.standard_normal(p.data.shape).astype(p.data.dtype) * 0.1
            p.grad = np.zeros_like(p.data)


def _gradcheck(module, forward, backward, inputs, rng, h=1e-5):
    """``check_module`` for a transformer block, with the key bias treated apart.

    ∂L/∂b_k is exactly zero in exact arithmetic (adding q·b_k to every key's score is a
    per-row constant, which the softmax cancels), so the analytic value is pure round-off
    (~1e-20) and a relative error against the numerical ~1e-11 is meaningless. Those
    tensors are checked to be zero instead; every other entry goes through
    ``check_grads`` at tolerance 1e-6.
    """
    zero = [n for n, _ in module.named_parameters() if n.endswith("attention.self.key.bias")]
    out = forward(*inputs)
    dout = rng.standard_normal(out.shape)
    module.zero_grad()
    forward(*inputs)
    dins = backward(dout)
    loss = lambda: float((forward(*inputs) * dout).sum())  # noqa: E731
    params = dict(module.named_parameters())
    arrays = {f"input{i}": x for i, x in enumerate(inputs) if x.dtype.kind == "f"}
    analytic = {f"input{i}": dins[i] for i, x in enumerate(inputs) if x.dtype.kind == "f"}
    arrays.update({n: p.data for n, p in params.items() if n not in zero})
    analytic.update({n: p.grad.copy() for n, p in params.items() if n not in zero})
    for n in zero:
        assert np.abs(params[n].grad).max() < 1e-12, n
        assert np.abs(numerical_grad(loss, params[n].data, h)).max() < 1e-8, n
    errs = check_grads(loss, arrays, analytic, h=h)
    return errs, zero


# ------------------------------------------------------------------ structure
def test_state_dict_names_and_shapes():
    layer = BertLayer(8, 2, 32, rng=np.random.default_rng(0))
    sd = layer.state_dict()
    assert list(sd) == TEMPLATE
    assert sd["intermediate.dense.weight"].shape == (32, 8) and sd["output.dense.weight"].shape == (8, 32)
    cross = BertCrossAttentionLayer(8, 2, 32, rng=np.random.default_rng(0))
    assert list(cross.state_dict()) == TEMPLATE                       # docs/parameters.md §2: same names
    enc = BertCrossEncoder(8, 2, 32, num_hidden_layers=2, rng=np.random.default_rng(0))
    assert list(enc.state_dict()) == [f"layer.{i}.{k}" for i in range(2) for k in TEMPLATE]
    assert list(BertSelfEncoder(8, 2, 32).state_dict()) == [f"layer.0.{k}" for k in TEMPLATE]


def test_init_is_bert_or_pytorch_default():
    layer = BertEncoder(64, 4, 256, num_hidden_layers=2, rng=np.random.default_rng(0))
    for name, p in layer.named_parameters():
        assert p.data.dtype == np.float32
        if name.endswith("LayerNorm.weight"):
            assert (p.data == 1).all()
        elif name.endswith("bias"):
            assert (p.data == 0).all()
        else:
            assert abs(p.data.std() - 0.02) < 0.002 and abs(p.data.mean()) < 0.002, name
    default = BertLayer(64, 4, 256, initializer_range=None, rng=np.random.default_rng(0))
    w = default.attention.self.query.weight.data
    assert np.abs(w).max() <= 1 / 8 and w.std() > 0.05                               # U(±1/√64)
    a = BertLayer(16, 2, 32, rng=np.random.default_rng(3)).state_dict()
    b = BertLayer(16, 2, 32, rng=np.random.default_rng(3)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)                                 # the seed decides


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        BertSelfAttention(10, 3)
    layer = BertLayer(8, 2, 16, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 8\)"):
        layer.forward(np.zeros((2, 3, 6), np.float32), None)
    with pytest.raises(ValueError, match="key mask"):
        layer.forward(np.zeros((2, 3, 8), np.float32), np.ones((2, 4), np.int64))
    with pytest.raises(RuntimeError, match="without a pending forward"):
        layer.backward(np.zeros((2, 3, 8), np.float32))
    cross = BertCrossAttentionLayer(8, 2, 16, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"y must have shape"):
        cross.forward(np.zeros((2, 3, 8), np.float32), np.zeros((2, 3, 4), np.float32), None)


# ------------------------------------------------------------------ gradients (float64)
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_gradcheck_bert_layer_every_entry(rng, dropout):
    # σ = 0.5 instead of BERT's 0.02: with tiny weights the softmax is flat and its gradient drowns in noise
    layer = BertLayer(4, 2, 8, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      initializer_range=0.5, rng=np.random.default_rng(1)).double()
    _randomise_layernorms(layer, rng)
    x = rng.standard_normal((2, 3, 4))
    mask = _mask([3, 2], 3)

    def forward(x, mask):
        _reseed_dropout(layer, 5)
        return layer.forward(x, mask)[0]

    errs, zero = _gradcheck(layer, forward, lambda d: (layer.backward(d), None), [x, mask], rng)
    assert set(errs) | set(zero) == {"input0", *TEMPLATE} and max(errs.values()) < 1e-6


def test_gradcheck_cross_layer_every_entry(rng):
    layer = BertCrossAttentionLayer(4, 2, 8, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2,
                                    initializer_range=0.5, rng=np.random.default_rng(2)).double()
    _randomise_layernorms(layer, rng)
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    y_mask = _mask([5, 2], 5)

    def forward(x, y, m):
        _reseed_dropout(layer, 6)
        return layer.forward(x, y, m)[0]

    errs, zero = _gradcheck(layer, forward, lambda d: (*layer.backward(d), None), [x, y, y_mask], rng)
    assert set(errs) | set(zero) == {"input0", "input1", *TEMPLATE} and max(errs.values()) < 1e-6


@pytest.mark.parametrize("directional", [False, True])
def test_gradcheck_encoder_stacks(rng, directional):
    """Two-layer stacks: every entry on tiny shapes, plus one random-direction check (docs/style.md §2)."""
    C, F = (4, 8) if not directional else (16, 32)
    enc = BertEncoder(C, 2, F, num_hidden_layers=2, hidden_dropout_prob=0.1, initializer_range=0.5,
                      rng=np.random.default_rng(3)).double()
    cross = BertCrossEncoder(C, 2, F, num_hidden_layers=2, hidden_dropout_prob=0.1, initializer_range=0.5,
                             rng=np.random.default_rng(4)).double()
    _randomise_layernorms(enc, rng)
    _randomise_layernorms(cross, rng)
    x, y = rng.standard_normal((2, 3, C)), rng.standard_normal((2, 4, C))
    xm, ym = _mask([3, 1], 3), _mask([4, 3], 4)

    def f_enc(x, m):
        _reseed_dropout(enc, 8)
        return enc.forward(x, m)[0]

    def f_cross(x, y, m):
        _reseed_dropout(cross, 9)
        return cross.forward(x, y, m)[0]

    if directional:  # one random direction over every input and parameter jointly
        e1 = check_module(enc, f_enc, lambda d: (enc.backward(d), None), [x, xm], rng, directional=True, h=1e-5)
        e2 = check_module(cross, f_cross, lambda d: (*cross.backward(d), None), [x, y, ym], rng,
                          directional=True, h=1e-5)
    else:
        e1, _ = _gradcheck(enc, f_enc, lambda d: (enc.backward(d), None), [x, xm], rng)
        e2, _ = _gradcheck(cross, f_cross, lambda d: (*cross.backward(d), None), [x, y, ym], rng)
    assert max(e1.values()) < 1e-6 and max(e2.values()) < 1e-6


def test_cross_stack_keeps_key_value_stream_fixed(rng):
    """x_{l+1} = CrossL_l(x_l ← y): layer 2 sees layer 1's output as query and the original y as keys."""
    enc = BertCrossEncoder(8, 2, 16, num_hidden_layers=2, rng=np.random.default_rng(0)).eval()
    x, y = rng.standard_normal((2, 3, 8)).astype(np.float32), rng.standard_normal((2, 5, 8)).astype(np.float32)
    m = _mask([5, 2], 5)
    out, probs = enc.forward(x, y, m)
    h1, p1 = enc.layer[0].forward(x, y, m)
    h2, p2 = enc.layer[1].forward(h1, y, m)
    np.testing.assert_array_equal(out, h2)
    assert len(probs) == 2 and probs[0].shape == (2, 2, 3, 5)
    np.testing.assert_array_equal(probs[1], p2)


def test_dtype_float32_and_backends(xp_name, rng):
    xp = backend.xp()
    layer = BertCrossEncoder(8, 2, 16, rng=backend.rng(0))
    x = xp.asarray(rng.standard_normal((2, 3, 8)), dtype=xp.float32)
    y = xp.asarray(rng.standard_normal((2, 4, 8)), dtype=xp.float32)
    out, probs = layer.forward(x, y, xp.asarray(_mask([4, 1], 4)))
    assert out.dtype == probs[0].dtype == np.float32 and backend.get_xp(out) is xp
    dx, dy = layer.backward(xp.ones_like(out))
    assert dx.dtype == dy.dtype == np.float32 and dx.shape == x.shape and dy.shape == y.shape
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())


# ------------------------------------------------------------------ properties (hypothesis)
cfg = st.tuples(st.integers(1, 3), st.integers(1, 6), st.sampled_from([(1, 4), (2, 8), (4, 16)]),
                st.integers(0, 2**31 - 1))


@settings(max_examples=20, deadline=None)
@given(cfg)
def test_padding_never_changes_unpadded_outputs(s):
    B, L, (H, C), seed = s
    r = np.random.default_rng(seed)
    layer = BertLayer(C, H, 2 * C, rng=np.random.default_rng(seed + 1)).eval()
    x = r.standard_normal((B, L, C)).astype(np.float32)
    lengths = r.integers(1, L + 1, size=B)
    mask = _mask(lengths, L)
    x2 = np.where(mask[:, :, None] == 0, 3 * r.standard_normal(x.shape).astype(np.float32), x)
    a, pa = layer.forward(x, mask)
    b, _ = layer.forward(x2, mask)
    real = mask.astype(bool)
    np.testing.assert_array_equal(a[real], b[real])
    assert np.isfinite(a).all() and (np.abs(a[~real]).sum(-1) > 0).all()   # padded queries still produce output
    assert (pa[np.broadcast_to(mask[:, None, None, :] == 0, pa.shape)] == 0).all()


@settings(max_examples=20, deadline=None)
@given(cfg)
def test_cross_layer_batch_equals_per_example(s):
    B, L, (H, C), seed = s
    r = np.random.default_rng(seed)
    layer = BertCrossAttentionLayer(C, H, 2 * C, rng=np.random.default_rng(seed + 1)).eval()
    x = r.standard_normal((B, 3, C)).astype(np.float32)
    y = r.standard_normal((B, L, C)).astype(np.float32)
    mask = _mask(r.integers(1, L + 1, size=B), L)
    out, probs = layer.forward(x, y, mask)
    for b in range(B):
        n = int(mask[b].sum())
        o1, p1 = layer.forward(x[b:b + 1], y[b:b + 1, :n], None)
        np.testing.assert_allclose(out[b:b + 1], o1, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(probs[b:b + 1, ..., :n], p1, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ transformers parity (float32)
def _config(C=32, H=4, F=64):
    tr = pytest.importorskip("transformers")
    return tr.BertConfig(hidden_size=C, num_attention_heads=H, intermediate_size=F, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12, hidden_act="gelu",
                         attn_implementation="eager")


def _load_from_torch(ours, tmod):
    ours.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


def _randomise_torch(tmod, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tmod.parameters():   # non-trivial biases and LayerNorm affine terms
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _assert_close(name, ours, ref, tol):
    ref = ref.detach().numpy() if hasattr(ref, "detach") else np.asarray(ref)
    err = np.abs(np.asarray(ours, np.float64) - ref)
    worst = np.unravel_index(err.argmax(), err.shape) if err.size else ()
    assert err.max(initial=0) <= tol, f"{name}: max abs diff {err.max():.3e} at index {worst} (tol {tol})"


def _grads_close(ours, tmod, tol=1e-4):
    tgrads = {n: p.grad for n, p in tmod.named_parameters()}
    for n, p in ours.named_parameters():
        _assert_close(f"grad {n}", p.grad, tgrads[n], tol)


@pytest.mark.parity
def test_parity_bert_layer_with_transformers(rng):
    torch = pytest.importorskip("torch")
    mb = pytest.importorskip("transformers.models.bert.modeling_bert")
    torch.manual_seed(0)
    tlayer = mb.BertLayer(_config()).eval()
    _randomise_torch(tlayer, 1)
    ours = BertLayer(32, 4, 64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     rng=np.random.default_rng(0)).eval()
    assert list(ours.state_dict()) == list(tlayer.state_dict())
    _load_from_torch(ours, tlayer)

    B, L = 3, 9
    x = rng.standard_normal((B, L, 32)).astype(np.float32)
    mask = _mask([9, 5, 1], L)
    dout = rng.standard_normal((B, L, 32)).astype(np.float32)
    out, probs = ours.forward(x, mask)
    dx = ours.backward(dout)

    tx = torch.tensor(x, requires_grad=True)
    add = torch.tensor((1.0 - mask[:, None, None, :].astype(np.float32)) * -10000.0)   # docs/modules.md §5
    tout = tlayer(tx, attention_mask=add)
    tout = tout[0] if isinstance(tout, tuple) else tout
    (tout * torch.tensor(dout)).sum().backward()
    _assert_close("out", out, tout, 1e-5)
    _assert_close("dx", dx, tx.grad, 1e-4)
    _grads_close(ours, tlayer)

    # the probabilities, from transformers' own self-attention block
    with torch.no_grad():
        _, tprobs = tlayer.attention.self(tx, attention_mask=add)
    _assert_close("probs", probs, tprobs, 1e-5)


class _TorchCrossLayer:
    """The cross layer of docs/modules.md §4 built from transformers' blocks (same names as ours)."""

    @staticmethod
    def build(cfg):
        import torch
        mb = pytest.importorskip("transformers.models.bert.modeling_bert")

        class CrossLayer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.attention = mb.BertAttention(cfg, is_cross_attention=True)
                self.intermediate = mb.BertIntermediate(cfg)
                self.output = mb.BertOutput(cfg)

            def forward(self, x, y, add_mask):
                a, probs = self.attention(x, encoder_hidden_states=y, encoder_attention_mask=add_mask)
                return self.output(self.intermediate(a), a), probs

        return CrossLayer()


@pytest.mark.parity
@pytest.mark.parametrize("layers", [1, 2])
def test_parity_cross_layers_with_torch(rng, layers):
    torch = pytest.importorskip("torch")
    cfg = _config()
    torch.manual_seed(1)
    tlayers = [_TorchCrossLayer.build(cfg).eval() for _ in range(layers)]
    ours = BertCrossEncoder(32, 4, 64, num_hidden_layers=layers, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, rng=np.random.default_rng(0)).eval()
    for i, t in enumerate(tlayers):
        _randomise_torch(t, 10 + i)
        assert list(ours.layer[i].state_dict()) == list(t.state_dict())
        _load_from_torch(ours.layer[i], t)

    B, Lq, Lk = 3, 6, 8
    x = rng.standard_normal((B, Lq, 32)).astype(np.float32)
    y = rng.standard_normal((B, Lk, 32)).astype(np.float32)
    y_mask = _mask([8, 4, 1], Lk)
    dout = rng.standard_normal((B, Lq, 32)).astype(np.float32)
    out, probs = ours.forward(x, y, y_mask)
    dx, dy = ours.backward(dout)

    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    add = torch.tensor((1.0 - y_mask[:, None, None, :].astype(np.float32)) * -10000.0)
    h, tprobs = tx, []
    for t in tlayers:
        h, p = t(h, ty, add)
        tprobs.append(p)
    (h * torch.tensor(dout)).sum().backward()
    _assert_close("out", out, h, 1e-5)
    for i in range(layers):
        _assert_close(f"probs[{i}]", probs[i], tprobs[i], 1e-5)
        _grads_close(ours.layer[i], tlayers[i])
    _assert_close("dx", dx, tx.grad, 1e-4)
    _assert_close("dy", dy, ty.grad, 1e-4)
