"""ResNet converter: strict key accounting on the full torchvision ResNet-152 key list, files, safety, CLI."""
import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from minimner.cli import main as cli_main
from minimner import files
from minimner.convert import resnet as C
from minimner.models import resnet as R
from tests.models.test_resnet import numpy_state, torch_resnet, torchvision_keys


def _zeros_source(depth, with_counters=True):
    """torchvision's key list with zero-stride zero arrays of the right shapes (no real memory)."""
    src = OrderedDict()
    for k, shape in torchvision_keys(depth).items():
        if k.endswith("num_batches_tracked"):
            if with_counters:
                src[k] = np.array(7, dtype=np.int64)
        else:
            src[k] = np.broadcast_to(np.float32(0.5), shape)
    return src


@pytest.fixture(scope="module")
def model152():
    return R.build(152)


def test_full_resnet152_key_list_is_accounted(model152):
    src = _zeros_source(152)
    state, report = C.map_state(src, 152, model152)
    assert list(state) == list(model152.state_dict())                       # model order, every key
    assert len(state) == 930 and report["defaulted"] == []
    assert set(report["ignored"]) == {"fc.weight", "fc.bias"} and report["renamed"] == {}
    for k, v in state.items():
        want = torchvision_keys(152)[k]
        assert v.shape == want, k
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32), k
    assert int(state["layer3.35.bn3.num_batches_tracked"]) == 7


def test_legacy_torchvision_file_without_counters(model152):
    state, report = C.map_state(_zeros_source(152, with_counters=False), "resnet152", model152)
    assert len(report["defaulted"]) == 155 and int(state["bn1.num_batches_tracked"]) == 0


def test_prefixes_are_stripped(model152):
    src = OrderedDict(("module." + k, v) for k, v in _zeros_source(152).items())
    state, report = C.map_state(src, 152, model152)
    assert len(state) == 930 and report["renamed"]["module.conv1.weight"] == "conv1.weight"
    assert "module.fc.weight" in report["ignored"]


@pytest.mark.parametrize("edit,error,pattern", [
    (lambda s: s.pop("layer3.17.bn2.running_var"), KeyError, r"not filled.*layer3\.17\.bn2\.running_var"),
    (lambda s: s.__setitem__("layer3.36.conv1.weight", np.zeros((256, 1024, 1, 1), np.float32)), KeyError,
     r"unknown key.*layer3\.36\.conv1\.weight"),
    (lambda s: s.__setitem__("layer3.36.bn1.num_batches_tracked", np.array(1)), KeyError,
     r"no BatchNorm named 'layer3\.36\.bn1'"),
    (lambda s: s.__setitem__("layer4.0.conv2.weight", np.zeros((512, 512, 1, 1), np.float32)), ValueError,
     r"layer4\.0\.conv2\.weight.*expected \(512, 512, 3, 3\), got \(512, 512, 1, 1\)"),
    (lambda s: s.__setitem__("module.layer1.0.conv1.weight", np.zeros((64, 64, 1, 1), np.float32)), KeyError,
     r"filled twice"),
])
def test_accounting_errors_name_the_key(model152, edit, error, pattern):
    src = _zeros_source(152)
    edit(src)
    with pytest.raises(error, match=pattern):
        C.map_state(src, 152, model152)


def test_wrong_architecture_is_reported():
    with pytest.raises(KeyError, match=r"not filled.*layer1\.2\.conv1\.weight"):
        C.map_state(_zeros_source(18), 34)                                   # 34 has more blocks
    with pytest.raises(KeyError, match=r"unknown key.*layer1\.2\.bn1"):
        C.map_state(_zeros_source(34), 18)
    with pytest.raises(ValueError, match="unknown ResNet architecture"):
        C.map_state(_zeros_source(18), "resnet19")


def _random_state(depth=18, seed=0):
    m = R.build(depth, rng=np.random.default_rng(seed))
    sd = OrderedDict((k, np.asarray(v).copy()) for k, v in m.state_dict().items())
    sd["fc.weight"] = np.zeros((1000, m.out_channels), np.float32)
    sd["fc.bias"] = np.zeros((1000,), np.float32)
    return sd


