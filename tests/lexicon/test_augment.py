"""Tests for minimner.lexicon.augment (the augmentation table, its OOV rule and cache) and the plots."""
from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import pytest

from minimner.lexicon.augment import (AugmentationTable, AugmentConfig, add_augment_arguments,
                                      augment_config_from_args, build_table, collect_vocabulary,
                                      load_or_build_table, oov_vector, table_cache_key, vocabulary_hash)
from minimner.lexicon.io import Lexicon
from minimner.lexicon.neighbours import find_neighbours

CONLL_A = "IMGID:1\nRT\tO\n@Barack\tB-PER\nin\tO\nParis\tB-LOC\n\nIMGID:2\nparis\tB-LOC\n#xyz\tO\n"
CONLL_B = "IMGID:17_06_1\nParis\tB-LOC\nzebra\tO\n"


@pytest.fixture
def lexicon(rng):
    words = ["rt", "in", "paris", "Paris", "london", "zebra", "horse", "the", "a", "of"]
    vec = rng.standard_normal((len(words), 6)).astype(np.float32)
    return Lexicon(words, vec, source="toy.npz")


@pytest.fixture
def conll_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(CONLL_A, encoding="utf-8")
    b.write_text(CONLL_B, encoding="utf-8")
    return [a, b]


# ----------------------------------------------------------------------------- vocabulary
def test_collect_vocabulary(conll_files):
    vocab = collect_vocabulary(conll_files)
    assert vocab == sorted({"RT", "@Barack", "in", "Paris", "paris", "#xyz", "zebra"})
    assert vocabulary_hash(vocab) == vocabulary_hash(list(vocab)) != vocabulary_hash(vocab[::-1])


def test_collect_vocabulary_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        collect_vocabulary([tmp_path / "nope.txt"])


# ----------------------------------------------------------------------------- building
def test_table_rows_are_neighbour_sums_and_oov_vectors(lexicon):
    vocab = ["#xyz", "@Barack", "Paris", "RT", "in", "paris", "zebra"]
    t = build_table(vocab, lexicon, k=3)
    assert t.vectors.shape == (7, 6) and t.vectors.dtype == np.float32 and t.dim == 6 and t.k == 3
    assert t.in_lexicon.tolist() == [False, False, True, True, True, True, True]
    assert t.matched == [None, None, "Paris", "rt", "in", "paris", "zebra"]   # case "auto": exact, then lower
    # The table searches every found lexicon row in one query (sorted, unique), so compare each row with
    # that same query: equal bits. A one-word query runs the similarity GEMM with another row count, which
    # some BLAS kernels round differently in the last bit, so only its neighbours are compared there.
    searched = sorted({lexicon.index[t.matched[t.index[w]]] for w in ("Paris", "RT", "in", "paris", "zebra")})
    batch = find_neighbours(lexicon, searched, 3)
    for w in ("Paris", "RT", "in", "paris", "zebra"):
        i = t.index[w]
        j = searched.index(lexicon.index[t.matched[i]])
        np.testing.assert_array_equal(t.vectors[i], batch.vectors[j])
        assert t.neighbour_ids[i].tolist() == batch.ids[j].tolist()
        assert t.neighbour_words[i] == batch.words(lexicon)[j]
        np.testing.assert_array_equal(t.weights[i], batch.weights[j])
        single = find_neighbours(lexicon, [lexicon.index[t.matched[i]]], 3)
        assert single.ids[0].tolist() == batch.ids[j].tolist()
    bound = math.sqrt(3 / 6)
    for w in ("#xyz", "@Barack"):
        i = t.index[w]
        np.testing.assert_array_equal(t.vectors[i], oov_vector(w, 6, 0))
        assert np.all(np.abs(t.vectors[i]) <= bound) and t.neighbour_ids[i].tolist() == [-1, -1, -1]
        assert t.neighbour_words[i] == [] and np.all(t.weights[i] == 0)
    assert t.meta["in_lexicon"] == 5 and t.meta["lexicon_rows_searched"] == 5
    assert t.meta["lexicon_sha256"] == lexicon.fingerprint() and t.meta["vocab_sha256"] == vocabulary_hash(vocab)


