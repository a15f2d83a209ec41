"""Checks of the tutorials' exercises: each grades a student's function with minimner's own tools.

Every check takes the student's function, runs it on fresh inputs and compares it with an oracle that
does not share its code: a float64 central-difference gradient check (``minimner.gradcheck``) with a
*random* upstream gradient, a brute-force enumeration, or the library function the exercise re-derives.

A check **never raises**: it prints a verdict and returns ``True`` (passed) or ``False``. A stub that
still raises ``NotImplementedError`` is reported as "not done yet"; a wrong answer as what is wrong
(the shape, the largest error and where it is, which case). That is what lets a notebook whose stubs
are untouched run top to bottom, and lets the test suite prove that every check can fail.

Use from a tutorial (the notebook's folder is ``tutorials/``)::

    from exercises import checks
    checks.layernorm_backward(layernorm_backward)
"""
from __future__ import annotations

import itertools
import json
import math
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from minimner.gradcheck import numerical_grad, rel_error

__all__ = ["EXERCISES", "Exercise"]


@dataclass(frozen=True)
class Exercise:
    notebook: str        # file name under tutorials/
    function: str        # the name of the function the stub cell defines (and the solution module holds)
    title: str
    check: Callable[[Callable], bool]


EXERCISES: dict[str, Exercise] = {}


class Fail(Exception):
    """A wrong answer: the message says what is wrong."""


def _exercise(notebook: str, title: str):
    def register(body):
        name = body.__name__

        def check(student) -> bool:
            try:
                detail = body(student)
            except NotImplementedError:
                print(f"✘ {title}: not done yet — `{name}` still raises NotImplementedError. "
                      f"Fill in the cell above and run this one again.")
                return False
            except Fail as e:
                print(f"✘ {title}: not yet right. {e}")
                return False
            except Exception as e:  # noqa: BLE001 — a student's bug is reported, never raised
                print(f"✘ {title}: your function raised {type(e).__name__}: {e}")
                return False
            print(f"✔ {title}: passed." + (f" {detail}" if detail else ""))
            return True

        check.__name__ = check.__qualname__ = name
        check.__doc__ = body.__doc__
        EXERCISES[name] = Exercise(notebook, name, title, check)
        return check

    return register


# ---------------------------------------------------------------------------------------------- helpers
def _compare(what: str, got, want, tol: float, rel: bool = False) -> float:
    """Raise Fail unless ``got`` has ``want``'s shape and is within ``tol`` (absolute, or relative)."""
    want = np.asarray(want)
    if got is None:
        raise Fail(f"{what}: you returned None, expected an array of shape {want.shape}.")
    got = np.asarray(got)
    if got.shape != want.shape:
        raise Fail(f"{what}: shape {got.shape}, expected {want.shape}.")
    if not np.isfinite(got).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        raise Fail(f"{what}: not finite at index {bad} ({got[bad]}).")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30) if rel else 1.0
    err = float(diff.max(initial=0.0)) / scale
    if err > tol:
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)) if diff.size else ()
        kind = "relative error" if rel else "|error|"
        raise Fail(f"{what}: max {kind} {err:.2e} > {tol:.0e}, worst at index {idx}: "
                   f"yours {float(got[idx]):.6g}, expected {float(want[idx]):.6g}.")
    return err


def _tuple(out, n: int, what: str):
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise Fail(f"{what} must return a tuple of {n} values; got {type(out).__name__}"
                   + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "") + ".")
    return out


def _gradcheck(loss, arrays: dict, analytic: dict, what: str, tol: float = 1e-6) -> float:
    """Compare each analytic gradient with central differences of ``loss``; raise Fail on the first wrong one."""
    worst = 0.0
    for name, x in arrays.items():
        a = analytic[name]
        if a is None:
            raise Fail(f"{what}: the gradient of {name} is None, expected an array of shape {x.shape}.")
        if np.shape(a) != x.shape:
            raise Fail(f"{what}: the gradient of {name} has shape {np.shape(a)}, expected {x.shape}.")
        a = np.asarray(a, dtype=np.float64)
        num = numerical_grad(loss, x)
        err = rel_error(a, num)
        if not err <= tol:
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(a - num))), a.shape))
            raise Fail(f"{what}: the gradient of {name} is wrong (relative error {err:.1e} against central "
                       f"differences, tolerance {tol:.0e}); worst at index {idx}: yours {a[idx]:.4g}, "
                       f"numerical {num[idx]:.4g}.")
        worst = max(worst, err)
    return worst


# =========================================================================== 01 · layer normalisation
def _ln_forward64(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return gamma * (x - mu) * r + beta


@_exercise("01_layernorm.ipynb", "Exercise 1.1 (vectorised LayerNorm backward)")
def layernorm_backward(student):
    """``layernorm_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` on (…, C) inputs."""
    rng = np.random.default_rng(101)
    worst = 0.0
    for shape in [(2, 3, 6), (5, 1, 4), (1, 7)]:
        x = rng.standard_normal(shape) * 2 + 1
        gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
        dy = rng.standard_normal(shape)                              # a random upstream gradient
        dx, dg, db = _tuple(student(dy, x.copy(), gamma.copy(), 1e-12), 3, "layernorm_backward")
        loss = lambda: float((_ln_forward64(x, gamma, beta, 1e-12) * dy).sum())
        worst = max(worst, _gradcheck(loss, {"x": x, "gamma": gamma, "beta": beta},
                                      {"x": dx, "gamma": dg, "beta": db}, f"x of shape {shape}"))
    return f"Largest relative error against central differences: {worst:.1e}."


@_exercise("01_layernorm.ipynb", "Exercise 1.2 (the derivative of the exact GELU)")
def gelu_grad(student):
    """``gelu_grad(x) -> d gelu(x) / dx`` elementwise, for gelu(x) = x Φ(x)."""
    from minimner._erf import erf_numpy
    gelu = lambda x: x * 0.5 * (1 + erf_numpy(x / math.sqrt(2)))
    x = np.linspace(-6, 6, 241)
    h = 1e-5
    numeric = (gelu(x + h) - gelu(x - h)) / (2 * h)
    got = student(x.copy())
    err = _compare("gelu_grad(x) on a grid of [-6, 6]", got, numeric, 1e-7)
    return f"Max |error| against central differences: {err:.1e}."


def _rms_forward64(x, gamma, eps):
    return gamma * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)


