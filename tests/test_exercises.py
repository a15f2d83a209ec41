"""The tutorials' graded exercises: every check passes on its reference solution and fails on the stub.

The stub is taken from the notebook itself (the cell tagged ``exercise``), so a check that cannot fail, a
stub that happens to be right, or a solution that drifts from its check is caught here.
"""
import ast
import importlib
import math
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

TUTORIALS = ROOT / "tutorials"
if str(TUTORIALS) not in sys.path:
    sys.path.insert(0, str(TUTORIALS))

from exercises import checks  # noqa: E402  (tutorials/exercises/checks.py)

NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
NAMES = sorted(checks.EXERCISES)


def _cells(path, tag):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(path), as_version=4)
    return nb.cells, [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def _defined_function(source):
    funcs = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    assert len(funcs) == 1, f"an exercise cell defines exactly one function; found {funcs}"
    return funcs[0]


def _stub(name):
    ex = checks.EXERCISES[name]
    cells, idx = _cells(TUTORIALS / ex.notebook, "exercise")
    for i in idx:
        if _defined_function(cells[i].source) == name:
            namespace = {"np": np, "math": math}
            exec(compile(cells[i].source, f"{ex.notebook}: exercise cell {i}", "exec"), namespace)
            return namespace[name]
    raise AssertionError(f"{ex.notebook} has no exercise cell defining {name}")


def _solution(name):
    ex = checks.EXERCISES[name]
    module = importlib.import_module(f"exercises.solutions.t{ex.notebook[:2]}")
    return getattr(module, name)


def test_at_least_25_exercises():
    assert len(checks.EXERCISES) >= 25, len(checks.EXERCISES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_tutorial_has_two_to_four_checked_exercises(path):
    cells, idx = _cells(path, "exercise")
    assert 2 <= len(idx) <= 4, f"{path.name}: {len(idx)} cells tagged 'exercise'"
    for i in idx:
        name = _defined_function(cells[i].source)
        assert name in checks.EXERCISES and checks.EXERCISES[name].notebook == path.name, \
            f"{path.name}: exercise {name} has no check registered for this notebook"
        assert hasattr(importlib.import_module(f"exercises.solutions.t{path.name[:2]}"), name), \
            f"{path.name}: exercise {name} has no reference solution"
        following = cells[i + 1]
        assert "check" in following.metadata.get("tags", []) and f"checks.{name}({name})" in following.source, \
            f"{path.name}: exercise cell {i} is not followed by its check cell"


@pytest.mark.parametrize("name", NAMES)
def test_every_check_is_in_its_notebook(name):
    _stub(name)


@pytest.mark.parametrize("name", NAMES)
def test_check_passes_on_the_reference_solution(name, capsys):
    assert checks.EXERCISES[name].check(_solution(name)) is True, capsys.readouterr().out
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_check_fails_on_the_untouched_stub(name, capsys):
    assert checks.EXERCISES[name].check(_stub(name)) is False
    out = capsys.readouterr().out
    assert "✘" in out and "not yet right" in out, out       # a graded failure, not a crash


@pytest.mark.parametrize("name", NAMES)
def test_check_reports_an_unfinished_stub_without_raising(name, capsys):
    def unfinished(*args, **kwargs):
        raise NotImplementedError

    assert checks.EXERCISES[name].check(unfinished) is False
    assert "not done yet" in capsys.readouterr().out


# Classic mistakes the checks must catch (beyond the placeholder stubs).
def _ln_without_variance_term(dy, x, gamma, eps):
    mu = x.mean(-1, keepdims=True)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat, g = (x - mu) * r, dy * gamma
    rows = tuple(range(x.ndim - 1))
    return r * (g - g.mean(-1, keepdims=True)), (dy * xhat).sum(rows), dy.sum(rows)


def _softmax_backward_without_mean(dp, p):
    return p * dp


def _maxpool_last_maximum_wins(dy, x, k, stride):
    dx = np.zeros_like(x)
    for b, c, i, j in np.ndindex(*dy.shape):
        win = x[b, c, i * stride:i * stride + k, j * stride:j * stride + k][::-1, ::-1]
        u, v = np.unravel_index(np.argmax(win), win.shape)
        dx[b, c, i * stride + k - 1 - u, j * stride + k - 1 - v] += dy[b, c, i, j]
    return dx


def _adamw_without_bias_correction(p, g, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return p * (1 - lr * weight_decay) - lr * m / (np.sqrt(v) + eps), m, v


def _log_partition_textbook(e, start, end, trans):
    with np.errstate(over="ignore", invalid="ignore"):       # overflows for large scores: the point
        alpha = np.exp(start + e[0])
        for t in range(1, len(e)):
            alpha = (alpha[:, None] * np.exp(trans)).sum(0) * np.exp(e[t])
        return float(np.log((alpha * np.exp(end)).sum()))


def _crop_box_truncating(w, h):
    nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    return nw, nh, (nw - 224) // 2, (nh - 224) // 2


def _mix_backward_unreduced(dout, a, b, g):
    return g * dout, (1 - g) * dout, (a - b) * dout


def _gate_of_gates_swapped_f2(u_img, u_imgtxt, u_obj, u_objtxt, params):
    from exercises.solutions.t10 import _gate
    p = lambda n: [params[f"{n}_{leaf}"] for leaf in ("w1", "w2", "bias")]
    return _gate(_gate(u_img, u_imgtxt, *p("fus1")), _gate(u_obj, u_objtxt, *p("fus2")), *p("fus3"))


def _group_recall_start_tag_only(gold_tags, pred_tags, spans):
    if not spans:
        return None
    return sum(pred_tags[i][a] == gold_tags[i][a] for i, a, _ in spans) / len(spans)


def _group_recall_ignoring_type(gold_tags, pred_tags, spans):
    from exercises.solutions.t11 import _entities
    if not spans:
        return None
    return sum((a, b) in _entities(pred_tags[i]) for i, a, b in spans) / len(spans)


def _group_recall_any_overlap(gold_tags, pred_tags, spans):
    from exercises.solutions.t11 import _entities
    if not spans:
        return None
    return sum(any(x < b and a < y and t == gold_tags[i][a][2:] for (x, y), t in _entities(pred_tags[i]).items())
               for i, a, b in spans) / len(spans)


def _cyclic_remap_by_permutation(image_ids, rng):
    ids = sorted(set(image_ids))
    if len(ids) < 2:
        raise ValueError("fewer than two pictures")
    return dict(zip(ids, (ids[k] for k in rng.permutation(len(ids)))))


def _cyclic_remap_any_derangement(image_ids, rng):      # no fixed point, but 2-cycles etc. (not one cycle)
    ids = sorted(set(image_ids))
    if len(ids) < 2:
        raise ValueError("fewer than two pictures")
    while True:
        p = rng.permutation(len(ids))
        if (p != np.arange(len(ids))).all():
            return {ids[k]: ids[p[k]] for k in range(len(ids))}


def _cyclic_remap_next_in_sorted_order(image_ids, rng):  # one cycle, no fixed point, but never random
    ids = sorted(set(image_ids))
    if len(ids) < 2:
        raise ValueError("fewer than two pictures")
    return {ids[k]: ids[(k + 1) % len(ids)] for k in range(len(ids))}


def _peak_at_word_index(attention, first_piece, words, cells):
    if not words:
        return None
    return float(np.mean([int(attention[b, :, w].mean(0).argmax()) in cells[b] for b, w in words]))


def _peak_of_head_0(attention, first_piece, words, cells):
    if not words:
        return None
    return float(np.mean([int(attention[b, 0, first_piece[b, w]].argmax()) in cells[b] for b, w in words]))


def _peak_of_the_largest_weight(attention, first_piece, words, cells):   # arg-max over (h, R), heads not averaged
    if not words:
        return None
    R = attention.shape[-1]
    return float(np.mean([int(attention[b, :, first_piece[b, w]].argmax()) % R in cells[b] for b, w in words]))


BUGS = {
    "layernorm_backward": _ln_without_variance_term,
    "softmax_backward": _softmax_backward_without_mean,
    "maxpool_backward": _maxpool_last_maximum_wins,
    "adamw_step": _adamw_without_bias_correction,
    "log_partition": _log_partition_textbook,
    "eval_crop_box": _crop_box_truncating,
    "mix_backward": _mix_backward_unreduced,
    "gate_of_gates": _gate_of_gates_swapped_f2,
    "group_recall": _group_recall_start_tag_only,
    "cyclic_remap": _cyclic_remap_by_permutation,
    "peak_on_key_object": _peak_at_word_index,
}
MORE_BUGS = [("group_recall", _group_recall_ignoring_type), ("group_recall", _group_recall_any_overlap),
             ("cyclic_remap", _cyclic_remap_any_derangement), ("cyclic_remap", _cyclic_remap_next_in_sorted_order),
             ("peak_on_key_object", _peak_of_head_0), ("peak_on_key_object", _peak_of_the_largest_weight)]


@pytest.mark.parametrize("name", sorted(BUGS))
def test_check_catches_a_classic_mistake(name, capsys):
    assert checks.EXERCISES[name].check(BUGS[name]) is False
    assert "✘" in capsys.readouterr().out


@pytest.mark.parametrize("name, bug", MORE_BUGS, ids=[bug.__name__.strip("_") for _, bug in MORE_BUGS])
def test_check_catches_another_classic_mistake(name, bug, capsys):
    assert checks.EXERCISES[name].check(bug) is False
    assert "✘" in capsys.readouterr().out


def test_cyclic_remap_check_accepts_the_library_and_sattolo(capsys):
    """The check grades the library's semantics, not one construction: the library's map and Sattolo's pass."""
    from minimner.data.ablation import cyclic_remap

    def sattolo(image_ids, rng):
        ids = sorted(set(image_ids))
        if len(ids) < 2:
            raise ValueError("fewer than two pictures")
        p = list(range(len(ids)))
        for i in range(len(ids) - 1, 0, -1):
            j = int(rng.integers(i))
            p[i], p[j] = p[j], p[i]
        return {ids[k]: ids[p[k]] for k in range(len(ids))}

    assert checks.cyclic_remap(lambda ids, rng: cyclic_remap(ids, seed=int(rng.integers(2 ** 32)))) is True, \
        capsys.readouterr().out
    assert checks.cyclic_remap(sattolo) is True, capsys.readouterr().out
