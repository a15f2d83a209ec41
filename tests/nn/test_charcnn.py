"""CharCNN (docs/modules.md §8): names and init, gradient checks (eval, train), the pooling detail, torch parity."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_grads, check_module, directional_check, numerical_grad, rel_error
from minimner.nn.charcnn import CharCNN, Conv1d, MaxPool1d
from minimner.nn.layers import Dropout

ORIGINAL_NAMES = [("char_emb.weight", (9, 128)),
                  ("convs.0.0.weight", (32, 128, 2)), ("convs.0.0.bias", (32,)),
                  ("convs.1.0.weight", (32, 128, 3)), ("convs.1.0.bias", (32,)),
                  ("convs.2.0.weight", (32, 128, 4)), ("convs.2.0.bias", (32,)),
                  ("linear.0.weight", (100, 96)), ("linear.0.bias", (100,)),
                  ("linear.3.weight", (8, 100)), ("linear.3.bias", (8,))]

# a small CharCNN whose every parameter entry can be checked numerically in well under a second
SMALL = dict(char_vocab_size=7, hidden_size=5, char_dim=4, filters=3, mlp_dim=6)


def _ids(rng, B, T, Vc, Lw=12, pad_rows=True):
    """(B, T, Lw) int64 char ids: random words of 1..Lw chars right-padded with 0, plus all-0 padding rows."""
    ids = np.zeros((B, T, Lw), dtype=np.int64)
    for b in range(B):
        for t in range(T):
            n = rng.integers(1, Lw + 1)
            ids[b, t, :n] = rng.integers(1, Vc, n)
    if pad_rows:
        ids[-1, -1] = 0                                    # a padding position: all [PAD]
        ids[0, 0] = 3                                      # a [CLS]-like row: all one id
    return ids


def _reseed(module, seed):
    """Give every Dropout one fresh generator with ``seed``, so the next forward repeats its masks."""
    g = np.random.default_rng(seed)
    for _, m in module.named_modules():
        if isinstance(m, Dropout):
            m.rng = g


# ----------------------------------------------------------------------------- structure and init
def test_parameter_names_and_shapes_are_the_originals():
    m = CharCNN(9, 8, rng=np.random.default_rng(0))
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == ORIGINAL_NAMES
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert list(m.state_dict()) == [n for n, _ in ORIGINAL_NAMES]


def test_init_follows_spec_6_1():
    m = CharCNN(400, 64, rng=np.random.default_rng(0))
    emb = m.char_emb.weight.data
    assert np.abs(emb[0]).max() > 0                        # BERT's init overwrites the padding row
    assert abs(emb.std() - 0.02) < 0.001 and abs(emb.mean()) < 0.001
    for j, k in enumerate((2, 3, 4)):
        conv = m.convs[j][0]
        bound = 1 / np.sqrt(128 * k)                       # PyTorch's default, fan_in = D·k
        w, b = np.abs(conv.weight.data), np.abs(conv.bias.data)
        assert w.max() <= bound and w.max() > 0.99 * bound  # thousands of draws fill the interval
        assert b.max() <= bound and b.max() > 0.5 * bound   # 32 draws
    for lin in (m.linear[0], m.linear[3]):
        assert abs(lin.weight.data.std() - 0.02) < 0.002 and np.all(lin.bias.data == 0)
    # the sub-module layout of the original nn.Sequential lists
    assert [type(x).__name__ for x in m.convs[0]] == ["Conv1d", "Tanh", "MaxPool1d", "Dropout"]
    assert [type(x).__name__ for x in m.linear] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert [m.convs[j][2].kernel_size for j in range(3)] == [11, 10, 9]
    assert m.convs[0][3].p == 0.25 and m.linear[2].p == 0.25


def test_forward_shape_and_dtype_preserved(rng):
    m = CharCNN(9, 8, rng=np.random.default_rng(0)).eval()
    ids = _ids(rng, 2, 3, 9)
    out = m(ids)
    assert out.shape == (2, 3, 8) and out.dtype == np.float32
    m.backward(rng.standard_normal(out.shape).astype(np.float32))
    assert all(p.grad.dtype == np.float32 for p in m.parameters())
    m.double()
    out64 = m(ids.astype(np.int32))                        # any integer dtype
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out64, out, rtol=0, atol=1e-6)


def test_bad_inputs_raise_value_error(rng):
    m = CharCNN(9, 8, rng=np.random.default_rng(0))
    ids = _ids(rng, 2, 3, 9)
    with pytest.raises(ValueError, match=r"\(B, T, Lw=12\) integer array, got int64 shape \(2, 3, 11\)"):
        m(ids[..., :11])
    with pytest.raises(ValueError, match=r"got int64 shape \(3, 12\)"):
        m(ids[0])
    with pytest.raises(ValueError, match="got float32"):
        m(ids.astype(np.float32))
    bad = ids.copy()
    bad[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 9\)"):
        m(bad)
    with pytest.raises(ValueError, match="max_wordlen 7 is too short"):
        CharCNN(9, 8, max_wordlen=7)
    CharCNN(9, 8, max_wordlen=8)                           # the shortest length that gives one window per pool
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        CharCNN(9, 0)
    with pytest.raises(RuntimeError, match="without a pending forward"):
        m.backward(np.zeros((2, 3, 8), np.float32))


def test_pools_read_only_the_first_positions(rng):
    """docs/modules.md §8: pool windows cover conv positions 0..11-k+1 only, so the 12th character is never read
    (and the 11th only by the k = 2 and k = 3 branches)."""
    m = CharCNN(9, 8, rng=np.random.default_rng(0)).eval()
    ids = _ids(rng, 2, 3, 9, pad_rows=False)
    out = m(ids)
    changed = ids.copy()
    changed[..., 11] = (ids[..., 11] % 8) + 1              # a different character at position 11 everywhere
    np.testing.assert_array_equal(m(changed), out)
    changed[..., 10] = (ids[..., 10] % 8) + 1              # position 10 does matter
    assert np.abs(m(changed) - out).max() > 1e-4


# ----------------------------------------------------------------------------- gradients (float64)
def _check_all_entries(m, ids, rng, seed=None):
    """Entrywise check of every parameter; row 0 of char_emb (padding_idx) must get no gradient."""
    def fwd():
        if seed is not None:
            _reseed(m, seed)
        return m(ids)

    dout = rng.standard_normal(fwd().shape)                # (B, T, C) random upstream gradient
    m.zero_grad()
    fwd()
    assert m.backward(dout) is None

    def loss():
        return float((fwd() * dout).sum())

    params = dict(m.named_parameters())
    emb = params.pop("char_emb.weight")
    errs = check_grads(loss, {n: p.data for n, p in params.items()}, {n: p.grad.copy() for n, p in params.items()})
    num = numerical_grad(loss, emb.data)                   # (Vc, D)
    assert np.all(emb.grad[0] == 0) and np.abs(num[0]).max() > 1e-6  # row 0 is used, yet gets no gradient
    errs["char_emb.weight[1:]"] = rel_error(emb.grad[1:], num[1:])
    return errs


def test_gradcheck_every_parameter_eval(rng):
    m = CharCNN(**SMALL, rng=np.random.default_rng(3)).double().eval()
    errs = _check_all_entries(m, _ids(rng, 2, 3, SMALL["char_vocab_size"]), rng)
    assert len(errs) == 11 and max(errs.values()) < 1e-6, errs


def test_gradcheck_every_parameter_train_with_reseeded_dropout(rng):
    m = CharCNN(**SMALL, dropout=0.4, rng=np.random.default_rng(3)).double().train()
    ids = _ids(rng, 2, 3, SMALL["char_vocab_size"])
    _reseed(m, 11)
    a = m(ids)
    _reseed(m, 12)
    assert not np.allclose(a, m(ids))                      # the masks are really on
    errs = _check_all_entries(m, ids, rng, seed=11)
    assert max(errs.values()) < 1e-6, errs


@pytest.mark.parametrize("train", [False, True])
def test_gradcheck_full_size_directional(rng, train):
    """The real sizes (D 128, F 32, M 100) along one random direction over every parameter entry
    except the padding row (which by convention gets no gradient although it is used)."""
    m = CharCNN(9, 6, rng=np.random.default_rng(5)).double().train(train)
    ids = _ids(rng, 2, 2, 9)

    def fwd():
        _reseed(m, 21)
        return m(ids)

    dout = rng.standard_normal(fwd().shape)                # (B, T, C)
    m.zero_grad()
    fwd()
    m.backward(dout)
    arrays = {n: p.data for n, p in m.named_parameters()}
    analytic = {n: p.grad.copy() for n, p in m.named_parameters()}
    arrays["char_emb.weight"] = arrays["char_emb.weight"][1:]   # a view: the check moves the real rows 1..
    analytic["char_emb.weight"] = analytic["char_emb.weight"][1:]
    err = directional_check(lambda: float((fwd() * dout).sum()), arrays, analytic, rng)
    assert err < 1e-6


def test_eval_is_deterministic_and_train_drops(rng):
    m = CharCNN(9, 8, rng=np.random.default_rng(0))
    ids = _ids(rng, 2, 3, 9)
    assert not np.allclose(m(ids), m(ids))
    m.eval()
    np.testing.assert_array_equal(m(ids), m(ids))


def test_numpy_and_cupy_agree(xp_name, rng):
    m = CharCNN(9, 8, rng=np.random.default_rng(0)).eval()
    ids = _ids(rng, 2, 3, 9)
    ref = m(ids)
    m.to(xp_name)
    out = m(backend.asarray(ids))
    assert out.dtype == np.float32
    np.testing.assert_allclose(backend.asnumpy(out), ref, rtol=0, atol=1e-6)
    m.backward(backend.asarray(np.ones_like(ref)))


def test_conv_and_pool_modules(rng):
    conv = Conv1d(3, 4, 3, padding=1, rng=rng).double()
    assert list(conv.state_dict()) == ["weight", "bias"] and conv.weight.shape == (4, 3, 3)
    errs = check_module(conv, conv.forward, conv.backward, [rng.standard_normal((2, 3, 7))], rng)
    assert max(errs.values()) <= 1e-6 and set(errs) == {"input0", "weight", "bias"}
    pool = MaxPool1d(3)
    assert pool.stride == 3 and pool.state_dict() == {}


# ----------------------------------------------------------------------------- torch parity (float32)
def torch_char_cnn(char_vocab_size, hidden_size, char_dim=128, max_wordlen=12, kernels=(2, 3, 4), filters=32,
                   mlp_dim=100):
    """An independent PyTorch char-CNN written from docs/modules.md §8 (same leaf names: weights move by name)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class TorchCharCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.char_emb = nn.Embedding(char_vocab_size, char_dim, padding_idx=0)
            self.convs = nn.ModuleList(
                nn.Sequential(nn.Conv1d(char_dim, filters, k, padding=k // 2), nn.Tanh(),
                              nn.MaxPool1d(max_wordlen - k + 1), nn.Dropout(0.25))
                for k in kernels)
            self.linear = nn.Sequential(nn.Linear(filters * len(kernels), mlp_dim), nn.ReLU(), nn.Dropout(0.25),
                                        nn.Linear(mlp_dim, hidden_size))

        def forward(self, ids):                            # (B, T, Lw) long
            B, T, Lw = ids.shape
            e = self.char_emb(ids).reshape(B * T, Lw, -1).transpose(1, 2)   # (N, D, Lw)
            f = torch.cat([conv(e) for conv in self.convs], dim=-1)         # (N, F, nb)
            return self.linear(f.reshape(B * T, -1)).reshape(B, T, -1)      # (N, F·nb) -> (B, T, C)

    return TorchCharCNN()


def load_into_torch(theirs, ours):
    torch = pytest.importorskip("torch")
    theirs.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()},
                           strict=True)
    return theirs


