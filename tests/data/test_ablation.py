"""Per-channel controls: one channel withheld or taken from another tweet, the other kept as the tweet's own."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from minimner.data.ablation import CHANGES, ChannelAblation, cyclic_remap
from minimner.data.conll import Sentence

IDS = ["a", "b", "c", "d"]


class FakeSource:
    """regions of tweet i are filled with i + 1, objects of tweet i are [10 + i]; id None: no picture."""

    def inputs(self, batch, dtype=np.float32):
        ids = [s.image_id for s in batch.sentences]
        present = np.array([i is not None for i in ids])
        regions = np.stack([np.full((3, 2), IDS.index(i) + 1 if i else 0, dtype=dtype) for i in ids])  # (B, R, C)
        objects = np.array([[10 + IDS.index(i) if i else 0] for i in ids], dtype=np.int64)           # (B, O)
        return {"regions": regions, "region_mask": np.repeat(present[:, None], 3, axis=1), "objects": objects}


def batch_of(ids):
    return SimpleNamespace(sentences=[Sentence(words=["x"], image_id=i) for i in ids], input_ids=np.zeros((len(ids), 3)))


def test_cyclic_remap_moves_every_picture():
    for seed in range(5):
        remap = cyclic_remap(IDS, seed)
        assert sorted(remap) == IDS and sorted(remap.values()) == IDS
        assert all(k != v for k, v in remap.items())
    assert cyclic_remap(IDS, 3) == cyclic_remap(list(reversed(IDS)), 3)      # order of the ids does not matter
    with pytest.raises(ValueError, match="two pictures"):
        cyclic_remap(["a"])


@pytest.mark.parametrize("change", CHANGES)
def test_one_channel_changes_and_the_other_is_the_tweets_own(change):
    src, batch = FakeSource(), batch_of(["a", "b", None, "d"])
    own = src.inputs(batch)
    got = ChannelAblation(src, change, IDS, seed=1).inputs(batch)
    pixels_same = got["regions"] is not None and np.array_equal(got["regions"], own["regions"])
    objects_same = got["objects"] is not None and np.array_equal(got["objects"], own["objects"])
    if change == "no_pixels":
        assert got["regions"] is None and got["region_mask"] is None and objects_same
    elif change == "no_objects":
        assert got["objects"] is None and pixels_same
    elif change == "shuffled_pixels":
        assert objects_same and not pixels_same
        rows = [int(r[0, 0]) for r, m in zip(got["regions"], got["region_mask"]) if m.any()]
        assert all(r != IDS.index(i) + 1 for r, i in zip(rows, ["a", "b", "d"]))   # nobody keeps its own
        assert not got["region_mask"][2].any()                                     # no picture stays none
    else:
        assert pixels_same and not objects_same
        assert got["objects"][2, 0] == 0


def test_unknown_change_is_refused():
    with pytest.raises(ValueError, match="unknown channel change"):
        ChannelAblation(FakeSource(), "no_words")