@_exercise("01_layernorm.ipynb", "Exercise 1.3 (RMSNorm backward)")
def rmsnorm_backward(student):
    """``rmsnorm_backward(dy, x, gamma, eps) -> (dx, dgamma)`` for y = γ x / sqrt(mean(x²) + ε)."""
    rng = np.random.default_rng(103)
    worst = 0.0
    for shape in [(2, 3, 5), (4, 8)]:
        x, gamma, dy = rng.standard_normal(shape), rng.standard_normal(shape[-1]), rng.standard_normal(shape)
        dx, dg = _tuple(student(dy, x.copy(), gamma.copy(), 1e-6), 2, "rmsnorm_backward")
        loss = lambda: float((_rms_forward64(x, gamma, 1e-6) * dy).sum())
        worst = max(worst, _gradcheck(loss, {"x": x, "gamma": gamma}, {"x": dx, "gamma": dg},
                                      f"x of shape {shape}"))
    return f"Largest relative error against central differences: {worst:.1e}."


# =================================================================================== 02 · attention
@_exercise("02_attention.ipynb", "Exercise 2.1 (softmax backward)")
def softmax_backward(student):
    """``softmax_backward(dp, p) -> ds`` for p = softmax(s) over the last axis."""
    rng = np.random.default_rng(201)
    worst = 0.0
    for shape in [(3, 4), (2, 2, 3, 5)]:
        s, dp = rng.standard_normal(shape), rng.standard_normal(shape)
        sm = lambda: np.exp(s - s.max(-1, keepdims=True)) / np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)
        ds = student(dp.copy(), sm())
        loss = lambda: float((sm() * dp).sum())
        worst = max(worst, _gradcheck(loss, {"s": s}, {"s": ds}, f"scores of shape {shape}"))
    return f"Largest relative error against central differences: {worst:.1e}."


@_exercise("02_attention.ipynb", "Exercise 2.2 (one head's masked attention probabilities)")
def masked_attention_probs(student):
    """``masked_attention_probs(q, k, mask) -> P (Lq, Lk)`` for one example and one head."""
    from minimner.ops.attention import attention_forward
    rng = np.random.default_rng(202)
    cases = [("two padding keys", np.array([1, 1, 1, 0, 0])),
             ("no padding", np.ones(5, int)),
             ("every key is padding", np.zeros(5, int))]
    for name, mask in cases:
        q, k = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
        want = attention_forward(q[None], k[None], k[None], mask[None], 1)[1][0, 0]   # (Lq, Lk)
        got = student(q.copy(), k.copy(), mask.copy())
        _compare(f"case '{name}'", got, want, 1e-10)
        if name == "two padding keys" and np.asarray(got)[:, 3:].any():
            raise Fail("a padding key got a non-zero weight: with the −10000 mask exp() underflows to exactly 0.")
    return "Padding keys get exactly zero weight, and an all-padding row stays finite."


@_exercise("02_attention.ipynb", "Exercise 2.3 (one head's attention backward)")
def head_backward(student):
    """``head_backward(dctx, q, k, v) -> (dq, dk, dv)`` for ctx = softmax(q kᵀ / √D) v, one head."""
    rng = np.random.default_rng(203)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    dctx = rng.standard_normal((3, 4))

    def forward():
        s = q @ k.T / math.sqrt(q.shape[1])
        p = np.exp(s - s.max(-1, keepdims=True))
        return (p / p.sum(-1, keepdims=True)) @ v

    dq, dk, dv = _tuple(student(dctx.copy(), q.copy(), k.copy(), v.copy()), 3, "head_backward")
    err = _gradcheck(lambda: float((forward() * dctx).sum()), {"q": q, "k": k, "v": v},
                     {"q": dq, "k": dk, "v": dv}, "one head")
    return f"Largest relative error against central differences: {err:.1e}."


# ======================================================================== 03 · convolution, BN, pool
@_exercise("03_conv_bn.ipynb", "Exercise 3.1 (convolution as im2col + one matrix product)")
def conv2d_im2col(student):
    """``conv2d_im2col(x, w, bias, stride, pad) -> y (B, O, Ho, Wo)``."""
    from minimner.ops.conv2d import conv2d_forward
    rng = np.random.default_rng(301)
    for (B, C, H, W, O, k, s, p) in [(2, 3, 6, 5, 4, 3, 2, 1), (1, 2, 5, 5, 3, 3, 1, 0),
                                     (2, 4, 4, 3, 2, 1, 1, 0), (1, 1, 7, 6, 2, 2, 3, 1)]:
        x, w, b = rng.standard_normal((B, C, H, W)), rng.standard_normal((O, C, k, k)), rng.standard_normal(O)
        want = conv2d_forward(x, w, b, s, p)[0]
        _compare(f"kernel {k}×{k}, stride {s}, padding {p}, input {x.shape}", student(x.copy(), w.copy(), b.copy(), s, p),
                 want, 1e-10)
    return "Equal to minimner.ops.conv2d for 1×1, 2×2 and 3×3 kernels, with and without stride and padding."


@_exercise("03_conv_bn.ipynb", "Exercise 3.2 (folding an eval-mode BatchNorm into the convolution)")
def fold_bn(student):
    """``fold_bn(w, b, gamma, beta, mean, var, eps) -> (w', b')``."""
    from minimner.ops.batchnorm2d import batchnorm2d_eval_forward
    from minimner.ops.conv2d import conv2d_forward
    rng = np.random.default_rng(302)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    g, beta = rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4)
    mu, var = rng.normal(0, 0.5, 4), rng.uniform(0.5, 2, 4)
    wf, bf = _tuple(student(w.copy(), b.copy(), g, beta, mu, var, 1e-5), 2, "fold_bn")
    if np.shape(wf) != w.shape or np.shape(bf) != b.shape:
        raise Fail(f"shapes {np.shape(wf)} and {np.shape(bf)}, expected {w.shape} and {b.shape}.")
    want = batchnorm2d_eval_forward(conv2d_forward(x, w, b, 1, 1)[0], g, beta, mu, var, 1e-5)[0]
    err = _compare("conv(x, w', b') against bn(conv(x, w, b))", conv2d_forward(x, np.asarray(wf), np.asarray(bf), 1, 1)[0],
                   want, 1e-10)
    return f"The folded convolution equals convolution then BN (max |error| {err:.1e})."


