"""Checkpoints: a non-finite model or optimiser tensor is neither saved nor loaded."""
import numpy as np
import pytest

from minimner.checkpoint import load_checkpoint, save_checkpoint
from minimner.finite import NonFiniteError


def test_save_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.npz"
    good = {"w": np.ones((2, 2), dtype=np.float32)}
    save_checkpoint(path, good, {"epoch": 1})
    before = path.read_bytes()
    bad = {"w": np.array([[1, np.nan], [np.inf, 0]], dtype=np.float32)}
    with pytest.raises(NonFiniteError) as e:
        save_checkpoint(path, bad, {"epoch": 2})
    assert str(e.value) == f"{path}: refusing to save: tensor 'model/w' holds 2 NaN/inf values"
    with pytest.raises(NonFiniteError) as e:
        save_checkpoint(path, good, {"epoch": 2}, optim_state={"m": np.array([np.nan], dtype=np.float32)})
    assert str(e.value) == f"{path}: refusing to save: tensor 'optim/m' holds 1 NaN/inf value"
    assert path.read_bytes() == before                            # the last good checkpoint stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]


def test_extra_arrays_may_hold_nan(tmp_path):
    """The original MSCMT checkpoint's unused, uninitialised tensors travel as they are."""
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(2, dtype=np.float32)}, {}, extra={"aux": np.array([np.nan])})
    _, _, _, extra = load_checkpoint(path, with_extra=True)
    assert np.isnan(extra["aux"]).all()


def test_load_refuses_a_nan_weight(tmp_path):
    path = tmp_path / "best.npz"
    meta = np.frombuffer(b'{"format_version": 1}', dtype=np.uint8)
    np.savez(path, **{"model/bert.w": np.array([0.0, np.nan], dtype=np.float32), "__meta__": meta})
    with pytest.raises(NonFiniteError) as e:
        load_checkpoint(path)
    assert str(e.value) == f"{path}: tensor 'model/bert.w' holds 1 NaN/inf value"


def test_load_names_a_corrupt_meta(tmp_path):
    path = tmp_path / "best.npz"
    np.savez(path, **{"model/w": np.zeros(1, dtype=np.float32), "__meta__": np.frombuffer(b"{oops", np.uint8)})
    with pytest.raises(ValueError, match=r"best\.npz: the __meta__ entry is not UTF-8 JSON"):
        load_checkpoint(path)
