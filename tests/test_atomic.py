"""Atomic writers: the destination is either the old file or the complete new one."""
import json
import os

import numpy as np
import pytest

from minimner import atomic


def test_text_json_npy_npz_round_trip(tmp_path):
    atomic.write_text_atomic(tmp_path / "a" / "t.txt", "héllo\n")        # creates the folder
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic.write_json_atomic(tmp_path / "j.json", {"shape": [2, 3], "x": 1})
    assert json.loads((tmp_path / "j.json").read_text()) == {"shape": [2, 3], "x": 1}
    atomic.write_npy_atomic(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", allow_pickle=False),
                                  np.arange(6, dtype=np.float32).reshape(2, 3))
    atomic.write_npz_atomic(tmp_path / "z.npz", {"w": np.ones(3)})
    with np.load(tmp_path / "z.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["w"], np.ones(3))
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dst = tmp_path / "t.txt"
    atomic.write_text_atomic(dst, "old")

    def boom(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(dst, boom)
    assert dst.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.txt"]


def test_mkdir_false_needs_an_existing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic.write_text_atomic(tmp_path / "missing" / "t.txt", "x", mkdir=False)


def test_npz_refuses_object_arrays_and_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="dtype object"):
        atomic.write_npz_atomic(tmp_path / "o.npz", {"o": np.array([None], dtype=object)})
    with pytest.raises(ValueError, match=".npz"):
        atomic.write_npz_atomic(tmp_path / "o.bin", {"x": np.zeros(1)})
