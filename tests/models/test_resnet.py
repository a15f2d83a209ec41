"""ResNet: torchvision key names, parity of the feature map with a PyTorch ResNet, backward, loading.

torchvision cannot be installed next to the pinned torch here, so the reference is
a small PyTorch module below with torchvision's exact module names and structure
(conv1, bn1, relu, maxpool, layer1..4 of BasicBlock/Bottleneck with
conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/downsample.1, avgpool, fc), which
reproduces torchvision's state-dict keys and shapes exactly.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from minimner import backend
from minimner.gradcheck import check_module
from minimner.models import resnet as R


# ----------------------------------------------------------------------------- torch reference
@functools.lru_cache(maxsize=None)
def _torch_classes():
    import torch.nn as nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride on the 3×3
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self, depth):
            super().__init__()
            kind, counts = {18: ("b", (2, 2, 2, 2)), 34: ("b", (3, 4, 6, 3)), 50: ("k", (3, 4, 6, 3)),
                            101: ("k", (3, 4, 23, 3)), 152: ("k", (3, 8, 36, 3))}[depth]
            block = BasicBlock if kind == "b" else Bottleneck
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(block, 64, counts[0])
            self.layer2 = self._make_layer(block, 128, counts[1], 2)
            self.layer3 = self._make_layer(block, 256, counts[2], 2)
            self.layer4 = self._make_layer(block, 512, counts[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, 1000)

        def _make_layer(self, block, planes, n, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, n)]
            return nn.Sequential(*layers)

        def features(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    return ResNet


def torch_resnet(depth, seed=0):
    """A torchvision-layout ResNet with random weights and realistic, non-trivial BN statistics.

    Conv weights keep torch's Kaiming-uniform init. Every BN gets random γ, β,
    running mean and variance; the last BN of each residual branch gets a small γ so
    the residual stream grows slowly and 152 layers stay at a sane scale.
    """
    import torch

    torch.manual_seed(seed)
    model = _torch_classes()(depth).eval()
    g = torch.Generator().manual_seed(seed)
    last_bn = "bn2" if depth < 50 else "bn3"  # the BN that closes a residual branch
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                last = name.startswith("layer") and name.endswith(last_bn)
                m.weight.uniform_(0.1, 0.4, generator=g) if last else m.weight.uniform_(0.5, 1.0, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (1,), generator=g)))
    return model


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def torchvision_keys(depth):
    """torchvision's ResNet state-dict keys and shapes, derived independently of both models."""
    kind, counts = R.ARCHS[depth]
    out = {}

    def conv_bn(prefix_conv, prefix_bn, o, c, k):
        out[f"{prefix_conv}.weight"] = (o, c, k, k)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix_bn}.{leaf}"] = (o,)
        out[f"{prefix_bn}.num_batches_tracked"] = ()

    conv_bn("conv1", "bn1", 64, 3, 7)
    inplanes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            stride = 2 if (i > 1 and j == 0) else 1
            if kind == "basic":
                conv_bn(f"{p}.conv1", f"{p}.bn1", planes, inplanes, 3)
                conv_bn(f"{p}.conv2", f"{p}.bn2", planes, planes, 3)
                outplanes = planes
            else:
                conv_bn(f"{p}.conv1", f"{p}.bn1", planes, inplanes, 1)
                conv_bn(f"{p}.conv2", f"{p}.bn2", planes, planes, 3)
                conv_bn(f"{p}.conv3", f"{p}.bn3", planes * 4, planes, 1)
                outplanes = planes * 4
            if j == 0 and (stride != 1 or inplanes != outplanes):
                conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", outplanes, inplanes, 1)
            inplanes = outplanes
    out["fc.weight"] = (1000, inplanes)
    out["fc.bias"] = (1000,)
    return out


#: Published torchvision parameter counts (classifier included), an independent check of the key list.
TORCHVISION_NUM_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def _rel_max_diff(a, b):
    a, b = backend.asnumpy(a), np.asarray(b)
    d = np.abs(a - b)
    i = np.unravel_index(np.argmax(d), d.shape)
    return float(d.max() / np.abs(b).max()), i


@functools.lru_cache(maxsize=None)
def _pair(depth):
    """(torch model, minimner model with the same weights) — built once per depth per session."""
    t = torch_resnet(depth)
    m = R.build(depth)
    m.load_state_dict(numpy_state(t))
    return t, m


