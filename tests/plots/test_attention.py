"""Tests of the cross-modal attention and gate figures (minimner/plots/attention.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from minimner.plots.attention import (feature_crop, plot_gates, plot_image_attention,  # noqa: E402
                                      plot_object_attention, plot_tweet)
from minimner.vision import images as vi  # noqa: E402


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)                        # renders with the Agg canvas
    return buf.getvalue()


@pytest.fixture
def picture(rng):
    return rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)   # landscape, not yet cropped


# ------------------------------------------------------------------------ feature_crop
def test_feature_crop_is_the_eval_transform(picture, tmp_path):
    want = np.asarray(vi.eval_transform(Image.fromarray(picture)))
    assert want.shape == (224, 224, 3)
    got = feature_crop(picture)
    assert got.dtype == np.uint8 and got.shape == (224, 224, 3)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(feature_crop(Image.fromarray(picture)), want)
    path = tmp_path / "p.png"
    Image.fromarray(picture).save(path)
    np.testing.assert_array_equal(feature_crop(path), want)       # lossless file: same pixels
    np.testing.assert_array_equal(feature_crop(str(path)), want)
    assert feature_crop(picture, size=112).shape == (112, 112, 3)


def test_feature_crop_errors(tmp_path, picture):
    with pytest.raises(ValueError, match="file not found"):
        feature_crop(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        feature_crop(tmp_path / "empty.jpg")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8, got shape \(300, 400, 3\) dtype float32"):
        feature_crop(picture.astype(np.float32))
    with pytest.raises(ValueError, match=r"got shape \(300, 400\)"):
        feature_crop(picture[..., 0])


# ------------------------------------------------------------------- image attention
def test_image_overlay_holds_the_grid_and_marks_the_argmax(rng):
    from matplotlib.figure import Figure
    crop = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    probs = np.zeros(49, np.float32)
    probs[17] = 1.0                                                # region 17 = row 2, col 3
    ax = plot_image_attention(crop, probs, word="Paris")
    assert isinstance(ax.figure, Figure)
    pic, grid = ax.images[0], ax.images[-1]
    np.testing.assert_array_equal(pic.get_array(), crop)
    np.testing.assert_array_equal(grid.get_array(), probs.reshape(7, 7))
    assert grid.get_array()[2, 3] == 1.0
    assert grid.get_extent() == [0, 224, 224, 0]                   # the grid covers the crop, top-left origin
    (box,) = [p for p in ax.patches if p.get_gid() == "argmax"]
    assert box.get_xy() == (3 * 32, 2 * 32) and box.get_width() == 32 and box.get_height() == 32
    assert "'Paris'" in ax.get_title() and "heads" not in ax.get_title()
    assert "region 17 = row 2, col 3" in ax.get_xlabel()
    assert _png(ax.figure)[:4] == b"\x89PNG"


def test_image_attention_grid_sizes_and_cells(rng):
    # a 4x4 grid over a non-square picture: cells are (W/4) x (H/4) pixels, row-major from the top-left
    pic = rng.integers(0, 256, size=(80, 120, 3), dtype=np.uint8)
    probs = _softmax(rng.standard_normal(16))
    probs[13] = 5.0                                                # row 3, col 1
    ax = plot_image_attention(pic, probs)
    np.testing.assert_allclose(ax.images[-1].get_array(), probs.reshape(4, 4))
    box = ax.patches[0]
    assert box.get_xy() == (1 * 30, 3 * 20) and (box.get_width(), box.get_height()) == (30, 20)
    ax = plot_image_attention(None, probs, mark_max=False, colorbar=False)   # missing image: grid alone
    assert len(ax.images) == 1 and not ax.patches and "no image" in ax.get_title()
    ax = plot_image_attention(Image.fromarray(pic), probs)                  # a PIL image works too
    np.testing.assert_array_equal(ax.images[0].get_array(), pic)


def test_image_attention_heads_are_averaged(rng):
    probs = _softmax(rng.standard_normal((4, 49)))                 # (h, R)
    ax = plot_image_attention(None, probs, word="w")
    np.testing.assert_allclose(ax.images[-1].get_array(), probs.mean(0).reshape(7, 7), rtol=1e-12)
    assert "mean over 4 heads" in ax.get_title()
    r = int(np.argmax(probs.mean(0)))
    assert ax.patches[0].get_xy() == ((r % 7) * 1.0, (r // 7) * 1.0)


def test_image_attention_on_given_axes_and_no_pyplot_state(rng):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    before = plt.get_fignums()
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_image_attention(None, _softmax(rng.standard_normal(49)), ax=ax) is ax
    plot_image_attention(None, _softmax(rng.standard_normal(49)))
    assert plt.get_fignums() == before                             # stand-alone Figures only


def test_image_attention_bad_shapes(rng):
    with pytest.raises(ValueError, match=r"square g\*g .* got R = 48"):
        plot_image_attention(None, np.ones(48) / 48)
    with pytest.raises(ValueError, match=r"\(R,\) or \(heads, R\), got shape \(2, 3, 49\)"):
        plot_image_attention(None, np.ones((2, 3, 49)))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) array, got shape \(224, 224\)"):
        plot_image_attention(np.zeros((224, 224), np.uint8), np.ones(49) / 49)


def test_image_attention_accepts_backend_arrays(xp, rng):
    probs = xp.asarray(_softmax(rng.standard_normal((2, 49))).astype(np.float32))
    ax = plot_image_attention(None, probs)
    assert ax.images[-1].get_array().shape == (7, 7)


# ------------------------------------------------------------------ object attention
def test_object_bars_equal_probs_and_masked_slots_are_labelled(rng):
    logits = rng.standard_normal(5)
    mask = np.array([True, True, True, False, False])
    probs = _softmax(np.where(mask, logits, -10000.0))             # the model's finite additive mask
    ax = plot_object_attention(probs, ["person", "person", "dog", "person", "person"], mask, word="Rex")
    bars = [p for p in ax.patches if (p.get_gid() or "").startswith("slot")]
    assert [b.get_gid() for b in bars] == [f"slot{o}" for o in range(5)]
    np.testing.assert_allclose([b.get_width() for b in bars], probs)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0: person", "1: person", "2: dog", "3: (no object)", "4: (no object)"]
    assert [bool(b.get_hatch()) for b in bars] == [False, False, False, True, True]
    assert bars[3].get_facecolor() != bars[0].get_facecolor()
    assert "'Rex'" in ax.get_title()
    assert _png(ax.figure)[:4] == b"\x89PNG"


def test_object_ids_heads_and_all_masked(rng):
    probs = _softmax(rng.standard_normal((4, 5)))                  # (h, O)
    ax = plot_object_attention(probs, np.array([1, 17, 0, 0, 0]))  # COCO ids: mask from ids != 0
    np.testing.assert_allclose([b.get_width() for b in ax.patches[:5]], probs.mean(0), rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "0: person", "1: dog", "2: (no object)", "3: (no object)", "4: (no object)"]
    assert "mean over 4 heads" in ax.get_title()
    # no detections: every key gets -10000, the shift cancels it -> uniform over the null-object copies
    uniform = _softmax(np.full(5, -10000.0))
    ax = plot_object_attention(uniform, [0] * 5, np.zeros(5, bool))
    np.testing.assert_allclose([b.get_width() for b in ax.patches[:5]], 0.2)
    assert "uniform" in ax.get_title()


def test_object_attention_bad_shapes():
    with pytest.raises(ValueError, match="names has 2 entries but probs has 5 object slots"):
        plot_object_attention(np.ones(5) / 5, ["a", "b"])
    with pytest.raises(ValueError, match="mask has 4 entries but probs has 5 object slots"):
        plot_object_attention(np.ones(5) / 5, list("abcde"), np.ones(4, bool))
    with pytest.raises(ValueError, match=r"\(O,\) or \(heads, O\), got shape \(1, 1, 5\)"):
        plot_object_attention(np.ones((1, 1, 5)), list("abcde"))


# ------------------------------------------------------------------------------ gates
def test_gate_strips_hold_channel_means(rng):
    words = ["RT", "@NBA", "LeBron", "James"]
    g1 = rng.random((4, 8))                                        # (W, C)
    g2 = rng.random(4)                                             # (W,)
    ax = plot_gates(words, {"image": g1, "object": g2}, highlight=2)
    im = ax.images[0]
    np.testing.assert_allclose(im.get_array(), np.stack([g1.mean(1), g2]), rtol=1e-12)
    assert im.get_clim() == (0.0, 1.0)                             # fixed scale, comparable across tweets
    assert [t.get_text() for t in ax.get_yticklabels()] == ["image", "object"]
    assert [t.get_text() for t in ax.get_xticklabels()] == words
    (box,) = [p for p in ax.patches if p.get_gid() == "highlight"]
    assert box.get_xy() == (1.5, -0.5)
    assert len(ax.figure.axes) == 2                                # the axes and its colour bar
    cells = [t.get_text() for t in ax.texts]
    assert cells[0] == f"{g1[0].mean():.2f}" and len(cells) == 8
    assert _png(ax.figure)[:4] == b"\x89PNG"


def test_gates_empty_and_bad_inputs(rng):
    ax = plot_gates(["a", "b"], {})                                # fusion methods 0 / 4 have no gates
    assert not ax.images and "no gates" in ax.texts[0].get_text()
    with pytest.raises(ValueError, match=r"gate 'image' must be \(3,\) or \(3, C\) for 3 words, got shape \(4, 8\)"):
        plot_gates(["a", "b", "c"], {"image": rng.random((4, 8))})
    with pytest.raises(ValueError, match=r"gate 'g' must hold values in \[0, 1\]"):
        plot_gates(["a", "b"], {"g": np.array([0.5, 1.5])})
    with pytest.raises(ValueError, match="highlight 2 is out of range for 2 words"):
        plot_gates(["a", "b"], {"g": np.array([0.5, 0.5])}, highlight=2)


# -------------------------------------------------------------------------- one tweet
@pytest.fixture
def tweet(rng):
    words = ["Kevin", "Durant", "visits", "Golden", "Gate", "bridge"]
    W, R, O, h = len(words), 49, 5, 2
    txt2img = _softmax(rng.standard_normal((h, W, R)))            # (h, W, R)
    mask = np.array([True, True, False, False, False])
    txt2obj = _softmax(np.where(mask, rng.standard_normal((h, W, O)), -10000.0))   # (h, W, O)
    gates = {"image": rng.random((W, 8)), "object": rng.random((W, 8))}
    crop = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    return dict(image=crop, words=words, txt2img=txt2img, txt2obj=txt2obj,
                object_names=["person", "car", "x", "x", "x"], object_mask=mask, gates=gates)


def test_tweet_figure_combines_the_panels(tweet):
    from matplotlib.figure import Figure
    fig = plot_tweet(**tweet, word_index=3)
    assert isinstance(fig, Figure)
    ax_txt, ax_img, ax_own, ax_obj, ax_gate = fig.axes[:5]
    assert [a.get_label() for a in fig.axes[:5]] == ["text", "image", "own", "objects", "gates"]
    np.testing.assert_allclose(ax_img.images[-1].get_array(), tweet["txt2img"][:, 3].mean(0).reshape(7, 7))
    mean = tweet["txt2img"].mean(0)                                # (W, R) head mean
    np.testing.assert_allclose(ax_own.images[-1].get_array(), (mean[3] - mean.mean(0)).reshape(7, 7), atol=1e-12)
    np.testing.assert_allclose([b.get_width() for b in ax_obj.patches[:5]], tweet["txt2obj"][:, 3].mean(0))
    assert [t.get_text() for t in ax_obj.get_yticklabels()][2:] == [f"{o}: (no object)" for o in (2, 3, 4)]
    np.testing.assert_allclose(ax_gate.images[0].get_array()[:, 3],
                               [tweet["gates"]["image"][3].mean(), tweet["gates"]["object"][3].mean()])
    words = {t.get_gid(): t for t in ax_txt.texts}
    assert [words[f"word{i}"].get_text() for i in range(6)] == tweet["words"]
    assert words["word3"].get_bbox_patch() is not None             # the chosen word is highlighted
    assert all(words[f"word{i}"].get_bbox_patch() is None for i in (0, 1, 2, 4, 5))
    assert "'Golden'" in fig._suptitle.get_text()
    assert _png(fig)[:4] == b"\x89PNG"


def test_tweet_single_head_no_image_no_gates(tweet):
    t = dict(tweet, image=None, gates={}, txt2img=tweet["txt2img"][0], txt2obj=tweet["txt2obj"][1])
    fig = plot_tweet(**t, word_index=0, title="one tweet")
    np.testing.assert_allclose(fig.axes[1].images[-1].get_array(), tweet["txt2img"][0, 0].reshape(7, 7))
    assert "heads" not in fig.axes[1].get_title()
    assert fig._suptitle.get_text() == "one tweet"
    assert _png(fig)[:4] == b"\x89PNG"


def _panel_arrays(fig):
    """The drawn data of the word-specific panels: image attention, own attention, object bars."""
    ax_img, ax_own, ax_obj = fig.axes[1:4]
    return (np.asarray(ax_img.images[-1].get_array()), np.asarray(ax_own.images[-1].get_array()),
            np.array([b.get_width() for b in ax_obj.patches[:5]]))


def test_tweet_panels_depend_on_the_word(tweet):
    # two words of one tweet whose attention rows differ: every word-specific panel differs
    a, b = _panel_arrays(plot_tweet(**tweet, word_index=0)), _panel_arrays(plot_tweet(**tweet, word_index=4))
    for x, y in zip(a, b):
        assert np.abs(x - y).max() > 1e-3
    # the same rows for both words: the panels are the same (what differs is the model's attention)
    same = dict(tweet, txt2img=tweet["txt2img"].copy(), txt2obj=tweet["txt2obj"].copy())
    same["txt2img"][:, 4], same["txt2obj"][:, 4] = same["txt2img"][:, 0], same["txt2obj"][:, 0]
    a, b = _panel_arrays(plot_tweet(**same, word_index=0)), _panel_arrays(plot_tweet(**same, word_index=4))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y)


def test_tweet_counterfactual_lines(tweet):
    tags = {"MGCMT": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
            "without the picture": ["B-ORG", "I-ORG", "O", "O", "O", "O"]}
    fig = plot_tweet(**tweet, word_index=0, counterfactuals=tags)
    lines = {t.get_gid(): t.get_text() for t in fig.axes[0].texts}
    assert lines["counterfactual0"].startswith("MGCMT: 'Kevin' → B-PER")
    assert lines["counterfactual1"].startswith("without the picture: 'Kevin' → B-ORG")
    assert "Kevin/B-ORG Durant/I-ORG" in lines["counterfactual1"]
    with pytest.raises(ValueError, match="counterfactual 'x' has 2 tags for 6 words"):
        plot_tweet(**tweet, word_index=0, counterfactuals={"x": ["O", "O"]})


def test_tweet_bad_arguments(tweet):
    with pytest.raises(ValueError, match="word_index 6 is out of range for 6 words"):
        plot_tweet(**tweet, word_index=6)
    with pytest.raises(ValueError,
                       match=r"txt2img must be \(W, R\) or \(heads, W, R\) with W = 6, got shape \(2, 5, 49\)"):
        plot_tweet(**dict(tweet, txt2img=tweet["txt2img"][:, :5]), word_index=0)
    with pytest.raises(ValueError, match=r"txt2obj must be \(W, O\) or \(heads, W, O\) with W = 6, got shape \(5,\)"):
        plot_tweet(**dict(tweet, txt2obj=np.ones(5)), word_index=0)
    with pytest.raises(ValueError, match="gate 'image' must be"):
        plot_tweet(**dict(tweet, gates={"image": np.ones((5, 8)) / 2}), word_index=0)