def test_case_policy_exact_is_the_papers(lexicon):
    t = build_table(["Paris", "RT", "paris"], lexicon, k=2, case="exact")
    assert t.in_lexicon.tolist() == [True, False, True]
    t = build_table(["PARIS", "London"], lexicon, k=2, case="auto")
    assert t.matched == ["paris", "london"]
    # two vocabulary words mapped to one lexicon row share its vector and neighbours
    t = build_table(["PARIS", "paris"], lexicon, k=2)
    np.testing.assert_array_equal(t.vectors[0], t.vectors[1])
    assert t.meta["lexicon_rows_searched"] == 1


def test_oov_vectors_are_per_word_type_and_seeded():
    a, b = oov_vector("#nba", 200, 0), oov_vector("#nba", 200, 0)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (200,)
    assert np.all(np.abs(a) <= math.sqrt(3 / 200))
    assert not np.array_equal(a, oov_vector("#nbA", 200, 0))
    assert not np.array_equal(a, oov_vector("#nba", 200, 1))
    many = np.stack([oov_vector(f"w{i}", 50, 0) for i in range(400)])
    assert abs(float(many.var()) - 1 / 50) < 0.002  # U(±√(3/E)) has variance 1/E


def test_oov_same_vector_in_every_vocabulary(lexicon):
    t1 = build_table(["#xyz", "paris"], lexicon, k=2)
    t2 = build_table(["#abc", "#xyz", "zebra"], lexicon, k=2)
    np.testing.assert_array_equal(t1.vector("#xyz"), t2.vector("#xyz"))
    np.testing.assert_array_equal(t1.vector("#never-seen"), oov_vector("#never-seen", 6, 0))


def test_oov_zero_policy_and_mask(lexicon):
    t = build_table(["#xyz", "paris"], lexicon, k=2, oov="zero")
    assert np.all(t.vectors[0] == 0) and not t.in_lexicon[0]
    vecs, mask = t.lookup(["paris", "#xyz", "#unseen"])
    assert vecs.shape == (3, 6) and mask.tolist() == [True, False, False]
    assert np.all(vecs[1:] == 0)
    vecs, mask = build_table(["#xyz", "paris"], lexicon, k=2).lookup(["#unseen"])
    np.testing.assert_array_equal(vecs[0], oov_vector("#unseen", 6, 0))
    assert not mask[0]


def test_build_errors(lexicon):
    with pytest.raises(ValueError, match="appears twice"):
        build_table(["a", "a"], lexicon)
    with pytest.raises(ValueError, match="empty or contains a newline"):
        build_table(["a", ""], lexicon)
    with pytest.raises(ValueError, match="unknown OOV policy 'drop'"):
        build_table(["a"], lexicon, oov="drop")
    with pytest.raises(ValueError, match="unknown case policy"):
        build_table(["a"], lexicon, case="title")


def test_all_oov_vocabulary(lexicon):
    t = build_table(["#a", "#b"], lexicon, k=2)
    assert not t.in_lexicon.any() and t.meta["lexicon_rows_searched"] == 0


# ----------------------------------------------------------------------------- inspection, persistence, cache
def test_inspection_api(lexicon):
    t = build_table(["Paris", "#xyz"], lexicon, k=3)
    nb = t.neighbours_of("Paris")
    assert [n["word"] for n in nb] == t.neighbour_words[0] and len(nb) == 3
    assert abs(sum(n["weight"] for n in nb) - 1) < 1e-6
    assert t.neighbours_of("#xyz") == []
    d = t.describe("Paris")
    assert d["matched"] == "Paris" and d["in_lexicon"] and d["norm"] > 0
    with pytest.raises(KeyError, match="not in this augmentation table"):
        t.neighbours_of("nope")
    assert "2 words" in repr(t)