def test_safetensors_convert_roundtrip(tmp_path):
    from safetensors.numpy import save_file

    sd = _random_state()
    src = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(src))
    dst = tmp_path / "out" / "resnet18.npz"
    manifest = C.convert_file(src, dst, "resnet18")
    assert dst.exists() and C.manifest_path(dst).exists()
    on_disk = json.loads(C.manifest_path(dst).read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["arch"] == "resnet18" and on_disk["source"] == "model.safetensors"
    assert on_disk["source_sha256"] == files.sha256_file(src)
    assert set(on_disk["ignored"]) == {"fc.weight", "fc.bias"} and on_disk["num_tensors"] == 120
    assert on_disk["tensors"]["layer1.0.conv1.weight"]["shape"] == [64, 64, 3, 3]
    assert not list(dst.parent.glob(".*tmp*"))                               # atomic: no leftovers
    model = C.load_model(dst, "resnet18")                                    # converted .npz loads back
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)
    with pytest.raises(ValueError, match="already a .npz"):
        C.convert_file(dst, tmp_path / "again.npz", "resnet18")
    with pytest.raises(ValueError, match="must end in .npz"):
        C.convert_file(src, tmp_path / "x.bin", "resnet18")


@pytest.mark.parity
def test_torch_pth_convert_and_features_match(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch_resnet(18, seed=1)
    sd = t.state_dict()
    legacy = OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    src = tmp_path / "resnet18-legacy.pth"
    torch.save(legacy, str(src))
    dst = tmp_path / "resnet18.npz"
    manifest = C.convert_file(src, dst, "resnet18")
    assert len(manifest["defaulted"]) == 20
    model = C.load_model(dst, "resnet18").fold_bn()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = t.features(torch.from_numpy(x)).numpy()
    assert np.abs(model.features(x) - ref).max() <= 1e-4 * np.abs(ref).max()
    direct = C.load_model(src, "resnet18")                                   # .pth loads without converting
    key = "layer2.1.bn2.running_var"
    np.testing.assert_array_equal(direct.state_dict()[key], numpy_state(t)[key])


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_MARKER",))


@pytest.mark.parity
def test_pickled_code_in_a_pth_is_refused_not_run(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "evil.pth"
    with open(src, "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        C.convert_file(src, tmp_path / "evil.npz", "resnet18")
    assert not (tmp_path / "EVIL_MARKER").exists()


def test_object_array_npz_is_refused(tmp_path):
    p = tmp_path / "weights.npz"
    np.savez(p, **{"conv1.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="pickle"):
        C.load_state(p, "resnet18")


def test_cli_convert_resnet(tmp_path, capsys):
    from safetensors.numpy import save_file

    src = tmp_path / "r18.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in _random_state().items()}, str(src))
    rc = cli_main(["convert", "resnet", str(src), str(tmp_path / "r18.npz"), "--arch", "resnet18"])
    assert rc == 0 and (tmp_path / "r18.manifest.json").exists()
    assert "ignored fc.weight" in capsys.readouterr().out
    rc = cli_main(["convert", "resnet", str(src), str(tmp_path / "r34.npz"), "--arch", "resnet34"])
    err = capsys.readouterr().err
    assert rc == 2 and "not filled" in err and "layer1.2.conv1.weight" in err
    assert cli_main(["convert", "resnet", str(tmp_path / "nope.pth"), str(tmp_path / "o.npz")]) == 2
    assert "not found" in capsys.readouterr().err


def test_nan_weight_is_refused(tmp_path):
    """``convert resnet`` and ``load_model`` (used by ``features``) refuse a NaN or inf weight."""
    from safetensors.numpy import save_file

    sd = _random_state()
    sd["layer2.0.bn1.running_var"][5] = np.inf
    src = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(src))
    dst = tmp_path / "resnet18.npz"
    with pytest.raises(ValueError) as e:
        C.convert_file(src, dst, "resnet18")
    assert str(e.value) == f"{src}: tensor 'layer2.0.bn1.running_var' holds 1 NaN/inf value"
    assert not dst.exists() and not C.manifest_path(dst).exists()
    with pytest.raises(ValueError, match="'layer2.0.bn1.running_var' holds 1 NaN/inf value"):
        C.load_model(src, "resnet18")
