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


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / ".last.npz.tmp-999999999-ab_c12x9"           # pid above any pid_max: not running
    old = tmp_path / ".best.npz.tmp-k3j_9x2a"                       # an older name without a pid
    live = tmp_path / f".run.json.tmp-{os.getpid()}-zz9_a1b2"       # this process: still writing
    keep = tmp_path / "last.npz"
    sub = tmp_path / "train"
    sub.mkdir()
    nested = sub / ".1.npy.tmp-999999999-q1w2e3r4"
    for p in (dead, old, live, keep, nested):
        p.write_bytes(b"x")
    assert sorted(atomic.remove_stale_temporaries(tmp_path)) == sorted([dead, old])
    assert live.exists() and keep.exists() and nested.exists()
    assert atomic.remove_stale_temporaries(tmp_path, recursive=True) == [nested]
    assert atomic.remove_stale_temporaries(tmp_path / "missing") == []


def test_temporary_name_carries_the_pid(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real(a, b)))
    atomic.write_text_atomic(tmp_path / "t.txt", "x")
    assert seen[0].startswith(f".t.txt.tmp-{os.getpid()}-")
    assert atomic._TEMPORARY.match(seen[0])


def test_os_error_names_the_destination_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk: the error names the file asked for (not the temporary one); no file is left."""
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic.write_npy_atomic(tmp_path / "x.npy", np.zeros(3))
    assert (e.value.errno, e.value.strerror, e.value.filename) == (28, "No space left on device",
                                                                     str(tmp_path / "x.npy"))
    assert os.listdir(tmp_path) == []


def test_a_write_removes_the_stale_temporaries_of_its_own_file(tmp_path):
    mine = tmp_path / ".w.npz.tmp-999999999-a1b2c3d4"                # a killed earlier write of w.npz
    other = tmp_path / ".v.npz.tmp-999999999-a1b2c3d4"               # another file's: not this writer's business
    for p in (mine, other):
        p.write_bytes(b"85 MB of half a checkpoint")
    atomic.write_npz_atomic(tmp_path / "w.npz", {"x": np.zeros(2)})
    assert not mine.exists() and other.exists()