def test_save_load_roundtrip(tmp_path, lexicon):
    t = build_table(["#xyz", "Paris", "in", "zebra"], lexicon, k=3)
    p = t.save(tmp_path / "t.npz")
    back = AugmentationTable.load(p)
    assert back.words == t.words and back.matched == t.matched and back.neighbour_words == t.neighbour_words
    for name in ("vectors", "in_lexicon", "neighbour_ids", "similarities", "weights"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
    assert back.meta == t.meta
    assert [f.name for f in tmp_path.iterdir()] == ["t.npz"]
    with np.load(p, allow_pickle=False) as z:  # nothing pickled
        assert all(z[k].dtype != object for k in z.files)


def test_cache_hit_and_key(tmp_path, lexicon):
    vocab = ["#xyz", "Paris", "in"]
    t1 = load_or_build_table(vocab, lexicon, k=2, cache_dir=tmp_path)
    assert t1.meta["cached"] is False
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("aug-") and files[0].suffix == ".npz"
    t2 = load_or_build_table(vocab, lexicon, k=2, cache_dir=tmp_path)
    assert t2.meta["cached"] is True
    np.testing.assert_array_equal(t1.vectors, t2.vectors)
    base = table_cache_key(lexicon, vocab, 2, "auto", "random", 0)
    other = Lexicon(lexicon.words, lexicon.vectors + 1)
    assert len({base, table_cache_key(lexicon, vocab, 3, "auto", "random", 0),
                table_cache_key(lexicon, vocab, 2, "exact", "random", 0),
                table_cache_key(lexicon, vocab, 2, "auto", "zero", 0),
                table_cache_key(lexicon, vocab, 2, "auto", "random", 1),
                table_cache_key(lexicon, vocab[:2], 2, "auto", "random", 0),
                table_cache_key(other, vocab, 2, "auto", "random", 0)}) == 7


def test_corrupt_cache_is_rebuilt(tmp_path, lexicon):
    vocab = ["Paris", "in"]
    t1 = load_or_build_table(vocab, lexicon, k=2, cache_dir=tmp_path)
    path = tmp_path / t1.meta["cache_path"].split("/")[-1]
    path.write_bytes(b"not a zip file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t2 = load_or_build_table(vocab, lexicon, k=2, cache_dir=tmp_path)
    assert t2.meta["cached"] is False and any("rebuilding" in str(w.message) for w in caught)
    assert load_or_build_table(vocab, lexicon, k=2, cache_dir=tmp_path).meta["cached"] is True


# ----------------------------------------------------------------------------- CLI helpers
def test_cli_flags_fill_the_config():
    p = argparse.ArgumentParser()
    add_augment_arguments(p)
    cfg = augment_config_from_args(p.parse_args([]))
    assert cfg == AugmentConfig()
    assert cfg.mode == "add" and cfg.k == 4 and cfg.oov == "random" and cfg.case == "auto"
    cfg = augment_config_from_args(p.parse_args(["--aug", "gate", "--lexicon", "x.npz", "--aug-k", "8",
                                                 "--aug-oov", "zero", "--aug-case", "exact", "--aug-seed", "3"]))
    assert (cfg.mode, cfg.lexicon, cfg.k, cfg.oov, cfg.case, cfg.seed) == ("gate", "x.npz", 8, "zero", "exact", 3)
    with pytest.raises(SystemExit):
        p.parse_args(["--aug", "concat"])
    with pytest.raises(ValueError, match="--aug-k must be at least 1"):
        augment_config_from_args(p.parse_args(["--aug-k", "0"]))


# ----------------------------------------------------------------------------- plots
def test_plots(lexicon):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minimner.lexicon.neighbours import describe_neighbours
    from minimner.plots.augment import plot_neighbour_heatmap, plot_word_neighbours

    info = describe_neighbours(lexicon, ["paris", "zebra", "#none"], k=3)
    ax = plot_word_neighbours("paris", info["paris"])
    assert len(ax.patches) == 3 and [t.get_text() for t in ax.get_yticklabels()] == \
        [n["word"] for n in info["paris"]["neighbours"]]
    ax = plot_word_neighbours("#none", info["#none"])
    assert "not in the lexicon" in ax.texts[0].get_text()
    ax = plot_neighbour_heatmap(info)
    img = ax.images[0].get_array()
    assert img.shape == (3, 3) and img.mask[2].all() and not img.mask[:2].any()
    t = build_table(["paris", "zebra"], lexicon, k=3)
    ax = plot_word_neighbours("zebra", t.describe("zebra"))
    assert len(ax.patches) == 3
    plt.close("all")