def compare_grads(ours_named, theirs_named, tol):
    """Max |Δgrad| / max |grad| per parameter (asserted ≤ tol); returns the errors."""
    t = dict(theirs_named)
    errs = {}
    for name, p in ours_named:
        g = t[name].grad.numpy()
        assert p.grad.dtype == np.float32
        err = float(np.abs(p.grad - g).max() / max(np.abs(g).max(), 1e-30))
        errs[name] = err
        worst = np.unravel_index(np.abs(p.grad - g).argmax(), g.shape)
        assert err <= tol, f"{name}: max|Δgrad|/max|grad| = {err:.3e} at {worst}"
    return errs


@pytest.mark.parity
def test_torch_parity_outputs_and_every_gradient(rng):
    torch = pytest.importorskip("torch")
    Vc, C = 30, 16
    ours = CharCNN(Vc, C, rng=np.random.default_rng(9)).eval()
    theirs = load_into_torch(torch_char_cnn(Vc, C), ours).eval()
    ids = _ids(rng, 3, 5, Vc)
    dout = rng.standard_normal((3, 5, C)).astype(np.float32)

    out = ours(ids)
    ours.zero_grad()
    ours.backward(dout)
    t_out = theirs(torch.from_numpy(ids))
    (t_out * torch.from_numpy(dout)).sum().backward()

    ref = t_out.detach().numpy()
    assert out.dtype == np.float32
    err = float(np.abs(out - ref).max())
    assert err <= 1e-6 * max(1.0, float(np.abs(ref).max())), f"output max abs diff {err:.3e}"
    errs = compare_grads(ours.named_parameters(), theirs.named_parameters(), 1e-5)
    assert len(errs) == 11
    assert np.all(ours.char_emb.weight.grad[0] == 0) and np.all(theirs.char_emb.weight.grad[0].numpy() == 0)


