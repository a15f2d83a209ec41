"""minimner.explain: attention rollout and the one-tweet figure's panels."""
from __future__ import annotations

import numpy as np

from minimner.explain import rollout
from minimner.plots.attention import plot_tweet


def test_rollout_rows_are_distributions_and_follow_the_image_attention(rng):
    h, W, R = 3, 4, 9
    txt2img = rng.random((h, W, R)); txt2img /= txt2img.sum(-1, keepdims=True)
    img2img = rng.random((h, R, R)); img2img /= img2img.sum(-1, keepdims=True)
    r = rollout(txt2img, img2img)
    np.testing.assert_allclose(r.sum(-1), 1.0)
    # with an image attention that keeps every region to itself the rollout is the plain (head-mean) map
    eye = np.broadcast_to(np.eye(R), (h, R, R))
    np.testing.assert_allclose(rollout(txt2img, eye), txt2img.mean(0))
    # a word that reads only region 0, where region 0 read only region 5: half of it comes from 5
    one = np.zeros((1, 1, R)); one[0, 0, 0] = 1
    to5 = np.broadcast_to(np.eye(R), (1, R, R)).copy(); to5[0, 0] = 0; to5[0, 0, 5] = 1
    np.testing.assert_allclose(rollout(one, to5)[0, [0, 5]], [0.5, 0.5])


def test_plot_tweet_has_five_panels_and_the_second_is_the_words_own_row(rng):
    W, R, O = 3, 49, 5
    p = rng.random((W, R)); p /= p.sum(-1, keepdims=True)
    q = rng.random((W, O)); q /= q.sum(-1, keepdims=True)
    fig = plot_tweet(None, ["a", "b", "c"], p, q, ["person", "", "", "", ""], np.array([1, 0, 0, 0, 0], bool),
                     {"image": rng.random((W, 4))}, 1)
    labels = [ax.get_label() for ax in fig.axes[:5]]
    assert labels == ["text", "image", "own", "objects", "gates"]
    np.testing.assert_allclose(fig.axes[2].images[-1].get_array().ravel(), p[1] - p.mean(0), rtol=1e-6)
