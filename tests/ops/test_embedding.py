"""Embedding lookup: scatter-add gradient with repeated ids, padding_idx, validation, torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.embedding import embedding_backward, embedding_forward


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
def test_embedding_gradcheck(xp_name, rng, padding_idx):
    V, C = 6, 4
    ids = backend.asarray(np.array([[0, 3, 3, 5], [1, 3, 0, 2]]), backend=xp_name)   # repeats and padding
    w = backend.asarray(rng.standard_normal((V, C)), backend=xp_name)
    dout = backend.asarray(rng.standard_normal((2, 4, C)), backend=xp_name)
    out, cache = embedding_forward(ids, w, padding_idx)
    assert out.shape == (2, 4, C)
    dw = embedding_backward(dout, cache)
    if padding_idx is None:
        # plain lookup: the numerical gradient is the exact answer
        errs = check_grads(lambda: float((embedding_forward(ids, w)[0] * dout).sum()), {"weight": w}, {"weight": dw})
        assert errs["weight"] <= 1e-6
    else:
        # padding row: torch semantics, zero gradient regardless of use; the other rows are the true gradient
        dw_np, full = backend.asnumpy(dw), backend.asnumpy(embedding_backward(dout, embedding_forward(ids, w)[1]))
        pad = padding_idx % V
        np.testing.assert_array_equal(dw_np[pad], 0.0)
        rows = [v for v in range(V) if v != pad]
        np.testing.assert_array_equal(dw_np[rows], full[rows])


def test_repeated_ids_accumulate(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    ids = np.array([2, 2, 2, 1])
    dout = np.ones((4, 3), np.float32)
    dw = embedding_backward(dout, embedding_forward(ids, w)[1])
    np.testing.assert_array_equal(dw, [[0, 0, 0], [1, 1, 1], [3, 3, 3], [0, 0, 0]])
    assert dw.dtype == np.float32


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), V=st.integers(1, 10), C=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_float32_out_and_lookup(B, T, V, C, seed):
    r = np.random.default_rng(seed)
    w = r.standard_normal((V, C)).astype(np.float32)
    ids = r.integers(0, V, (B, T))
    out, cache = embedding_forward(ids, w)
    assert out.dtype == np.float32 and out.shape == (B, T, C)
    np.testing.assert_array_equal(out[0, 0], w[ids[0, 0]])
    assert embedding_backward(np.ones_like(out), cache).dtype == np.float32


def test_bad_inputs():
    w = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="integer"):
        embedding_forward(np.array([0.0, 1.0]), w)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        embedding_forward(np.array([0, 5]), w)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        embedding_forward(np.array([-1, 2]), w)
    with pytest.raises(ValueError, match="padding_idx"):
        embedding_forward(np.array([0]), w, padding_idx=5)


@pytest.mark.parity
def test_embedding_parity_with_torch(rng):
    torch = pytest.importorskip("torch")
    V, C = 11, 8
    w = rng.standard_normal((V, C)).astype(np.float32)
    ids = rng.integers(0, V, (3, 7))
    ids[:, -2:] = 0                                        # padding positions
    dout = rng.standard_normal((3, 7, C)).astype(np.float32)
    emb = torch.nn.Embedding(V, C, padding_idx=0)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(w))
    ty = emb(torch.from_numpy(ids))
    ty.backward(torch.from_numpy(dout))
    out, cache = embedding_forward(ids, w, padding_idx=0)
    dw = embedding_backward(dout, cache)
    assert np.abs(out - ty.detach().numpy()).max() <= 1e-5
    diff = np.abs(dw - emb.weight.grad.numpy())
    assert diff.max() <= 1e-4, f"dweight: max abs diff {diff.max():.3e} at {np.unravel_index(diff.argmax(), diff.shape)}"
    assert np.all(dw[0] == 0)


def test_backward_accumulates_in_place_and_never_touches_the_padding_row(rng):
    w = rng.standard_normal((7, 3)).astype(np.float32)
    ids = np.array([[0, 2, 2], [5, 0, 1]])
    out, cache = embedding_forward(ids, w, padding_idx=0)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    grad = rng.standard_normal((7, 3)).astype(np.float32)          # earlier contributions
    before = grad.copy()
    got = embedding_backward(dout, cache, dweight=grad)
    assert got is grad
    np.testing.assert_allclose(grad, before + embedding_backward(dout, cache), rtol=1e-6)
    np.testing.assert_array_equal(grad[0], before[0])              # exactly unchanged
    np.testing.assert_array_equal(grad[[3, 4, 6]], before[[3, 4, 6]])   # rows not looked up: untouched