# ----------------------------------------------------------------------------- key names
@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_state_dict_matches_torchvision_key_list(depth):
    expected = torchvision_keys(depth)
    params = sum(int(np.prod(s)) for k, s in expected.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == TORCHVISION_NUM_PARAMS[depth]
    model = R.build(depth)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {k: s for k, s in expected.items() if k not in R.IGNORED_KEYS}
    assert list(got) == [k for k in expected if k not in R.IGNORED_KEYS]  # same order too
    assert got == want
    if depth == 152:
        assert len(expected) == 932 and len(got) == 930  # 155 convs × (weight + 5 BN entries) + fc
        assert expected["layer3.35.bn3.running_var"] == (1024,)
        assert expected["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1)
        assert expected["layer2.0.conv2.weight"] == (128, 128, 3, 3)  # v1.5: the 3×3 carries the stride


@pytest.mark.parity
@pytest.mark.parametrize("depth", [18, 50, 152])
def test_torch_reference_has_torchvision_keys(depth):
    torch = pytest.importorskip("torch")
    model = _torch_classes()(depth)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == torchvision_keys(depth)
    assert list(got) == list(torchvision_keys(depth))
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NUM_PARAMS[depth]
    del torch


# ----------------------------------------------------------------------------- parity
@pytest.mark.parity
@pytest.mark.parametrize("depth,hw,batch", [(50, (224, 224), 1), (152, (64, 64), 1), (18, (67, 45), 2)])
def test_feature_map_parity(depth, hw, batch):
    torch = pytest.importorskip("torch")
    t, m = _pair(depth)
    x = np.random.default_rng(depth).standard_normal((batch, 3, *hw)).astype(np.float32)
    with torch.no_grad():
        ref = t.features(torch.from_numpy(x)).numpy()
    out = m.features(x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert out.shape[2:] == (-(-x.shape[2] // 32), -(-x.shape[3] // 32))  # ceil(Hi/32): 67×45 -> 3×2
    err, idx = _rel_max_diff(out, ref)
    assert err <= 1e-4, f"resnet{depth}: max |diff| / max |ref| = {err:.2e} at {idx}"
    m.fold_bn()
    try:
        err_f, idx_f = _rel_max_diff(m.features(x), ref)
    finally:
        m.unfold_bn()
    assert err_f <= 1e-4, f"resnet{depth} (BN folded): max |diff| / max |ref| = {err_f:.2e} at {idx_f}"
    pooled = R.ResNet.pool(out)
    assert pooled.shape == (batch, m.out_channels)
    np.testing.assert_allclose(pooled, ref.mean(axis=(2, 3)), rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parity
def test_train_mode_bn_and_input_gradient_parity():
    torch = pytest.importorskip("torch")
    t = torch_resnet(18, seed=3)
    m = R.build(18)
    m.load_state_dict(numpy_state(t))
    # 96×96 ends in a 3×3 map: train-mode BatchNorm in layer4 normalises over 2·3·3 = 18 values per channel.
    # At 64×64 (2·2·2 = 8 values) its backward amplifies float32 rounding so much that two exact
    # implementations differ by ~1e-2 in d(images) on some BLAS builds; the float64 test below covers it.
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((2, 512, 3, 3)).astype(np.float32)
    for train in (False, True):
        t.train(train)
        m.train(train)
        t.zero_grad()
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        ref = t.features(xt)
        ref.backward(torch.from_numpy(dy))
        m.zero_grad()
        out = m.forward(x)
        dx = m.backward(dy)
        err, idx = _rel_max_diff(out, ref.detach().numpy())
        assert err <= 1e-4, f"train={train}: forward diff {err:.2e} at {idx}"
        err, idx = _rel_max_diff(dx, xt.grad.numpy())
        assert err <= 1e-4, f"train={train}: d(images) diff {err:.2e} at {idx}"
        named = dict(m.named_parameters())
        for key in ("conv1.weight", "layer1.0.bn2.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight"):
            ref_g = dict(t.named_parameters())[key].grad.numpy()
            err, idx = _rel_max_diff(named[key].grad, ref_g)
            assert err <= 1e-4, f"train={train}: grad {key} diff {err:.2e} at {idx}"
        if train:  # running statistics moved exactly as torch's did
            for key in ("bn1.running_mean", "layer3.1.bn1.running_var", "layer4.0.downsample.1.running_var"):
                np.testing.assert_allclose(m.state_dict()[key], t.state_dict()[key].numpy(), rtol=1e-5, atol=1e-6)
            assert int(m.state_dict()["bn1.num_batches_tracked"]) == int(t.state_dict()["bn1.num_batches_tracked"])



@pytest.mark.parity
def test_train_mode_bn_input_gradient_parity_float64_small_map():
    """The ill-conditioned case (64×64 -> 2×2 map, 8 values per layer4 BatchNorm channel) in float64 on both sides."""
    torch = pytest.importorskip("torch")
    t = torch_resnet(18, seed=3).double().train()
    m = R.build(18)
    m.load_state_dict(numpy_state(t))
    m.double().train()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    dy = np.random.default_rng(1).standard_normal((2, 512, 2, 2))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    t.features(xt).backward(torch.from_numpy(dy))
    m.forward(x)
    err, idx = _rel_max_diff(m.backward(dy), xt.grad.numpy())
    assert err <= 1e-10, f"float64 d(images) diff {err:.2e} at {idx}"

# ----------------------------------------------------------------------------- backward
@pytest.mark.parametrize("train", [False, True])
def test_backward_directional_check(train, rng):
    model = R.build(18, rng=np.random.default_rng(5)).double()
    model.train(train)
    for name, mod in model.named_modules():
        if type(mod).__name__ == "BatchNorm2d":  # non-trivial statistics (object.__setattr__ keeps the buffer)
            C = mod.num_features
            object.__setattr__(mod, "running_mean", rng.normal(0, 0.2, C))
            object.__setattr__(mod, "running_var", rng.uniform(0.5, 2.0, C))
            mod.weight.data = rng.uniform(0.5, 1.0, C)
            mod.bias.data = rng.normal(0, 0.1, C)
    # 64×64 leaves layer4 a 2×2 map: train-mode BN there normalises B·H·W = 8 values per channel
    # (with 1×1 it would be 2 values, so nearly ±1 whatever the input: too curved for h = 1e-6)
    x = rng.standard_normal((2, 3, 64, 64))
    errs = check_module(model, lambda a: model.forward(a), model.backward, [x], rng, directional=True)
    assert errs["direction"] < 1e-6


# ----------------------------------------------------------------------------- API and loading
def test_regions_and_pool_layout():
    fmap = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)  # (B, C, h, w)
    reg = R.ResNet.regions(fmap)
    assert reg.shape == (2, 8, 3)
    for row in range(2):
        for col in range(4):
            np.testing.assert_array_equal(reg[:, 4 * row + col, :], fmap[:, :, row, col])
    np.testing.assert_allclose(R.ResNet.pool(fmap), fmap.mean(axis=(2, 3)))


def test_build_accepts_names_and_rejects_unknown():
    assert R.arch_depth("resnet152") == 152 and R.arch_depth(50) == 50 and R.arch_depth("ResNet18") == 18
    with pytest.raises(ValueError, match="resnet152"):
        R.arch_depth("resnet200")
    m = R.build("resnet18")
    assert not m.training and m.out_channels == 512


def test_features_shape_dtype_and_input_validation():
    m = R.build(18)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    out = m.features(x)
    assert out.shape == (1, 512, 7, 7) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) float32"):
        m.features(x.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        m.features(x[:, :2])
    with pytest.raises(ValueError, match="at least 32"):
        m.features(x[:, :, :16, :16])


def test_features_keeps_no_cache():
    m = R.build(18)
    m.features(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(RuntimeError, match="without a pending forward"):
        m.backward(np.zeros((1, 512, 1, 1), np.float32))


def _state(depth=18):
    return {k: np.asarray(v).copy() for k, v in R.build(depth, rng=np.random.default_rng(9)).state_dict().items()}


def test_load_state_dict_accounting():
    m = R.build(18)
    sd = _state()
    sd["fc.weight"] = np.zeros((10, 512), np.float32)
    sd["fc.bias"] = np.zeros((10,), np.float32)
    del sd["layer1.0.bn1.num_batches_tracked"]
    res = m.load_state_dict(sd)
    assert res["ignored_keys"] == ["fc.weight", "fc.bias"]
    assert res["defaulted_keys"] == ["layer1.0.bn1.num_batches_tracked"]
    np.testing.assert_array_equal(m.state_dict()["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])

    bad = _state()
    del bad["layer2.0.downsample.1.running_var"]
    with pytest.raises(KeyError, match=r"missing keys: \['layer2.0.downsample.1.running_var'\]"):
        m.load_state_dict(bad)
    bad = _state()
    bad["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(KeyError, match="unexpected keys.*layer5.0.conv1.weight"):
        m.load_state_dict(bad)
    bad = _state()
    bad["layer3.1.conv2.weight"] = np.zeros((256, 256, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"layer3.1.conv2.weight.*\(256, 256, 3, 3\).*\(256, 256, 1, 1\)"):
        m.load_state_dict(bad)
    bad = _state()
    bad["fc.weight"] = np.zeros((1000, 2048), np.float32)
    with pytest.raises(ValueError, match="fc.weight.*512 inputs"):
        m.load_state_dict(bad)


def test_fold_bn_rules():
    m = R.build(18, rng=np.random.default_rng(2))
    for _, mod in m.named_modules():
        if type(mod).__name__ == "BatchNorm2d":
            object.__setattr__(mod, "running_var", np.full(mod.num_features, 1.7, np.float32))
            object.__setattr__(mod, "running_mean", np.full(mod.num_features, 0.1, np.float32))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    plain = m.features(x)
    m.fold_bn()
    np.testing.assert_allclose(m.features(x), plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    m.load_state_dict(_state())  # new weights invalidate the folded copies
    assert m.conv1.folded is None and not m._bn_folded
    m.train()
    with pytest.raises(RuntimeError, match="eval"):
        m.fold_bn()


@pytest.mark.gpu
def test_cupy_matches_numpy():
    if not backend.cupy_available():
        pytest.skip("CuPy or a CUDA GPU is not available")
    m = R.build(50)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = m.features(x)
    m.to("cupy").fold_bn()
    out = m.features(backend.asarray(x, backend="cupy"))
    assert backend.device_of(out) == "cupy"
    err, idx = _rel_max_diff(out, ref)
    assert err <= 1e-4, f"cupy vs numpy {err:.2e} at {idx}"