@pytest.mark.parity
def test_matches_the_authors_char_cnn_when_available(rng):
    """With MINIMNER_IIE4MNER pointing at the authors' checkout: their utils.char_cnn, our weights by name."""
    root = os.environ.get("MINIMNER_IIE4MNER")
    if not root or not (Path(root) / "utils.py").is_file():
        pytest.skip("MINIMNER_IIE4MNER does not point at an IIE4MNER checkout")
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("_iie4mner_utils", Path(root) / "utils.py")
    original_utils = importlib.util.module_from_spec(spec)     # a private name: no clash with other 'utils'
    spec.loader.exec_module(original_utils)
    Vc, C = 25, 12
    ours = CharCNN(Vc, C, rng=np.random.default_rng(4)).eval()
    theirs = original_utils.char_cnn(max_wordlen=12, char_vocab_size=Vc, char_emb_dim=128, final_char_dim=C)
    load_into_torch(theirs, ours).eval()
    ids = _ids(rng, 2, 4, Vc)
    dout = rng.standard_normal((2, 4, C)).astype(np.float32)
    out = ours(ids)
    ours.backward(dout)
    t_out = theirs(torch.from_numpy(ids))
    (t_out * torch.from_numpy(dout)).sum().backward()
    assert np.abs(out - t_out.detach().numpy()).max() <= 1e-6
    compare_grads(ours.named_parameters(), theirs.named_parameters(), 1e-5)