@_exercise("03_conv_bn.ipynb", "Exercise 3.3 (max-pool backward, first maximum wins)")
def maxpool_backward(student):
    """``maxpool_backward(dy, x, k, stride) -> dx`` (no padding)."""
    from minimner.ops.pool import maxpool2d_backward, maxpool2d_forward
    rng = np.random.default_rng(303)
    x = rng.standard_normal((2, 3, 7, 6))
    xt = np.zeros((1, 1, 4, 4)); xt[0, 0, 1, 1] = xt[0, 0, 2, 2] = 5.0      # a tie in every window
    for name, xx, k, s in [("random input, k=3, stride 2", x, 3, 2), ("random input, k=2, stride 1", x, 2, 1),
                           ("tied maxima, k=3, stride 1", xt, 3, 1)]:
        y, cache = maxpool2d_forward(xx, k, s, 0)
        dy = rng.standard_normal(y.shape)
        _compare(name, student(dy.copy(), xx.copy(), k, s), maxpool2d_backward(dy, cache), 1e-12)
    return "Overlapping windows add up, and a tie goes to the first maximum in row-major order."


# ======================================================================== 04 · fusion gate
@_exercise("04_fusion_gate.ipynb", "Exercise 4.1 (the gate's backward, vectorised)")
def gate_backward(student):
    """``gate_backward(dout, a, b, w1, w2, bias) -> (da, db, dw1, dw2, dbias)``."""
    from minimner.ops.gate import gate_forward
    rng = np.random.default_rng(401)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    w1, w2, bias = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((4, 4)) * 0.5, rng.standard_normal(4) * 0.5
    dout = rng.standard_normal((2, 3, 4))
    out = _tuple(student(dout.copy(), a.copy(), b.copy(), w1.copy(), w2.copy(), bias.copy()), 5, "gate_backward")
    arrays = {"a": a, "b": b, "w1": w1, "w2": w2, "bias": bias}
    err = _gradcheck(lambda: float((gate_forward(a, b, w1, w2, bias)[0] * dout).sum()), arrays,
                     dict(zip(arrays, out)), "the gate")
    return f"Largest relative error against central differences: {err:.1e}."


@_exercise("04_fusion_gate.ipynb", "Exercise 4.2 (mixing with a broadcast gate)")
def mix_backward(student):
    """``mix_backward(dout, a, b, g) -> (da, db, dg)`` for out = g a + (1 − g) b, g (…, C) or (…, 1)."""
    rng = np.random.default_rng(402)
    worst = 0.0
    for gshape in [(2, 3, 4), (2, 3, 1)]:
        a, b, dout = (rng.standard_normal((2, 3, 4)) for _ in range(3))
        g = rng.uniform(0.1, 0.9, gshape)
        out = _tuple(student(dout.copy(), a.copy(), b.copy(), g.copy()), 3, "mix_backward")
        worst = max(worst, _gradcheck(lambda: float(((g * a + (1 - g) * b) * dout).sum()), {"a": a, "b": b, "g": g},
                                      dict(zip("abg", out)), f"a gate of shape {gshape}"))
    return f"Largest relative error against central differences: {worst:.1e} (a (…, 1) gate sums over C)."


@_exercise("04_fusion_gate.ipynb", "Exercise 4.3 (additive augmentation without the bias leak)")
def augment_add_no_leak(student):
    """``augment_add_no_leak(s0, aug, weight, bias) -> S``: S⁰ + a Wᵀ + b only where a row of aug is non-zero."""
    from minimner.nn.augment import AugmentAdd
    rng = np.random.default_rng(403)
    E, C = 3, 4
    add = AugmentAdd(E, C, rng=np.random.default_rng(7))
    s0 = rng.standard_normal((2, 5, C)).astype(np.float32)
    aug = np.zeros((2, 5, E), np.float32)
    has = np.array([[0, 1, 1, 0, 0], [0, 1, 0, 1, 0]], bool)
    aug[has] = rng.standard_normal((int(has.sum()), E))
    w, b = add.maug_linear.weight.data, add.maug_linear.bias.data
    got = student(s0.copy(), aug.copy(), w.copy(), b.copy())
    ref = add.forward(s0, aug)                                             # the leaking default
    _compare("positions without a vector ([CLS], later pieces, padding) must keep S⁰",
             None if got is None else np.asarray(got)[~has], s0[~has], 0.0)
    _compare("positions with a vector must equal the `add` module's output", np.asarray(got)[has], ref[has], 1e-6)
    return "S⁰ is untouched where there is no vector, and equals `add` where there is one."


# ================================================================================== 05 · CRF
def _crf_params(rng, T, K, scale=1.0):
    return (rng.standard_normal((T, K)) * scale, rng.uniform(-1, 1, K), rng.uniform(-1, 1, K),
            rng.uniform(-1, 1, (K, K)))


def _all_scores(e, start, end, trans):
    T, K = e.shape
    paths = list(itertools.product(range(K), repeat=T))
    scores = np.array([start[y[0]] + end[y[-1]] + sum(e[t, y[t]] for t in range(T))
                       + sum(trans[y[t - 1], y[t]] for t in range(1, T)) for y in paths])
    return paths, scores


@_exercise("05_crf.ipynb", "Exercise 5.1 (log Z by the forward algorithm)")
def log_partition(student):
    """``log_partition(e, start, end, trans) -> log Z`` for one sentence, e (T, K)."""
    from minimner import crf as C
    rng = np.random.default_rng(501)
    for T, K in [(1, 3), (4, 3), (5, 2)]:
        e, s, en, tr = _crf_params(rng, T, K)
        _, scores = _all_scores(e, s, en, tr)
        m = scores.max()
        _compare(f"T={T}, K={K} against the sum over all {K ** T} paths", student(e.copy(), s, en, tr),
                 m + np.log(np.exp(scores - m).sum()), 1e-10)
    e, s, en, tr = _crf_params(rng, 40, 13, scale=1000.0)                # exp() of these would overflow
    want = C.crf_log_partition(e[None], np.ones((1, 40), bool), s, en, tr)[0]
    _compare("T=40, K=13, emissions of size 1000 (log-space, max-subtracted?)", student(e.copy(), s, en, tr), want,
             1e-9, rel=True)
    return "Equal to brute-force enumeration, and stable for large scores."


