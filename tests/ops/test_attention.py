"""Tests for minimner.ops.attention: gradients, masking properties, dtype, torch parity."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.attention import MASK_VALUE, additive_key_mask, attention_backward, attention_forward


def _inputs(rng, B, Lq, Lk, C, dtype=np.float64):
    q = rng.standard_normal((B, Lq, C)).astype(dtype)
    k = rng.standard_normal((B, Lk, C)).astype(dtype)
    v = rng.standard_normal((B, Lk, C)).astype(dtype)
    return q, k, v


def _mask(lengths, L):
    return (np.arange(L)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)   # (B, L) prefix mask


@pytest.mark.parametrize("Lq,Lk,H,dropout", [(3, 3, 2, 0.0), (2, 4, 2, 0.0), (3, 4, 1, 0.3), (4, 2, 4, 0.5)])
def test_gradcheck_every_input(rng, Lq, Lk, H, dropout):
    B, C = 2, 4
    q, k, v = _inputs(rng, B, Lq, Lk, C)
    mask = _mask([Lk, max(1, Lk - 2)], Lk)
    dctx = rng.standard_normal((B, Lq, C))

    def fwd():  # the same dropout mask on every call: a fresh generator with a fixed seed
        return attention_forward(q, k, v, mask, H, dropout, np.random.default_rng(7), training=True)

    ctx, _, cache = fwd()
    dq, dk, dv = attention_backward(dctx, cache)
    # h = 1e-5: with |L| ~ 10 the round-off of a 1e-6 step (~1e-16·|L|/h) reaches 1e-6 of the small entries
    errs = check_grads(lambda: float((fwd()[0] * dctx).sum()), {"q": q, "k": k, "v": v},
                       {"q": dq, "k": dk, "v": dv}, h=1e-5)
    assert max(errs.values()) < 1e-6
    # a padding key gets no gradient at all: its k and v never reach the output
    assert np.abs(dk[1, max(1, Lk - 2):]).max(initial=0) == 0 and np.abs(dv[1, max(1, Lk - 2):]).max(initial=0) == 0


def test_gradcheck_without_mask(rng):
    q, k, v = _inputs(rng, 2, 3, 3, 6)
    dctx = rng.standard_normal((2, 3, 6))
    ctx, _, cache = attention_forward(q, k, v, None, 3)
    dq, dk, dv = attention_backward(dctx, cache)
    check_grads(lambda: float((attention_forward(q, k, v, None, 3)[0] * dctx).sum()),
                {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


def test_dtype_and_shapes(xp_name, rng):
    xp = backend.xp()
    q, k, v = (backend.asarray(a) for a in _inputs(rng, 2, 3, 5, 8, np.float32))
    mask = backend.asarray(_mask([5, 2], 5).astype(bool))
    ctx, probs, cache = attention_forward(q, k, v, mask, 4)
    assert ctx.dtype == probs.dtype == np.float32 and ctx.shape == (2, 3, 8) and probs.shape == (2, 4, 3, 5)
    grads = attention_backward(xp.asarray(rng.standard_normal((2, 3, 8)), dtype=xp.float32), cache)
    assert [g.dtype for g in grads] == [np.float32] * 3
    assert [g.shape for g in grads] == [(2, 3, 8), (2, 5, 8), (2, 5, 8)]
    assert backend.get_xp(ctx) is xp
    add = additive_key_mask(mask, np.float32)
    assert add.dtype == np.float32 and add.shape == (2, 1, 1, 5)
    assert float(add.min()) == MASK_VALUE and float(add.max()) == 0.0


def test_backends_agree(rng):
    if not backend.cupy_available():
        pytest.skip("CuPy or a CUDA GPU is not available")
    q, k, v = _inputs(rng, 2, 3, 4, 8, np.float32)
    mask = _mask([4, 2], 4)
    ref, ref_p, _ = attention_forward(q, k, v, mask, 2)
    g = [backend.asarray(a, backend="cupy") for a in (q, k, v, mask)]
    out, p, _ = attention_forward(*g[:3], g[3], 2)
    np.testing.assert_allclose(backend.asnumpy(out), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.asnumpy(p), ref_p, rtol=1e-5, atol=1e-6)


def test_all_padding_row_cancels_the_shift_and_is_finite(rng):
    """docs/model.md §2 step 9: with the finite −10000 an all-padding key row is the unmasked softmax, never NaN."""
    q, k, v = _inputs(rng, 2, 3, 4, 4, np.float32)
    mask = _mask([4, 0], 4)
    ctx, probs, _ = attention_forward(q, k, v, mask, 2)
    assert np.isfinite(ctx).all()
    # Every key gets the same −10000 shift, which the softmax cancels: row 1 equals the unmasked softmax up
    # to the float32 rounding of s − 10000 (one ulp of 10000 is 2^-10 ≈ 1e-3, so probabilities move by
    # ~1e-3 relative; torch rounds identically, see the parity test). float64 shows the exact cancellation.
    ref, ref_p, _ = attention_forward(q[1:], k[1:], v[1:], None, 2)
    np.testing.assert_allclose(probs[1:], ref_p, rtol=3e-3, atol=1e-5)
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    p64 = attention_forward(q64, k64, v64, mask, 2)[1]
    np.testing.assert_allclose(p64[1:], attention_forward(q64[1:], k64[1:], v64[1:], None, 2)[1], rtol=1e-10)


def test_eval_mode_ignores_dropout(rng):
    q, k, v = _inputs(rng, 1, 2, 3, 4, np.float32)
    a = attention_forward(q, k, v, None, 2, 0.5, np.random.default_rng(0), training=False)[0]
    b = attention_forward(q, k, v, None, 2)[0]
    np.testing.assert_array_equal(a, b)
    c, probs, _ = attention_forward(q, k, v, None, 2, 0.5, np.random.default_rng(0), training=True)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)   # returned probs are pre-dropout


@pytest.mark.parametrize("bad", ["heads", "kv", "mask_shape", "mask_float", "dtype", "ndim"])
def test_errors_are_clear(rng, bad):
    q, k, v = _inputs(rng, 2, 3, 4, 6, np.float32)
    mask, H = _mask([4, 2], 4), 2
    if bad == "heads":
        H, match = 4, "multiple of num_heads"
    elif bad == "kv":
        v, match = v[:, :3], "shape mismatch"
    elif bad == "mask_shape":
        mask, match = mask[:, :3], r"key mask must have shape \(B, Lk\)"
    elif bad == "mask_float":
        mask, match = mask.astype(np.float32), "int or bool"
    elif bad == "dtype":
        k, match = k.astype(np.float64), "one floating dtype"
    else:
        q, match = q[0], "expects q"
    with pytest.raises(ValueError, match=match):
        attention_forward(q, k, v, mask, H)


# ------------------------------------------------------------------ properties
shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),      # B, Lq, Lk
                   st.sampled_from([(1, 4), (2, 4), (4, 8), (2, 16)]),            # (H, C)
                   st.integers(0, 2**31 - 1))


@settings(max_examples=25, deadline=None)
@given(shapes)
def test_masked_keys_get_exactly_zero_probability(s):
    B, Lq, Lk, (H, C), seed = s
    r = np.random.default_rng(seed)
    q, k, v = _inputs(r, B, Lq, Lk, C, np.float32)
    lengths = r.integers(1, Lk + 1, size=B)                  # at least one real key per row
    mask = _mask(lengths, Lk)
    ctx, probs, _ = attention_forward(q, k, v, mask, H)
    assert ctx.dtype == probs.dtype == np.float32
    assert (probs[np.broadcast_to(mask[:, None, None, :] == 0, probs.shape)] == 0).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(shapes)
def test_padding_keys_never_change_outputs(s):
    B, Lq, Lk, (H, C), seed = s
    r = np.random.default_rng(seed)
    q, k, v = _inputs(r, B, Lq, Lk, C, np.float32)
    lengths = r.integers(1, Lk + 1, size=B)
    mask = _mask(lengths, Lk)
    pad = np.broadcast_to((mask == 0)[:, :, None], k.shape)
    k2 = np.where(pad, 5 * r.standard_normal(k.shape).astype(np.float32), k)
    v2 = np.where(pad, 5 * r.standard_normal(v.shape).astype(np.float32), v)
    a = attention_forward(q, k, v, mask, H)[0]
    b = attention_forward(q, k2, v2, mask, H)[0]
    np.testing.assert_array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(shapes)
def test_batch_equals_per_example(s):
    B, Lq, Lk, (H, C), seed = s
    r = np.random.default_rng(seed)
    q, k, v = _inputs(r, B, Lq, Lk, C, np.float32)
    mask = _mask(r.integers(1, Lk + 1, size=B), Lk)
    ctx, probs, _ = attention_forward(q, k, v, mask, H)
    for b in range(B):
        n = int(mask[b].sum())                               # the example alone, padding cut off
        c1, p1, _ = attention_forward(q[b:b + 1], k[b:b + 1, :n], v[b:b + 1, :n], None, H)
        np.testing.assert_allclose(ctx[b:b + 1], c1, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(probs[b:b + 1, :, :, :n], p1, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ torch parity
@pytest.mark.parity
@pytest.mark.parametrize("Lq,Lk", [(7, 7), (5, 9)])
def test_parity_with_transformers_eager_attention(rng, Lq, Lk):
    torch = pytest.importorskip("torch")
    mb = pytest.importorskip("transformers.models.bert.modeling_bert")
    B, H, C = 3, 4, 32
    q, k, v = _inputs(rng, B, Lq, Lk, C, np.float32)
    mask = _mask([Lk, Lk - 3, 1], Lk)
    dctx = rng.standard_normal((B, Lq, C)).astype(np.float32)
    ctx, probs, cache = attention_forward(q, k, v, mask, H)
    dq, dk, dv = attention_backward(dctx, cache)

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    heads = lambda t: t.view(B, -1, H, C // H).transpose(1, 2)            # (B, L, C) -> (B, H, L, D)
    add = torch.tensor(additive_key_mask(mask, np.float32))               # (B, 1, 1, Lk), BERT's −10000 mask
    module = torch.nn.Module().eval()
    tctx, tprobs = mb.eager_attention_forward(module, heads(tq), heads(tk), heads(tv), add,
                                              scaling=(C // H) ** -0.5, dropout=0.0)
    tctx = tctx.reshape(B, Lq, C)
    (tctx * torch.tensor(dctx)).sum().backward()

    def close(name, ours, ref, tol):
        ref = ref.detach().numpy()
        err = np.abs(ours - ref)
        assert err.max() <= tol, f"{name}: max abs diff {err.max():.3e} at {np.unravel_index(err.argmax(), err.shape)}"

    close("ctx", ctx, tctx, 1e-5)
    close("probs", probs, tprobs, 1e-5)
    close("dq", dq, tq.grad, 1e-4)
    close("dk", dk, tk.grad, 1e-4)
    close("dv", dv, tv.grad, 1e-4)
