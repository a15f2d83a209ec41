"""Tests of the CRF figure (minimner/plots/crf.py): content, labels, Agg rendering."""
from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from minimner.constraints import PAPER_MAIN_TAGS, paper_constraints  # noqa: E402
from minimner.nn.crf import CRF  # noqa: E402
from minimner.plots.crf import plot_crf  # noqa: E402


@pytest.fixture
def setup(rng):
    crf = CRF(13, rng=rng)
    e = rng.standard_normal((3, 8, 13)).astype(np.float32)
    mask = np.arange(8)[None, :] < np.array([8, 5, 3])[:, None]
    return crf, e, mask


def test_figure_holds_transitions_and_marginals(setup):
    from matplotlib.figure import Figure
    crf, e, mask = setup
    fig = plot_crf(crf, e, mask, tag_names=PAPER_MAIN_TAGS, index=1, tokens=list("abcde"))
    assert isinstance(fig, Figure)
    ax_t, ax_m = fig.axes[:2]
    np.testing.assert_allclose(ax_t.images[0].get_array(), crf.transitions.data)
    marg = crf.marginals(e, mask)[1, :5]                          # sentence 1 has 5 real positions
    np.testing.assert_allclose(ax_m.images[0].get_array(), marg, rtol=1e-6)
    assert [t.get_text() for t in ax_t.get_xticklabels()] == list(PAPER_MAIN_TAGS)
    assert [t.get_text() for t in ax_m.get_yticklabels()] == list("abcde")
    # the Viterbi path is drawn as one marker per position
    x, y = ax_m.lines[0].get_data()
    assert list(x) == crf.decode(e[1:2], mask[1:2])[0] and list(y) == list(range(5))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")                                # renders with the Agg canvas
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_single_sentence_and_constraints(setup):
    crf, e, mask = setup
    word = np.zeros((3, 8), bool)
    word[:, 1] = True                                             # every sentence has >= 3 positions
    allowed = paper_constraints(word)
    fig = plot_crf(crf, e[0], show_path=True, allowed=allowed._replace(tags=allowed.tags[0]))
    assert fig.axes[1].images[0].get_array().shape == (8, 13)
    path = list(fig.axes[1].lines[0].get_data()[0])
    assert path[0] == PAPER_MAIN_TAGS.index("[CLS]") and path[-1] == PAPER_MAIN_TAGS.index("[SEP]")
    fig = plot_crf(crf, e, mask, index=2, allowed=allowed)      # batch constraints are cut to sentence 2
    assert fig.axes[1].images[0].get_array().shape == (3, 13)
    fig = plot_crf(crf, e, mask, show_path=False)
    assert not fig.axes[1].lines


def test_bad_arguments(setup):
    crf, e, mask = setup
    with pytest.raises(ValueError, match="index 3 is out of range"):
        plot_crf(crf, e, mask, index=3)
    with pytest.raises(ValueError, match="tag_names has 2 names"):
        plot_crf(crf, e, mask, tag_names=["a", "b"])
    with pytest.raises(ValueError, match="tokens has 2 entries"):
        plot_crf(crf, e, mask, tokens=["a", "b"])