@_exercise("05_crf.ipynb", "Exercise 5.2 (Viterbi against brute force)")
def viterbi(student):
    """``viterbi(e, start, end, trans) -> (path, score)``, the best tag sequence and its score."""
    rng = np.random.default_rng(502)
    for T, K in [(1, 4), (5, 3), (6, 2), (4, 4)]:
        e, s, en, tr = _crf_params(rng, T, K)
        paths, scores = _all_scores(e, s, en, tr)
        best = int(np.argmax(scores))
        path, score = _tuple(student(e.copy(), s, en, tr), 2, "viterbi")
        path = [int(t) for t in path]
        if tuple(path) != paths[best]:
            raise Fail(f"T={T}, K={K}: your path {path}, the best by enumeration {list(paths[best])} "
                       f"(score {scores[best]:.4f}).")
        _compare(f"T={T}, K={K}: the best path's score", score, scores[best], 1e-10)
    return "The best path and its score agree with enumeration on every case."


@_exercise("05_crf.ipynb", "Exercise 5.3 (marginals by forward-backward)")
def marginals(student):
    """``marginals(e, start, end, trans) -> P (T, K)``, P[t, k] = P(y_t = k)."""
    rng = np.random.default_rng(503)
    for T, K in [(1, 3), (4, 3), (5, 2)]:
        e, s, en, tr = _crf_params(rng, T, K)
        paths, scores = _all_scores(e, s, en, tr)
        p = np.exp(scores - scores.max()); p /= p.sum()
        want = np.zeros((T, K))
        for y, py in zip(paths, p):
            want[np.arange(T), y] += py
        _compare(f"T={T}, K={K} against enumeration of all {K ** T} paths", student(e.copy(), s, en, tr), want, 1e-10)
    return "Equal to the brute-force marginals (and so to ∂ log Z / ∂e)."


# ============================================================================ 06 · converters
def _write_safetensors(path: Path, arrays: dict) -> None:
    codes = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}
    header, blobs, offset = {"__metadata__": {"format": "np"}}, [], 0
    for name, a in arrays.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@_exercise("06_converters.ipynb", "Exercise 6.1 (reading a safetensors file by hand)")
def read_safetensors(student):
    """``read_safetensors(path) -> {name: array}`` with the file's dtypes and shapes."""
    rng = np.random.default_rng(601)
    arrays = {"embeddings.word_embeddings.weight": rng.standard_normal((5, 3)).astype(np.float32),
              "pooler.dense.bias": rng.standard_normal(3),
              "embeddings.position_ids": np.arange(6, dtype=np.int64)[None],
              "encoder.layer.0.output.LayerNorm.weight": rng.standard_normal(4).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        _write_safetensors(path, arrays)
        got = student(str(path))
    if not isinstance(got, dict):
        raise Fail(f"return a dict name -> array; got {type(got).__name__}.")
    if set(got) != set(arrays):
        raise Fail(f"keys {sorted(got)}, expected {sorted(arrays)} (is __metadata__ skipped?).")
    for name, a in arrays.items():
        g = np.asarray(got[name])
        if g.dtype != a.dtype:
            raise Fail(f"{name}: dtype {g.dtype}, expected {a.dtype}.")
        _compare(name, g, a, 0.0)
    return "Every tensor read back with its dtype and shape, bit for bit."


@_exercise("06_converters.ipynb", "Exercise 6.2 (a prefix-renaming converter with strict key accounting)")
def convert_state_dict(student):
    """``convert_state_dict(source, rules, expected) -> {name: array}``; ValueError naming the key on any mismatch."""
    rng = np.random.default_rng(602)
    expected = {"embeddings.word_embeddings.weight": (6, 4), "encoder.layer.0.attention.self.query.weight": (4, 4),
                "encoder.layer.0.attention.self.query.bias": (4,)}
    rules = [("0.auto_model.", ""), ("1.pooling.", None)]      # None: a key to drop on purpose
    source = {"0.auto_model." + k: rng.standard_normal(s).astype(np.float32) for k, s in expected.items()}
    source["1.pooling.config"] = np.zeros(1, np.float32)
    got = student(dict(source), rules, dict(expected))
    if not isinstance(got, dict) or set(got) != set(expected):
        raise Fail(f"the sentence-transformers checkpoint should convert to the keys {sorted(expected)}; "
                   f"got {sorted(got) if isinstance(got, dict) else type(got).__name__}.")
    for k in expected:
        _compare(k, got[k], source["0.auto_model." + k], 0.0)
    bad_cases = {
        "an unknown key": ({**source, "2.dense.weight": np.zeros(2, np.float32)}, "2.dense.weight"),
        "a missing key": ({k: v for k, v in source.items() if not k.endswith("query.bias")}, "query.bias"),
        "a wrong shape": ({**source, "0.auto_model.embeddings.word_embeddings.weight": np.zeros((6, 5), np.float32)},
                          "word_embeddings"),
        "a renamed key the model does not have": ({**source, "0.auto_model.encoder.layer.9.x": np.zeros(1, np.float32)},
                                                  "encoder.layer.9.x"),
    }
    for what, (src, needle) in bad_cases.items():
        try:
            student(src, rules, dict(expected))
        except ValueError as e:
            if needle not in str(e):
                raise Fail(f"with {what}, the ValueError should name the key ('{needle}'); it said: {e}") from None
            continue
        raise Fail(f"a checkpoint with {what} was accepted: raise ValueError naming the key.")
    return "Renames, drops on purpose, and refuses unknown, missing and mis-shaped keys by name."


@_exercise("06_converters.ipynb", "Exercise 6.3 (WordPiece: greedy longest match first)")
def wordpiece(student):
    """``wordpiece(word, vocab) -> list of pieces`` ('##' marks a continuation; ['[UNK]'] when stuck)."""
    from minimner.tokenization import BertWordPieceTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "##a", "play", "##ing", "##s", "p",
             "##l", "##ay", "runn", "##er", "##n", "a", "##b"]
    tok = BertWordPieceTokenizer.from_vocab({p: i for i, p in enumerate(vocab)})
    for word in ["unaffable", "playing", "plays", "play", "runner", "a", "xyz", "aplay", "ab", "unaffablez"]:
        want = tok.convert_ids_to_tokens(tok.word_pieces(word))
        got = student(word, set(vocab))
        if list(got) != want:
            raise Fail(f"'{word}': yours {list(got)}, expected {want}.")
    return "Same pieces as the BERT tokenizer on every word, [UNK] included."


