"""Tests for minimner.files: safe readers, atomic writers, manifests, key accounting."""
from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import files


# ----------------------------------------------------------------------------- safetensors
def _save_safetensors(path, arrays):
    from safetensors.numpy import save_file

    save_file(arrays, str(path))


def test_read_safetensors_roundtrip(tmp_path, rng):
    arrays = {"a.weight": rng.standard_normal((3, 4)).astype(np.float32),
              "b": np.arange(5, dtype=np.int64)}
    p = tmp_path / "m.safetensors"
    _save_safetensors(p, arrays)
    got = files.read_safetensors(p)
    assert set(got) == set(arrays)
    for k in arrays:
        assert got[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(got[k], arrays[k])
    assert files.read_weights(p).keys() == got.keys()


@pytest.mark.parametrize("cut", [3, 20, -7])
def test_truncated_safetensors_names_the_file(tmp_path, rng, cut):
    p = tmp_path / "m.safetensors"
    _save_safetensors(p, {"w": rng.standard_normal((8, 8)).astype(np.float32)})
    data = p.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        files.read_safetensors(bad)


def test_corrupt_safetensors_header(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!}" + b"\0" * 16)
    with pytest.raises(ValueError, match="garbage.safetensors"):
        files.read_safetensors(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        files.read_weights(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        files.read_npz(tmp_path)


def test_unknown_suffix(tmp_path):
    p = tmp_path / "w.h5"
    p.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown weight file type '\.h5'"):
        files.read_weights(p)


# ----------------------------------------------------------------------------- npz
def test_npz_refuses_pickled_objects(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, ok=np.ones(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="'bad' is a pickled object array"):
        files.read_npz(p)


def test_npz_not_a_zip(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="junk.npz"):
        files.read_npz(p)


def test_write_npz_atomic(tmp_path, rng):
    arrays = {"x": rng.standard_normal((2, 3)).astype(np.float32), "__meta__.t": files.text_to_array("héllo")}
    dst = tmp_path / "sub" / "out.npz"
    files.write_npz_atomic(dst, arrays)
    assert sorted(os.listdir(dst.parent)) == ["out.npz"]  # no temp file left behind
    got = files.read_npz(dst)
    np.testing.assert_array_equal(got["x"], arrays["x"])
    assert files.array_to_text(got["__meta__.t"]) == "héllo"


def test_write_npz_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    dst = tmp_path / "out.npz"
    files.write_npz_atomic(dst, {"x": np.zeros(3)})
    before = dst.read_bytes()

    def boom(f, **kw):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        files.write_npz_atomic(dst, {"x": np.ones(3)})
    assert dst.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]


def test_write_npz_rejects_objects_and_suffix(tmp_path):
    with pytest.raises(ValueError, match="dtype object"):
        files.write_npz_atomic(tmp_path / "o.npz", {"o": np.array([None], dtype=object)})
    with pytest.raises(ValueError, match="must end in .npz"):
        files.write_npz_atomic(tmp_path / "o.bin", {"x": np.zeros(1)})


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=40))
def test_text_array_roundtrip(text):
    a = files.text_to_array(text)
    assert a.dtype == np.uint8 and a.ndim == 1
    assert files.array_to_text(a) == text


# ----------------------------------------------------------------------------- torch pickles
class _Evil:
    """Unpickling this would create a marker file: proof that code ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(_Evil.marker), "w"))


def test_malicious_pickle_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    _Evil.marker = marker
    # 1) a torch zip checkpoint whose pickle carries a code-running object
    p = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(2), "payload": _Evil()}, p)
    with pytest.raises(ValueError, match="refused or unreadable"):
        files.read_torch(p)
    # 2) a bare (legacy, non-zip) pickle with the same payload
    p2 = tmp_path / "evil.pth"
    p2.write_bytes(pickle.dumps({"payload": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="refused or unreadable"):
        files.read_weights(p2)
    assert not marker.exists()  # nothing was executed


def test_read_torch_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"a.weight": torch.randn(3, 2), "b": torch.arange(4), "c": torch.randn(2).to(torch.bfloat16)}
    p = tmp_path / "m.bin"
    torch.save({"state_dict": sd}, p)  # wrapped: unwrapped by the reader
    got = files.read_weights(p)
    assert list(got) == ["a.weight", "b", "c"]
    np.testing.assert_array_equal(got["a.weight"], sd["a.weight"].numpy())
    assert got["b"].dtype == np.int64
    assert got["c"].dtype == np.float32  # bfloat16 widened


def test_read_torch_non_tensor_entry(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(1), "step": 3}, p)
    with pytest.raises(ValueError, match="'step' is a int, not a tensor"):
        files.read_torch(p)


def test_read_torch_without_torch(tmp_path, monkeypatch):
    p = tmp_path / "m.bin"
    p.write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(RuntimeError, match="needs torch"):
        files.read_weights(p)


# ----------------------------------------------------------------------------- manifests
def test_manifest_roundtrip(tmp_path, rng):
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"pretend weights")
    arrays = {"w": rng.standard_normal((2, 3)).astype(np.float32), "__meta__.c": files.text_to_array("{}")}
    m = files.make_manifest(src, arrays, extra={"model_type": "toy"})
    assert m["format_version"] == files.MANIFEST_FORMAT_VERSION
    assert m["source"] == "model.safetensors"
    assert m["source_sha256"] == files.sha256_file(src)
    assert m["tensors"] == {"w": {"shape": [2, 3], "dtype": "float32", "sha256": files.sha256_array(arrays["w"])}}
    assert m["metadata"] == ["__meta__.c"] and m["num_scalars"] == 6 and m["model_type"] == "toy"
    out = tmp_path / "m.manifest.json"
    files.write_manifest(out, m)
    assert files.read_manifest(out) == json.loads(json.dumps(m))


def test_manifest_validation(tmp_path):
    with pytest.raises(ValueError, match="'tensors'"):
        files.write_manifest(tmp_path / "x.json", {"format_version": 1, "source": "s", "source_sha256": "0"})
    p = tmp_path / "v.json"
    p.write_text(json.dumps({"format_version": 99, "source": "s", "source_sha256": "0", "tensors": {}}))
    with pytest.raises(ValueError, match="format_version 99"):
        files.read_manifest(p)
    p.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        files.read_manifest(p)


# ----------------------------------------------------------------------------- key accounting
def _src(rng):
    return {
        "bert.dense.weight": rng.standard_normal((4, 3)),            # float64: cast to float32
        "bert.norm.gamma": np.ones(4, dtype=np.float32),
        "bert.norm.beta": np.zeros(4, dtype=np.float32),
        "bert.proj": rng.standard_normal((3, 5)).astype(np.float32),  # stored transposed
        "bert.count": np.arange(3, dtype=np.int64),                   # ints keep their dtype
        "cls.head.weight": np.zeros((2, 2), dtype=np.float32),
    }


_EXPECTED = {"dense.weight": (4, 3), "norm.weight": (4,), "norm.bias": (4,), "proj": (5, 3), "count": (3,)}


def _acc(**kw):
    args = dict(rename=[(r"^bert\.", ""), (r"\.gamma$", ".weight"), (r"\.beta$", ".bias")],
                ignore=[(r"cls\..*", "pre-training head")], transpose=["proj"])
    args.update(kw)
    return files.KeyAccountant(**args)


def test_accountant_happy_path(rng):
    src = _src(rng)
    acc = _acc()
    out = acc.apply(src, _EXPECTED)
    assert list(out) == list(_EXPECTED)  # ordered like the target
    assert out["dense.weight"].dtype == np.float32 and out["count"].dtype == np.int64
    np.testing.assert_array_equal(out["proj"], src["bert.proj"].T)
    rep = acc.report()
    assert rep["used"] == 5 and rep["ignored"] == {"cls.head.weight": "pre-training head"}
    assert rep["renamed"]["bert.norm.gamma"] == "norm.weight"


def test_accountant_unknown_key(rng):
    src = _src(rng)
    src["bert.extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"bert\.extra\.weight \(renamed to extra\.weight\)"):
        _acc().apply(src, _EXPECTED, where="ckpt.safetensors")


def test_accountant_missing_target(rng):
    src = _src(rng)
    del src["bert.norm.beta"]
    with pytest.raises(KeyError, match=r"not filled.*'norm\.bias'"):
        _acc().apply(src, _EXPECTED)


def test_accountant_filled_twice(rng):
    src = _src(rng)
    src["norm.weight"] = np.ones(4, dtype=np.float32)  # also reaches norm.weight
    with pytest.raises(KeyError, match="filled twice"):
        _acc().apply(src, _EXPECTED)


def test_accountant_shape_mismatch(rng):
    src = _src(rng)
    src["bert.dense.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"'bert\.dense\.weight' -> 'dense\.weight': expected \(4, 3\), got \(3, 4\)"):
        _acc().apply(src, _EXPECTED, where="ckpt")


def test_expected_shapes_from_module():
    from minimner.nn.layers import Linear

    assert files.expected_shapes(Linear(3, 2)) == {"weight": (2, 3), "bias": (2,)}


def test_accountant_refuses_non_finite_and_float64_overflow():
    acc = files.KeyAccountant()
    with pytest.raises(ValueError) as e:
        acc.apply({"w": np.array([1.0, np.nan], dtype=np.float32)}, {"w": (2,)}, where="src.bin")
    assert str(e.value) == "src.bin: tensor 'w' holds 1 NaN/inf value"
    with pytest.raises(ValueError) as e:                                   # finite in float64, inf in float32
        acc.apply({"w": np.array([1e300, 1.0])}, {"w": (2,)}, where="src.bin")
    assert str(e.value) == "src.bin: tensor 'w' holds 1 NaN/inf value"
    out = acc.apply({"w": np.array([1.0, 2.0]), "ids": np.arange(2)}, {"w": (2,), "ids": (2,)})
    assert out["w"].dtype == np.float32
