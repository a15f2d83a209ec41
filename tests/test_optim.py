"""Tests for minimner.optim: AdamW and clipping vs PyTorch, schedules, BertAdam vs docs/training.md §2, resume."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minimner import backend
from minimner.nn.module import Parameter
from minimner.optim import AdamW, BertAdam, clip_grad_norm, linear_warmup_decay, warmup_linear

SHAPES = {"encoder.dense.weight": (6, 4), "encoder.dense.bias": (6,), "encoder.LayerNorm.weight": (6,),
          "encoder.LayerNorm.bias": (6,), "fus1_w1": (3, 3), "fusion_bias": (3,), "emb.weight": (5, 2)}


def _named_params(rng):
    return [(n, Parameter(rng.standard_normal(s).astype(np.float32))) for n, s in SHAPES.items()]


def _grads(rng, steps):
    return [{n: (rng.standard_normal(s) * 0.5).astype(np.float32) for n, s in SHAPES.items()} for _ in range(steps)]


def test_no_decay_matches_names(rng):
    opt = AdamW(_named_params(rng), lr=1e-3)
    assert {n for n, d in opt.decay.items() if d} == {"encoder.dense.weight", "fus1_w1", "emb.weight"}
    bert = BertAdam(_named_params(rng), lr=1e-3)
    assert {n for n, d in bert.decay.items() if d} == {"encoder.dense.weight", "fus1_w1", "emb.weight"}
    plain = AdamW([p for _, p in _named_params(rng)], lr=1e-3)   # unnamed: every parameter decays
    assert all(plain.decay.values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        AdamW([], lr=1e-3)
    with pytest.raises(ValueError, match="Parameter or a"):
        AdamW([np.zeros(3)], lr=1e-3)
    p = Parameter(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="twice"):
        AdamW([("a", p), ("b", p)], lr=1e-3)
    with pytest.raises(ValueError, match="invalid AdamW"):
        AdamW([p], lr=-1.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([p], 0.0)


@pytest.mark.parity
def test_adamw_matches_torch_over_20_steps(rng):
    """Weight decay with name exclusions, a changing learning rate (the schedule), float32 on both sides."""
    torch = pytest.importorskip("torch")
    named = _named_params(rng)
    t_params = {n: torch.tensor(p.data.copy(), requires_grad=True) for n, p in named}
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [t for n, t in t_params.items() if not any(s in n for s in no_decay)], "weight_decay": 0.1},
              {"params": [t for n, t in t_params.items() if any(s in n for s in no_decay)], "weight_decay": 0.0}]
    base_lr, total, warm = 0.05, 20, 4
    t_opt = torch.optim.AdamW(groups, lr=base_lr, betas=(0.9, 0.98), eps=1e-6)
    opt = AdamW(named, lr=base_lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1, no_decay=no_decay)
    for step, grads in enumerate(_grads(rng, total), start=1):
        lr = base_lr * linear_warmup_decay(step, total, warm)
        opt.lr = lr
        for g in t_opt.param_groups:
            g["lr"] = lr
        for n, p in named:
            p.grad[...] = grads[n]
            t_params[n].grad = torch.tensor(grads[n])
        opt.step()
        t_opt.step()
    for n, p in named:
        ref = t_params[n].detach().numpy()
        err = np.abs(p.data - ref).max()
        assert p.data.dtype == np.float32 and err <= 1e-6, f"{n}: max abs diff {err:.3e}"
        m_err = np.abs(opt.state[n]["exp_avg"] - t_opt.state[t_params[n]]["exp_avg"].numpy()).max()
        assert m_err <= 1e-6, f"{n}: exp_avg diff {m_err:.3e}"


@pytest.mark.parity
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(rng, max_norm):
    torch = pytest.importorskip("torch")
    named = _named_params(rng)
    grads = _grads(rng, 1)[0]
    tp = []
    for n, p in named:
        p.grad[...] = grads[n]
        t = torch.zeros(p.data.shape, requires_grad=True)
        t.grad = torch.tensor(grads[n])
        tp.append(t)
    total = clip_grad_norm(named, max_norm)
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm)
    assert abs(float(total) - float(t_total)) <= 1e-6 * float(t_total)
    for (n, p), t in zip(named, tp):
        assert np.abs(p.grad - t.grad.numpy()).max() <= 1e-7, n
        assert p.grad.dtype == np.float32
    if max_norm < float(total):
        now = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for _, p in named))
        assert abs(now - max_norm) < 1e-5


def test_linear_warmup_decay():
    f = [linear_warmup_decay(s, 10, 3) for s in range(12)]
    assert f[0] == 0.0 and f[3] == 1.0 and f[10] == 0.0 and f[11] == 0.0
    assert f[1] == pytest.approx(1 / 3) and f[5] == pytest.approx(5 / 7)
    assert all(a >= b for a, b in zip(f[3:], f[4:]))            # monotone decay after warmup
    assert linear_warmup_decay(5, 5, 0) == 0.0 and linear_warmup_decay(0, 5, 0) == 1.0
    assert linear_warmup_decay(5, 5, 5) == 0.0
    with pytest.raises(ValueError):
        linear_warmup_decay(0, 10, 11)


def test_warmup_linear_is_the_originals():
    """docs/training.md §2: x/warmup below warmup, then 1 − x: a jump from 1.0 to 0.9 at 0.1, negative past 1."""
    assert warmup_linear(0.0, 0.1) == 0.0 and warmup_linear(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_linear(0.0999999, 0.1) == pytest.approx(1.0, abs=1e-5)
    assert warmup_linear(0.1, 0.1) == pytest.approx(0.9)
    assert warmup_linear(1.01, 0.1) < 0


def _bertadam_reference(p0, grads, lr, t_total, warmup, wd, b1=0.9, b2=0.999, e=1e-6, max_norm=1.0):
    """docs/training.md §2 written out for one tensor in float64, step by step (independent of minimner.optim)."""
    p, m, v = p0.astype(np.float64), np.zeros(p0.shape), np.zeros(p0.shape)
    for s, g in enumerate(grads):
        g = g.astype(np.float64)
        norm = np.sqrt((g ** 2).sum())
        g = g * min(1.0, max_norm / (norm + 1e-6))                # per-tensor clipping
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = m / (np.sqrt(v) + e) + wd * p
        x = s / t_total
        f = x / warmup if x < warmup else 1 - x
        p = p - lr * f * u
    return p


def test_bertadam_follows_spec(rng):
    named = _named_params(rng)
    start = {n: p.data.copy() for n, p in named}
    steps, t_total = 12, 10                                      # run past t_total: negative lr, as the original
    grads = _grads(rng, steps)
    for g in grads:                                              # make clipping bite for some tensors
        g["encoder.dense.weight"] *= 4
    opt = BertAdam(named, lr=0.1, warmup=0.2, t_total=t_total, weight_decay=0.05)
    for i, gs in enumerate(grads):
        for n, p in named:
            p.grad[...] = gs[n]
        opt.step()
        if i == 0:                                               # f(0) = 0: the first step changes nothing
            assert all(np.array_equal(p.data, start[n]) for n, p in named)
    for n, p in named:
        wd = 0.0 if any(s in n for s in ("bias", "LayerNorm.bias", "LayerNorm.weight")) else 0.05
        ref = _bertadam_reference(start[n], [g[n] for g in grads], 0.1, t_total, 0.2, wd)
        err = np.abs(p.data - ref).max()
        assert err <= 2e-6, f"{n}: max abs diff {err:.3e} from the docs/training.md §2 reference"
        assert opt.state[n]["step"] == steps


def test_parameters_without_grad_are_skipped(rng):
    """docs/training.md §2: a parameter whose grad is None gets no decay and no step count."""
    p, q = Parameter(np.ones(3, np.float32)), Parameter(np.ones(3, np.float32))
    q.grad = None
    for opt in (AdamW([("w", p), ("u", q)], lr=0.1), BertAdam([("w", p), ("u", q)], lr=0.1)):
        p.grad[...] = 1
        opt.step()
        opt.zero_grad()
        assert "u" not in opt.state and (q.data == 1).all() and (p.grad == 0).all()


@pytest.mark.parametrize("cls", [AdamW, BertAdam])
def test_state_dict_resume_is_exact(rng, cls, xp_name):
    """10 steps, save, restore into a fresh optimiser and model copy, 10 more == 20 straight."""
    kw = {"lr": 0.01, "weight_decay": 0.1}
    if cls is BertAdam:
        kw["t_total"] = 20
    grads = _grads(rng, 20)
    init = _named_params(rng)

    def fresh():
        return [(n, Parameter(backend.asarray(p.data.copy()))) for n, p in init]

    def run(opt, params, gs):
        for g in gs:
            for n, p in params:
                p.grad[...] = backend.asarray(g[n])
            opt.step()

    straight = fresh()
    run(cls(straight, **kw), straight, grads)
    first = fresh()
    opt1 = cls(first, **kw)
    run(opt1, first, grads[:10])
    sd = opt1.state_dict()
    assert all(isinstance(v, np.ndarray) for k, v in sd.items() if k.endswith(("exp_avg", "exp_avg_sq")))
    second = [(n, Parameter(p.data.copy())) for n, p in first]
    opt2 = cls(second, lr=123.0)                                  # hyperparameters come back from the state
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.01
    run(opt2, second, grads[10:])
    for (n, a), (_, b) in zip(straight, second):
        np.testing.assert_array_equal(backend.asnumpy(a.data), backend.asnumpy(b.data))
        assert backend.get_xp(b.data) is backend.xp() and b.data.dtype == np.float32


def test_load_state_dict_errors(rng):
    named = _named_params(rng)
    opt = AdamW(named, lr=0.1)
    for n, p in named:
        p.grad[...] = 1
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="not 'BertAdam'"):
        BertAdam(named, lr=0.1).load_state_dict(sd)
    bad = dict(sd, **{"state.nope.step": sd["state.fus1_w1.step"]})
    with pytest.raises(ValueError, match="unknown parameters"):
        AdamW(named, lr=0.1).load_state_dict(bad)
    bad = dict(sd, **{"state.fus1_w1.exp_avg": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"fus1_w1.*expected shape \(3, 3\)"):
        AdamW(named, lr=0.1).load_state_dict(bad)
    bad = {k: v for k, v in sd.items() if k != "state.fus1_w1.exp_avg_sq"}
    with pytest.raises(ValueError, match="fus1_w1"):
        AdamW(named, lr=0.1).load_state_dict(bad)


def test_state_dict_round_trips_through_a_checkpoint(rng, tmp_path):
    """The flat state dict is plain arrays, so minimner.checkpoint stores it without pickling."""
    from minimner.checkpoint import load_checkpoint, save_checkpoint
    named = _named_params(rng)
    opt = BertAdam(named, lr=0.1, t_total=100)
    for n, p in named:
        p.grad[...] = 1
    opt.step()
    save_checkpoint(tmp_path / "ck.npz", {n: p.data for n, p in named}, {"epoch": 1}, opt.state_dict())
    _, optim_state, _ = load_checkpoint(tmp_path / "ck.npz")
    opt2 = BertAdam(named, lr=0.5)
    opt2.load_state_dict(optim_state)
    assert opt2.lr == 0.1 and opt2.t_total == 100 and opt2.no_decay == opt.no_decay
    for n in opt.state:
        assert opt2.state[n]["step"] == 1
        np.testing.assert_array_equal(opt2.state[n]["exp_avg_sq"], opt.state[n]["exp_avg_sq"])


def test_adamw_step_can_zero_the_gradients_it_used(rng):
    """step(zero_grad=True) gives the same update as step() and leaves every gradient exactly zero."""
    from minimner.nn.module import Parameter
    from minimner.optim import AdamW

    shapes = [(300, 400), (7,), (3, 5)]                     # one large enough for the blocked CPU path
    ps = [[Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes] for _ in range(2)]
    for a, b in zip(*ps):
        b.data[...] = a.data
    opts = [AdamW([(f"w{i}", p) for i, p in enumerate(group)], lr=1e-2) for group in ps]
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for group in ps:
            for p, g in zip(group, grads):
                p.grad[...] = g
        opts[0].step()
        opts[1].step(zero_grad=True)
        for a, b in zip(*ps):
            np.testing.assert_array_equal(a.data, b.data)
            assert not b.grad.any()


@pytest.mark.parity
def test_adamw_lr_scale_matches_torch_parameter_groups(rng):
    """lr_scale = torch's parameter groups with their own lr (decay at each group's own rate)."""
    torch = pytest.importorskip("torch")
    named = _named_params(rng)
    scale = {"encoder.dense.weight": 0.1, "fus1_w1": 10.0, "fusion_bias": 0.0}
    t_params = {n: torch.tensor(p.data.copy(), requires_grad=True) for n, p in named}
    no_decay = ("bias", "LayerNorm.weight")
    base_lr = 0.01
    groups = [{"params": [t], "lr": base_lr * scale.get(n, 1.0),
               "weight_decay": 0.0 if any(s in n for s in no_decay) else 0.1} for n, t in t_params.items()]
    t_opt = torch.optim.AdamW(groups, lr=base_lr)
    opt = AdamW(named, lr=base_lr, weight_decay=0.1, no_decay=no_decay, lr_scale=scale)
    before = named[[n for n, _ in named].index("fusion_bias")][1].data.copy()
    for grads in _grads(rng, 6):
        for n, p in named:
            p.grad = grads[n].copy()
            t_params[n].grad = torch.tensor(grads[n])
        opt.step()
        t_opt.step()
    for n, p in named:
        np.testing.assert_allclose(p.data, t_params[n].detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
    np.testing.assert_array_equal(dict(named)["fusion_bias"].data, before)      # factor 0: never moves


def test_adamw_lr_scale_errors(rng):
    with pytest.raises(ValueError, match="does not have"):
        AdamW(_named_params(rng), lr=1e-3, lr_scale={"nope": 2.0})
    with pytest.raises(ValueError, match="non-negative"):
        AdamW(_named_params(rng), lr=1e-3, lr_scale={"fus1_w1": -1.0})