# ============================================================================== 07 · training
@_exercise("07_training.ipynb", "Exercise 7.1 (one AdamW step)")
def adamw_step(student):
    """``adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay) -> (p, m, v)`` for step t ≥ 1."""
    from minimner.nn.module import Parameter
    from minimner.optim import AdamW
    rng = np.random.default_rng(701)
    for wd in (0.01, 0.0):
        p0 = rng.standard_normal((3, 4))
        param = Parameter(p0.copy())
        opt = AdamW([("weight", param)], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for t in range(1, 6):
            g = rng.standard_normal((3, 4))
            param.grad[...] = g
            opt.step()
            p, m, v = _tuple(student(p, g.copy(), m, v, t, 0.1, (0.9, 0.99), 1e-8, wd), 3, "adamw_step")
            _compare(f"weight decay {wd}, step {t}: the parameter", p, param.data, 1e-10)
            _compare(f"weight decay {wd}, step {t}: the first moment m", m, opt.state["weight"]["exp_avg"], 1e-12)
            _compare(f"weight decay {wd}, step {t}: the second moment v", v, opt.state["weight"]["exp_avg_sq"], 1e-12)
    return "Five steps equal minimner.optim.AdamW, with and without decoupled weight decay."


@_exercise("07_training.ipynb", "Exercise 7.2 (linear warmup, then linear decay)")
def warmup_decay(student):
    """``warmup_decay(step, total, warmup) -> learning-rate multiplier``."""
    from minimner.optim import linear_warmup_decay
    for total, warmup in [(100, 10), (50, 0), (20, 20), (7, 3)]:
        for step in range(0, total + 3):
            want = linear_warmup_decay(step, total, warmup)
            got = student(step, total, warmup)
            if got is None or abs(float(got) - want) > 1e-12:
                raise Fail(f"total={total}, warmup={warmup}, step={step}: yours {got}, expected {want:.6g}.")
    return "Equal to minimner.optim.linear_warmup_decay, warmup-free and decay-free schedules included."


@_exercise("07_training.ipynb", "Exercise 7.3 (clipping by the global gradient norm)")
def clip_global_norm(student):
    """``clip_global_norm(grads, max_norm) -> (clipped list, norm before clipping)``; eps = 1e-6 as torch."""
    from minimner.nn.module import Parameter
    from minimner.optim import clip_grad_norm
    rng = np.random.default_rng(703)
    for max_norm in (1.0, 100.0):
        grads = [rng.standard_normal((3, 4)), rng.standard_normal(5), rng.standard_normal((2, 2, 2))]
        params = []
        for g in grads:
            p = Parameter(np.zeros_like(g)); p.grad[...] = g; params.append(p)
        norm = float(clip_grad_norm(params, max_norm))
        out, total = _tuple(student([g.copy() for g in grads], max_norm), 2, "clip_global_norm")
        _compare(f"max_norm={max_norm}: the global norm", total, norm, 1e-10)
        if len(out) != len(grads):
            raise Fail(f"return one clipped gradient per input gradient ({len(grads)}); got {len(out)}.")
        for i, (o, p) in enumerate(zip(out, params)):
            _compare(f"max_norm={max_norm}: gradient {i}", o, p.grad, 1e-12)
    return "Equal to minimner.optim.clip_grad_norm whether or not the norm is over the limit."


# ====================================================================== 08 · semantic augmentation
def _tiny_lexicon(rng):
    v = rng.standard_normal((12, 5))
    v[3] = 0.0                                  # a word without a usable vector: its cosine is 0 with everything
    v[7] = v[2]                                 # a duplicate of word 2: tied cosines with every word
    return v


@_exercise("08_semantic_augmentation.ipynb", "Exercise 8.1 (top-k cosine neighbours)")
def cosine_neighbours(student):
    """``cosine_neighbours(vectors, query, k) -> (ids, sims)``, the word itself excluded."""
    from minimner.lexicon.neighbours import normalise_rows, topk_cosine
    rng = np.random.default_rng(801)
    vec = _tiny_lexicon(rng)
    unit = normalise_rows(vec.astype(np.float32))
    for query in (0, 2, 3, 11):
        ids, sims = topk_cosine(unit, np.array([query]), 4)
        got = _tuple(student(vec.copy(), query, 4), 2, "cosine_neighbours")
        if [int(i) for i in got[0]] != ids[0].tolist():
            raise Fail(f"word {query}: neighbours {[int(i) for i in got[0]]}, expected {ids[0].tolist()} "
                       f"(most similar first; ties by the lower index; the word itself excluded).")
        _compare(f"word {query}: similarities", got[1], sims[0], 1e-5)
    return "Same neighbours and cosines as minimner.lexicon.topk_cosine."


@_exercise("08_semantic_augmentation.ipynb", "Exercise 8.2 (the augmentation vector of one word)")
def augmentation_vector(student):
    """``augmentation_vector(vectors, ids, sims) -> (E,)``, the softmax(sims)-weighted sum of the raw vectors."""
    from minimner.lexicon.neighbours import softmax_weights, weighted_sum
    rng = np.random.default_rng(802)
    vec = _tiny_lexicon(rng)
    for ids, sims in [(np.array([4, 1, 9, 2]), np.array([0.9, 0.5, 0.4, -0.2])),
                      (np.array([5, 6]), np.array([30.0, 29.0]))]:
        want = weighted_sum(vec, ids[None], softmax_weights(sims[None]))[0]
        _compare(f"neighbours {ids.tolist()} with cosines {sims.tolist()}", student(vec.copy(), ids, sims.copy()),
                 want, 1e-10)
    return "Equal to minimner.lexicon's softmax_weights + weighted_sum (raw vectors, not unit ones)."


@_exercise("08_semantic_augmentation.ipynb", "Exercise 8.3 (the per-position input a)")
def position_input(student):
    """``position_input(first_piece, word_vectors, T) -> a (T, E)``: A[w] at word w's first piece, zero elsewhere."""
    rng = np.random.default_rng(803)
    first_piece = np.array([1, 2, 4, 5])             # [CLS] w0 w1 ##w1 w2 w3 [SEP] [PAD]
    words = rng.standard_normal((4, 3))
    want = np.zeros((8, 3)); want[first_piece] = words
    _compare("a for [CLS] w0 w1 ##w1 w2 w3 [SEP] [PAD]", student(first_piece.copy(), words.copy(), 8), want, 0.0)
    return "Vectors at first pieces only; [CLS], [SEP], later pieces and padding stay zero."


# ============================================================================ 09 · image features
@_exercise("09_image_features.ipynb", "Exercise 9.1 (the eval transform's resize and centre crop)")
def eval_crop_box(student):
    """``eval_crop_box(w, h) -> (new_w, new_h, left, top)``: shorter side to 256, centre 224 crop."""
    from PIL import Image

    from minimner.vision.images import eval_transform
    rng = np.random.default_rng(901)
    for w, h in [(500, 375), (375, 500), (400, 400), (341, 256), (343, 256), (256, 347), (611, 401), (257, 390)]:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        box = _tuple(student(w, h), 4, "eval_crop_box")
        nw, nh, left, top = (int(v) for v in box)
        resized = im if (nw, nh) == (w, h) else im.resize((nw, nh), Image.BILINEAR)
        mine = np.asarray(resized.crop((left, top, left + 224, top + 224)))
        if mine.shape != (224, 224, 3) or not np.array_equal(mine, np.asarray(eval_transform(im))):
            raise Fail(f"a {w}×{h} picture: your box (resize to {nw}×{nh}, crop at left={left}, top={top}) does not "
                       f"give eval_transform's pixels (floor the longer side; round halves to even).")
    return "Pixel for pixel the crop of minimner.vision.images.eval_transform."


@_exercise("09_image_features.ipynb", "Exercise 9.2 (ImageNet normalisation, HWC uint8 to CHW float32)")
def normalise_image(student):
    """``normalise_image(pixels (S, S, 3) uint8) -> (3, S, S) float32``."""
    from PIL import Image

    from minimner.vision.images import normalise
    pixels = np.random.default_rng(902).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    got = student(pixels.copy())
    if np.asarray(got).dtype != np.float32:
        raise Fail(f"dtype {np.asarray(got).dtype}, expected float32.")
    err = _compare("the normalised image", got, normalise(Image.fromarray(pixels)), 1e-5)
    return f"Equal to minimner.vision.images.normalise (max |error| {err:.1e})."


@_exercise("09_image_features.ipynb", "Exercise 9.3 (the grid of regions)")
def grid_regions(student):
    """``grid_regions(fmap (B, C, 7, 7)) -> (B, 49, C)`` with region r = 7·row + col."""
    rng = np.random.default_rng(903)
    fmap = rng.standard_normal((2, 5, 7, 7))
    want = np.stack([[fmap[b, :, r // 7, r % 7] for r in range(49)] for b in range(2)])   # by the definition
    _compare("regions of a (2, 5, 7, 7) map", student(fmap.copy()), want, 0.0)
    return "Region r is the map's column (r // 7, r % 7), read row by row."


# ======================================================================= 10 · the cross-modal model
@_exercise("10_cross_modal_model.ipynb", "Exercise 10.1 (text-to-object attention and its mask)")
def object_attention_probs(student):
    """``object_attention_probs(q, k, obj_ids, heads) -> (B, H, T, O)``, keys masked where obj_ids == 0."""
    from minimner.ops.attention import attention_forward
    rng = np.random.default_rng(1001)
    q, k = rng.standard_normal((3, 4, 6)), rng.standard_normal((3, 5, 6))
    obj = np.array([[3, 17, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])    # the last image has no objects
    want = attention_forward(q, k, k, (obj != 0).astype(np.int64), 2)[1]
    got = student(q.copy(), k.copy(), obj.copy(), 2)
    for b, what in enumerate(["two objects", "five objects", "no object at all"]):
        _compare(f"image {b} ({what})", None if got is None else np.asarray(got)[b], want[b], 1e-10)
    return "Empty slots get zero weight; an image without objects still attends (finite −10000 mask)."


@_exercise("10_cross_modal_model.ipynb", "Exercise 10.2 (gate of gates: F1, F2 and the gate over them)")
def gate_of_gates(student):
    """``gate_of_gates(u_img, u_imgtxt, u_obj, u_objtxt, params) -> Fv``, fusion method 1 in eval mode."""
    from minimner.models.fusion import GateOfGatesFusion
    rng = np.random.default_rng(1002)
    fus = GateOfGatesFusion(4, rng=np.random.default_rng(3)).double().eval()
    u = [rng.standard_normal((2, 3, 4)) for _ in range(4)]
    params = {k: np.array(v) for k, v in fus.state_dict().items()}
    want = fus.forward(*u)
    _compare("Fv", student(*(x.copy() for x in u), params), want, 1e-10)
    return "Equal to GateOfGatesFusion (F1 = gate1(U_img, U_imgtxt), F2 = gate2(U_objtxt, U_obj), gate3(F1, F2))."


@_exercise("10_cross_modal_model.ipynb", "Exercise 10.3 (the merge Z = [M; Fv] W_f + b_f, backward)")
def merge_backward(student):
    """``merge_backward(dz, m, fv, w) -> (dm, dfv, dw, db)`` for Z = concat(M, Fv) @ W + b, W (2H, H)."""
    rng = np.random.default_rng(1003)
    m, fv, dz = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    w, b = rng.standard_normal((8, 4)), rng.standard_normal(4)
    out = _tuple(student(dz.copy(), m.copy(), fv.copy(), w.copy()), 4, "merge_backward")
    arrays = {"m": m, "fv": fv, "w": w, "b": b}
    err = _gradcheck(lambda: float(((np.concatenate([m, fv], -1) @ w + b) * dz).sum()), arrays,
                     dict(zip(arrays, out)), "the merge")
    return f"Largest relative error against central differences: {err:.1e}."


# ============================================================ 11 · training and evaluating MGCMT
_TYPES = ("PER", "LOC", "ORG", "MISC")


def _iob2(n: int, entities) -> list[str]:
    """Valid IOB2 tags of a sentence of ``n`` words holding ``entities`` = [(type, start, end)], end exclusive."""
    tags = ["O"] * n
    for typ, a, b in entities:
        tags[a:b] = [f"B-{typ}"] + [f"I-{typ}"] * (b - a - 1)
    return tags


def _shown(value) -> str:
    """A student's returned value as a message shows it: numbers at 6 significant digits."""
    return f"{float(value):.6g}" if isinstance(value, (int, float, np.number)) else repr(value)


def _random_entities(rng, n: int) -> list:
    """Non-overlapping entities of length 1 to 3 (adjacent ones included) in a sentence of ``n`` words."""
    out, i = [], int(rng.integers(0, 2))
    while i < n:
        length = int(rng.integers(1, 4))
        if i + length <= n and rng.random() < 0.6:
            out.append((_TYPES[int(rng.integers(len(_TYPES)))], i, i + length))
            i += length + int(rng.integers(0, 3))           # 0: the next entity starts right after this one
        else:
            i += 1
    return out


def _corrupted(rng, n: int, gold: list) -> list:
    """A prediction made from ``gold``: entities kept, retyped, stretched, shrunk, shifted or dropped."""
    pred = []
    for typ, a, b in gold:
        kind = rng.choice(["keep", "keep", "type", "longer", "shorter", "later", "earlier", "drop"])
        if kind == "type":
            typ = _TYPES[(_TYPES.index(typ) + int(rng.integers(1, len(_TYPES)))) % len(_TYPES)]
        elif kind == "longer":
            b = min(n, b + 1)
        elif kind == "shorter" and b - a > 1:
            b -= 1
        elif kind == "later" and b - a > 1:
            a += 1
        elif kind == "earlier":
            a = max(0, a - 1)
        elif kind == "drop":
            continue
        pred.append((typ, a, b))
    kept, end = [], 0                                       # drop what now overlaps the entity before it
    for typ, a, b in sorted(pred, key=lambda e: (e[1], e[2])):
        if a >= end:
            kept.append((typ, a, b))
            end = b
    return kept


def _same_share(case: str, got, want, none_note: str, hint: str) -> None:
    """A share (a float in [0, 1], or None when nothing is counted) equal to the oracle's, else a Fail saying why."""
    if want is None:
        if got is not None:
            raise Fail(f"case '{case}': yours {_shown(got)}, expected None ({none_note}).")
        return
    if got is None or not isinstance(got, (int, float, np.number)) or abs(float(got) - want) > 1e-12:
        raise Fail(f"case '{case}': yours {_shown(got)}, expected {want:.6g} ({hint}).")


@_exercise("11_multimodal_training.ipynb", "Exercise 11.1 (exact span-and-type recall over a group of entities)")
def group_recall(student):
    """``group_recall(gold_tags, pred_tags, spans) -> share of spans predicted exactly, or None``."""
    from types import SimpleNamespace

    from minimner.cli.demo import group_recall as library
    cases = [("right boundaries, wrong type", [["B-PER", "I-PER", "O"]], [["B-ORG", "I-ORG", "O"]], [(0, 0, 2)]),
             ("same start and type, one word longer", [["B-PER", "O", "O"]], [["B-PER", "I-PER", "O"]], [(0, 0, 1)]),
             ("same start and type, one word shorter", [["O", "B-LOC", "I-LOC"]], [["O", "B-LOC", "O"]], [(0, 1, 3)]),
             ("two adjacent gold entities predicted as one", [["B-PER", "B-PER", "O"]], [["B-PER", "I-PER", "O"]],
              [(0, 0, 1), (0, 1, 2)]),
             ("an exact match among mistakes", [["B-ORG", "O", "B-LOC", "I-LOC"], ["O", "B-PER"]],
              [["B-ORG", "O", "B-LOC", "O"], ["B-PER", "I-PER"]], [(0, 0, 1), (0, 2, 4), (1, 1, 2)]),
             ("no spans in the group", [["B-PER", "O"]], [["B-PER", "O"]], [])]
    rng = np.random.default_rng(1101)
    for k in range(4):                                      # fresh random groups, scored by the library
        lengths = rng.integers(4, 13, 15)
        gold = [_random_entities(rng, int(n)) for n in lengths]
        pred = [_corrupted(rng, int(n), g) for n, g in zip(lengths, gold)]
        spans = [(i, a, b) for i, g in enumerate(gold) for _, a, b in g if rng.random() < 0.7]
        cases.append((f"random group {k + 1} ({len(spans)} spans in 15 sentences)",
                      [_iob2(int(n), g) for n, g in zip(lengths, gold)],
                      [_iob2(int(n), p) for n, p in zip(lengths, pred)], spans))
    for name, gold_tags, pred_tags, spans in cases:
        want = library([SimpleNamespace(tags=t) for t in gold_tags], pred_tags, spans)
        got = student([list(t) for t in gold_tags], [list(t) for t in pred_tags], list(spans))
        _same_share(name, got, want, "no spans: the recall is undefined, not 0",
                    "a span counts only when a predicted entity has exactly its start, its end and its gold type")
    return "Equal to minimner.cli.demo.group_recall: exact boundaries and type, nothing for an overlap."


@_exercise("11_multimodal_training.ipynb", "Exercise 11.2 (another tweet's picture, never its own)")
def cyclic_remap(student):
    """``cyclic_remap(image_ids, rng) -> {id: another id}``: one random cycle through the distinct ids."""
    rng = np.random.default_rng(1102)
    cases = [["17_06_4", "17_06_9"], ["16_05_3", "17_01_2", "16_05_3", "17_02_8"],      # a repeated id
             [f"img{k:02d}" for k in rng.permutation(12)]]
    for ids in cases:
        distinct = set(ids)
        for draw in range(50):
            got = student(list(ids), np.random.default_rng([1102, draw]))
            if not isinstance(got, dict):
                raise Fail(f"return a dict {{image id: another image id}}; got {type(got).__name__}.")
            if set(got) != distinct or sorted(got.values()) != sorted(distinct):
                raise Fail(f"ids {ids}, draw {draw}: keys {sorted(got)} and values {sorted(got.values())} must both be "
                           f"the distinct ids {sorted(distinct)}, each once (a permutation of the pictures).")
            same = [k for k, v in got.items() if k == v]
            if same:
                raise Fail(f"ids {ids}, draw {draw}: {same[0]!r} keeps its own picture; every tweet must get "
                           f"another's (a random permutation leaves fixed points).")
            start, seen, k = next(iter(got)), 1, got[next(iter(got))]
            while k != start:
                k, seen = got[k], seen + 1
            if seen != len(distinct):
                raise Fail(f"ids {ids}, draw {draw}: following the map from {start!r} comes back after {seen} of "
                           f"{len(distinct)} pictures; make it one cycle through all of them, as "
                           f"minimner.data.ablation.cyclic_remap does.")
    ids = ["a", "b", "c", "d"]                              # (4 − 1)! = 6 cycles, each as likely
    counts: dict = {}
    for draw in range(1200):
        got = student(list(ids), np.random.default_rng([1102, 4, draw]))
        key = tuple(got[i] for i in ids)
        counts[key] = counts.get(key, 0) + 1
    if len(counts) != 6 or min(counts.values()) < 100:
        raise Fail(f"over 1200 draws on {ids}, the maps {counts} came out; expected each of the 6 cycles about 200 "
                   f"times (draw the cycle from rng, uniformly).")
    for ids in ([], ["17_06_1"], ["17_06_1", "17_06_1"]):
        try:
            student(list(ids), np.random.default_rng(0))
        except ValueError:
            continue
        raise Fail(f"image ids {ids}: fewer than two distinct pictures cannot be shuffled: raise ValueError.")
    return "A permutation of the distinct pictures with no fixed point, one cycle, uniform over the cycles."


def _peak_share_by_loop(attention, first_piece, words, cells):
    """The oracle of exercise 11.3: explicit loops over heads and regions, first maximum wins."""
    if not words:
        return None
    hits = 0
    for b, w in words:
        t = int(first_piece[b][w])
        H, R = attention.shape[1], attention.shape[3]
        best, best_r = -math.inf, -1
        for r in range(R):
            total = sum(float(attention[b, h, t, r]) for h in range(H))          # the mean's order is the sum's
            if total > best:
                best, best_r = total, r
        hits += best_r in set(cells[b])
    return hits / len(words)


def _spiky_rows(rng, H, R, key_cell, other_cell, hit: bool):
    """(H, R) attention rows whose mean over heads peaks on ``key_cell`` iff ``hit``; head 0 always disagrees.

    Head 0 puts 0.8 on one cell, heads 1.. put 0.5 on the other, and the rest is spread thinly: the mean
    over heads peaks on the heads 1.. cell (0.375 against 0.2), while head 0 alone, or the largest single
    weight of the (H, R) block, points at head 0's cell.
    """
    rows = rng.dirichlet(np.ones(R), H)
    rows[0] *= 0.2
    rows[1:] *= 0.5
    majority, head0 = (key_cell, other_cell) if hit else (other_cell, key_cell)
    rows[0, head0] += 0.8
    rows[1:, majority] += 0.5
    return rows / rows.sum(-1, keepdims=True)


@_exercise("11_multimodal_training.ipynb", "Exercise 11.3 (does a word's own attention peak on the key object?)")
def peak_on_key_object(student):
    """``peak_on_key_object(attention (B, h, T, R), first_piece (B, W), words [(b, w)], cells) -> share or None``."""
    rng = np.random.default_rng(1103)
    B, H, T, R, W = 3, 4, 12, 49, 7
    cases = []

    # one word: the mean over heads peaks on a key cell, head 0 (and the largest single weight) elsewhere
    att = rng.dirichlet(np.ones(R), (1, H, 4))
    att[0, :, 2] = _spiky_rows(rng, H, R, 20, 3, hit=True)
    cases.append(("the heads disagree: the mean over heads decides", att, np.array([[1, 2, 3]]), [(0, 1)], [[20, 27]]))
    # a word split into pieces: word 2 starts at piece 4; the row at piece 2 (a later piece of word 1) peaks elsewhere
    att = rng.dirichlet(np.ones(R), (1, H, 6))
    att[0, :, 4] = _spiky_rows(rng, H, R, 8, 40, hit=True)
    att[0, :, 2] = _spiky_rows(rng, H, R, 8, 40, hit=False)
    cases.append(("word 2 starts at piece 4 ([CLS] w0 w1 ##w1 w2 [SEP])", att, np.array([[1, 2, 4]]), [(0, 2)],
                  [[8, 9, 15]]))

    # random batches: every row spiky, so each word's verdict hangs on heads and pieces being read right
    for k in range(3):
        cells = [sorted(rng.choice(R, int(rng.integers(2, 9)), replace=False).tolist()) for _ in range(B)]
        att = np.empty((B, H, T, R))
        for b, t in np.ndindex(B, T):
            key = int(rng.choice(cells[b]))
            other = int(rng.choice(np.setdiff1d(np.arange(R), cells[b])))
            att[b, :, t] = _spiky_rows(rng, H, R, key, other, hit=bool(rng.random() < 0.5))
        first = np.stack([1 + np.sort(rng.choice(T - 2, W, replace=False)) for _ in range(B)])   # (B, W), ≥ 1
        words = [(b, w) for b in range(B) for w in range(W) if rng.random() < 0.6]
        cases.append((f"random batch {k + 1} ({len(words)} words, B={B}, h={H}, T={T}, R={R})", att, first, words,
                      cells))
    cases.append(("no words to score", att, first, [], cells))

    for name, att, first, words, cells in cases:
        want = _peak_share_by_loop(att, first, words, cells)
        got = student(att.copy(), first.copy(), list(words), [list(c) for c in cells])
        _same_share(name, got, want, "no word: the share is undefined, not 0",
                    "average the heads, read the row of the word's first piece, and take the arg-max over the regions")
    return "Equal to a loop over heads and regions: heads averaged, each word read at its first piece."
