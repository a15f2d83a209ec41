"""Object labels: COCO-80 ids (0 = none), 5-slot vectors and masks, JSON and torch-saved tables."""
import json

import numpy as np
import pytest

from minimner.vision import objects as O


def test_coco_convention():
    assert len(O.COCO_CLASSES) == 80 and len(set(O.COCO_CLASSES)) == 80
    assert O.class_id("person") == 1 and O.class_id("toothbrush") == 80 and O.class_id("Traffic_Light") == 10
    assert O.class_id("tv") == 63 and O.class_id("dining table") == 61 and O.class_id(" Teddy  Bear ") == 78
    assert O.class_name(0) == "<none>" and O.class_name(45) == "spoon" and O.class_name(44) == "knife"
    assert O.NUM_OBJECT_ROWS == 85 and O.NO_OBJECT == 0 and O.OBJECT_SLOTS == 5
    for bad in (0, 81, -1, "unicorn", 1.5, True):
        with pytest.raises(ValueError):
            O.class_id(bad)


def test_object_ids_pad_truncate_keep_duplicates():
    ids, mask = O.object_ids(["person"] * 7)
    np.testing.assert_array_equal(ids, [1, 1, 1, 1, 1])
    assert mask.all() and ids.dtype == np.int64 and mask.dtype == bool
    ids, mask = O.object_ids([3, "dog"])
    np.testing.assert_array_equal(ids, [3, 17, 0, 0, 0])
    np.testing.assert_array_equal(mask, [True, True, False, False, False])
    for empty in (None, []):
        ids, mask = O.object_ids(empty)
        assert (ids == 0).all() and not mask.any()


def test_batch_and_lookup():
    table = {"17_06_1": [1, 2], "1015799": []}
    ids, mask = O.lookup_batch(table, ["17_06_1.jpg", "1015799", "not_there"])
    assert ids.shape == mask.shape == (3, 5)
    np.testing.assert_array_equal(ids[0], [1, 2, 0, 0, 0])
    assert not mask[1:].any()
    ids, mask = O.object_ids_batch([])
    assert ids.shape == (0, 5)


def test_json_loader(tmp_path):
    p = tmp_path / "objects.json"
    p.write_text(json.dumps({"17_06_1.jpg": ["person", "dog"], "99.jpg": [1, 1, 62], "5": []}))
    table = O.load_objects(p)
    assert table == {"17_06_1": [1, 17], "99": [1, 1, 62], "5": []}
    p.write_text(json.dumps({"a.jpg": ["person", "dragon"]}))
    with pytest.raises(ValueError, match=r"entry 'a.jpg'.*dragon"):
        O.load_object_json(p)
    p.write_text(json.dumps({"a.jpg": [1], "a": [2]}))
    with pytest.raises(ValueError, match="appears twice"):
        O.load_object_json(p)
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a mapping"):
        O.load_object_json(p)
    p.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        O.load_object_json(p)
    with pytest.raises(FileNotFoundError):
        O.load_object_json(tmp_path / "none.json")


@pytest.mark.parity
def test_torch_loader_lists_tensors_and_numpy_arrays(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "objects.pt"
    torch.save({"1.jpg": [1, 3], "2.jpg": torch.tensor([5, 5]), "3.jpg": np.array([80], np.int32), "4.jpg": []},
               str(p))
    assert O.load_objects(p) == {"1": [1, 3], "2": [5, 5], "3": [80], "4": []}


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_OBJECTS",))


@pytest.mark.parity
def test_torch_loader_refuses_code(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import pickle

    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"1.jpg": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="weights_only"):
        O.load_object_torch(p)
    assert not (tmp_path / "EVIL_OBJECTS").exists()


@pytest.mark.parity
def test_a_refused_torch_file_does_not_repeat_torchs_advice(tmp_path):
    pytest.importorskip("torch")
    import pickle

    p = tmp_path / "objects.json"                                       # a pickle, whatever the suffix says
    p.write_bytes(pickle.dumps({"1.jpg": _Evil()}, protocol=2))
    with pytest.raises(ValueError) as e:
        O.load_objects(p)
    assert str(e.value) == (f"{p}: refused or unreadable (loaded with weights_only=True, which never executes code "
                            "from the file): UnpicklingError: Trying to load unsupported GLOBAL posix.system whose "
                            "module posix is blocked.")


def test_the_kind_of_file_comes_from_its_content_not_its_suffix(tmp_path):
    """JSON named .pt is read as JSON (never handed to torch); a file that is neither is refused."""
    as_pt = tmp_path / "objects.pt"
    as_pt.write_text('\ufeff  {"1.jpg": ["person"]}', encoding="utf-8")      # BOM and spaces before the brace
    assert O.load_objects(as_pt) == {"1": [1]}
    junk = tmp_path / "objects.json"
    junk.write_bytes(b"person,car\n")
    with pytest.raises(ValueError) as e:
        O.load_objects(junk)
    assert str(e.value) == (f"{junk}: not an object-label file: neither JSON {{image: [labels]}} nor a torch save "
                            "(it starts with neither '{' nor a zip/pickle header)")
    with pytest.raises(FileNotFoundError, match="object label file not found"):
        O.load_objects(tmp_path / "missing.pt")


@pytest.mark.parity
def test_torch_save_named_json_is_read_as_torch(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "objects.json"
    torch.save({"1.jpg": [1, 3]}, p)
    assert O.load_objects(p) == {"1": [1, 3]}
