"""ResNet-18/34/50/101/152 (He et al. 2016) in torchvision's layout, as a frozen image encoder.

Dimension legend: B batch, C channels, Hi×Wi image size, R = (Hi/32)·(Wi/32)
image regions (49 for 224×224), images are (B, 3, Hi, Wi) float32 NCHW.

Architecture (torchvision "v1.5": the stride of a down-sampling bottleneck sits on
its 3×3 convolution, not on the first 1×1)::

    conv1 7×7/2 → bn1 → relu → maxpool 3×3/2 → layer1 → layer2 (/2) → layer3 (/2) → layer4 (/2)
    BasicBlock (18, 34):        relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
    Bottleneck (50, 101, 152):  relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))
    shortcut = x, or downsample.1(downsample.0(x)) (1×1 conv with the block's stride + BN)
                when the block changes the resolution or the channel count

The final feature map is ``(B, C, Hi/32, Wi/32)``, C = 512 (18/34) or 2048 (50+), so
``(B, 2048, 7, 7)`` for 224×224. :meth:`ResNet.regions` turns it into the
``(B, R, C)`` grid MSCMT attends over (region r = 7·row + col, docs/data.md §5) and
:meth:`ResNet.pool` gives the pooled ``(B, C)`` vector (global average).

State-dict names are torchvision's (``conv1.weight``, ``layer3.35.bn2.running_var``,
``layer2.0.downsample.0.weight``, …). The ImageNet classifier ``fc`` is **not** part
of this model: ``fc.weight`` / ``fc.bias`` in a torchvision file are accepted,
shape-checked and explicitly ignored (MSCMT uses the grid, never the logits).
Checkpoints saved before PyTorch 0.4.1 (e.g. ``resnet152-b121ed2d.pth``) lack
``num_batches_tracked``; it is then set to 0, as PyTorch itself does.

Two forward paths share the same modules:

* :meth:`ResNet.forward` keeps caches so :meth:`ResNet.backward` can run (the
  encoder is frozen in MSCMT, but the backward is here for teaching and checks);
* :meth:`ResNet.features` is inference: no caches, and after :meth:`ResNet.fold_bn`
  every eval-mode BN is merged into its convolution (one GEMM + bias per conv),
  with activations kept in the GEMM's own (C, B, Hi, Wi) layout between the first
  and the last convolution.
"""
from __future__ import annotations

import numpy as np

from minimner import backend
from minimner.nn import init
from minimner.nn.conv import BatchNorm2d, Conv2d, MaxPool2d
from minimner.nn.module import Module, ModuleList
from minimner.ops.activations import relu_backward, relu_forward
from minimner.ops.batchnorm2d import fold_batchnorm
from minimner.ops.pool import global_avg_pool2d_forward

__all__ = ["ARCHS", "ResNet", "BasicBlock", "Bottleneck", "build", "arch_depth", "IGNORED_KEYS"]

#: depth -> (block kind, blocks per stage); torchvision's table.
ARCHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
         101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}

#: torchvision keys that this encoder accepts but does not use (the ImageNet classifier).
IGNORED_KEYS = ("fc.weight", "fc.bias")


def arch_depth(arch) -> int:
    """``'resnet152'`` / ``152`` -> 152; raises ValueError naming the supported ones."""
    name = str(arch).lower()
    depth = name[len("resnet"):] if name.startswith("resnet") else name
    if not depth.isdigit() or int(depth) not in ARCHS:
        raise ValueError(f"unknown ResNet architecture {arch!r}; expected one of "
                         + ", ".join(f"resnet{d}" for d in ARCHS))
    return int(depth)


def _relu(x, keep_cache):
    """relu(x) and its mask; on the inference path (no cache) in place and without a mask.

    In place is safe there: every caller passes an array it has just created (a
    conv/BN output or a residual sum), which nothing else references.
    """
    if keep_cache:
        return relu_forward(x)                             # (y, mask): backward needs the mask
    xp = backend.get_xp(x)
    return xp.maximum(x, 0, out=x), None                   # one pass, no new array


def _add(a, b, keep_cache):
    """a + b; in place into ``a`` (a fresh conv/BN output) on the inference path."""
    if keep_cache:
        return a + b
    a += b
    return a


def _conv_bn(conv, bn, x, keep_cache, folded):
    """bn(conv(x)), or the folded conv alone on the inference path."""
    if folded:
        return conv.forward_folded(x)
    return bn.forward(conv.forward(x, keep_cache), keep_cache)


class _Block(Module):
    """Shared plumbing of the two residual blocks: the optional downsample shortcut."""

    def _shortcut(self, x, keep_cache, folded):
        if self.downsample is None:
            return x
        return _conv_bn(self.downsample[0], self.downsample[1], x, keep_cache, folded)

    def _shortcut_backward(self, dy):
        if self.downsample is None:
            return dy
        return self.downsample[0].backward(self.downsample[1].backward(dy))

    def conv_bn_pairs(self):
        pairs = [(getattr(self, f"conv{i}"), getattr(self, f"bn{i}")) for i in range(1, self.n_convs + 1)]
        if self.downsample is not None:
            pairs.append((self.downsample[0], self.downsample[1]))
        return pairs


def _conv(c, o, k, s, p, rng):
    """A bias-free ResNet convolution, Kaiming-normal (fan-out) init as torchvision; zeros when rng is None."""
    conv = Conv2d(c, o, k, s, p, bias=False, init=False)
    if rng is not None:
        conv.weight.data = init.kaiming_normal_fan_out(rng, (o, c, k, k))  # (O, C, k, k), std = √(2 / fan_out)
    return conv


def _downsample(inplanes, outplanes, stride, rng):
    if stride == 1 and inplanes == outplanes:
        return None
    return ModuleList([_conv(inplanes, outplanes, 1, stride, 0, rng), BatchNorm2d(outplanes)])


class BasicBlock(_Block):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34). x (B, C, Hi, Wi) -> (B, P, Hi/s, Wi/s).

    ``rng``: Generator for the Kaiming init of the convolutions (None leaves them zero).
    """

    expansion = 1
    n_convs = 2

    def __init__(self, inplanes, planes, stride=1, rng=None):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride, 1, rng)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, 1, 1, rng)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride, rng)

    def forward(self, x, keep_cache=True, folded=False):
        identity = self._shortcut(x, keep_cache, folded)                    # (B, P, Hi/s, Wi/s)
        out, m1 = _relu(_conv_bn(self.conv1, self.bn1, x, keep_cache, folded), keep_cache)
        out = _conv_bn(self.conv2, self.bn2, out, keep_cache, folded)       # (B, P, Hi/s, Wi/s)
        out, m2 = _relu(_add(out, identity, keep_cache), keep_cache)
        if keep_cache:
            self._save_cache((m1, m2))                                      # the two ReLU masks
        return out

    def backward(self, dy):
        m1, m2 = self._pop_cache()
        d = relu_backward(dy, m2)                          # out = relu(main + identity)
        dmain = self.conv2.backward(self.bn2.backward(d))
        dmain = self.conv1.backward(self.bn1.backward(relu_backward(dmain, m1)))
        return dmain + self._shortcut_backward(d)          # x feeds both branches: gradients add


class Bottleneck(_Block):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand ×4, plus the shortcut (ResNet-50/101/152).

    ``rng``: Generator for the Kaiming init of the convolutions (None leaves them zero).
    """

    expansion = 4
    n_convs = 3

    def __init__(self, inplanes, planes, stride=1, rng=None):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1, 1, 0, rng)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, 1, rng)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1, 1, 0, rng)
        self.bn3 = BatchNorm2d(planes * 4)
        self.downsample = _downsample(inplanes, planes * 4, stride, rng)

    def forward(self, x, keep_cache=True, folded=False):
        identity = self._shortcut(x, keep_cache, folded)                    # (B, 4P, Hi/s, Wi/s)
        out, m1 = _relu(_conv_bn(self.conv1, self.bn1, x, keep_cache, folded), keep_cache)    # (B, P, Hi, Wi)
        out, m2 = _relu(_conv_bn(self.conv2, self.bn2, out, keep_cache, folded), keep_cache)  # (B, P, Hi/s, Wi/s)
        out = _conv_bn(self.conv3, self.bn3, out, keep_cache, folded)       # (B, 4P, Hi/s, Wi/s)
        out, m3 = _relu(_add(out, identity, keep_cache), keep_cache)
        if keep_cache:
            self._save_cache((m1, m2, m3))                                  # the three ReLU masks
        return out

    def backward(self, dy):
        m1, m2, m3 = self._pop_cache()
        d = relu_backward(dy, m3)                          # out = relu(main + identity)
        dmain = self.conv3.backward(self.bn3.backward(d))
        dmain = self.conv2.backward(self.bn2.backward(relu_backward(dmain, m2)))
        dmain = self.conv1.backward(self.bn1.backward(relu_backward(dmain, m1)))
        return dmain + self._shortcut_backward(d)          # x feeds both branches: gradients add


class ResNet(Module):
    """A torchvision-layout ResNet without its classifier; see the module docstring.

    Parameters
    ----------
    depth : int, one of 18, 34, 50, 101, 152
    rng : numpy/CuPy Generator for the random init (default: seeded with 0).
        Init as torchvision: conv weights ~ N(0, 2 / (O·kh·kw)) (Kaiming, fan-out),
        BN weight 1, bias 0. Real use loads ImageNet weights over it.
    init : bool, False skips the random draws (conv weights stay zero): for loading weights
    """

    def __init__(self, depth=152, rng=None, init=True):
        super().__init__()
        depth = arch_depth(depth)
        kind, counts = ARCHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        g = (backend.rng(0) if rng is None else rng) if init else None
        self.depth = depth
        self.conv1 = _conv(3, 64, 7, 2, 3, g)
        self.bn1 = BatchNorm2d(64)
        self.maxpool = MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts), start=1):
            stride = 1 if i == 1 else 2
            blocks = [block(inplanes, planes, stride, rng=g)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, rng=g) for _ in range(1, n)]
            setattr(self, f"layer{i}", ModuleList(blocks))
        self.out_channels = inplanes                       # C: 512 or 2048
        self._bn_folded = False
        self.eval()                                        # a frozen encoder: eval mode unless asked otherwise

    # ------------------------------------------------------------------------- structure
    def blocks(self):
        """All residual blocks in forward order."""
        return [b for i in range(1, 5) for b in getattr(self, f"layer{i}")]

    def _conv_bn_pairs(self):
        return [(self.conv1, self.bn1)] + [p for b in self.blocks() for p in b.conv_bn_pairs()]

    # --------------------------------------------------------------------------- forward
    def _check_images(self, images):
        dt = self.conv1.weight.data.dtype
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != dt:
            raise ValueError(f"ResNet: images must be (B, 3, H, W) {dt}, got shape {tuple(images.shape)} "
                             f"dtype {images.dtype}")
        if images.shape[2] < 32 or images.shape[3] < 32:
            raise ValueError(f"ResNet: images must be at least 32×32, got {images.shape[2]}×{images.shape[3]}")

    def forward(self, images, keep_cache=True, folded=False):
        """images (B, 3, Hi, Wi) -> feature map (B, C, Hi/32, Wi/32); keeps caches for :meth:`backward`.

        ``folded=True`` (inference only, after :meth:`fold_bn`) runs the BN-folded
        convolutions with activations in the GEMM-native (C, B, Hi, Wi) layout: one
        axis swap here at the start and one at the end instead of two per convolution.
        """
        self._check_images(images)
        xp = backend.get_xp(images)
        x = xp.ascontiguousarray(images.transpose(1, 0, 2, 3)) if folded else images  # (3, B, Hi, Wi) if folded
        x, m = _relu(_conv_bn(self.conv1, self.bn1, x, keep_cache, folded), keep_cache)  # 64 channels, Hi/2
        x = self.maxpool.forward(x, keep_cache)            # Hi/4 (pooling treats the two leading axes alike)
        for blk in self.blocks():
            x = blk.forward(x, keep_cache, folded)         # layer1 … layer4 -> C channels, Hi/32
        if keep_cache:
            self._save_cache(m)                            # the stem's ReLU mask
        return xp.ascontiguousarray(x.transpose(1, 0, 2, 3)) if folded else x  # (B, C, Hi/32, Wi/32)

    def backward(self, dfmap):
        """dfmap (B, C, Hi/32, Wi/32) -> dimages (B, 3, Hi, Wi); adds every parameter gradient."""
        m = self._pop_cache()
        d = dfmap
        for blk in reversed(self.blocks()):                # layer4 … layer1, mirror of forward
            d = blk.backward(d)
        d = self.maxpool.backward(d)
        return self.conv1.backward(self.bn1.backward(relu_backward(d, m)))

    def features(self, images):
        """Inference: the final feature map, without caches.

        Parameters
        ----------
        images : array (B, 3, Hi, Wi) float32, ImageNet-normalised (see
            :mod:`minimner.vision.images`)

        Returns
        -------
        array (B, C, ⌈Hi/32⌉, ⌈Wi/32⌉) float32 (each of the five stride-2 stages
        rounds up, as in PyTorch), e.g. (B, 2048, 7, 7) for ResNet-152 at 224×224.

        Uses the BN-folded convolutions when :meth:`fold_bn` was called and the
        model is in eval mode; in train mode BN uses batch statistics (and updates
        the running ones), like PyTorch.
        """
        return self.forward(images, keep_cache=False, folded=self._bn_folded and not self.training)

    @staticmethod
    def pool(fmap):
        """The pooled vector: fmap (B, C, h, w) -> (B, C), the mean over the h·w regions."""
        return global_avg_pool2d_forward(fmap)[0]

    @staticmethod
    def regions(fmap):
        """fmap (B, C, h, w) -> (B, R, C) with R = h·w and region r = w·row + col (row-major)."""
        B, C, h, w = fmap.shape
        return fmap.reshape(B, C, h * w).transpose(0, 2, 1)  # (B, C, R) -> (B, R, C), a view

    # ------------------------------------------------------------------------------ BN folding
    def fold_bn(self) -> "ResNet":
        """Merge every eval-mode BN into its convolution for :meth:`features` (fast inference).

        The folded weights are stored beside the originals (about the model's size
        again in memory); the state dict is unchanged. They are dropped by
        :meth:`unfold_bn`, ``train()``, ``load_state_dict``, ``to`` and ``double``.

        Raises
        ------
        RuntimeError
            in train mode (batch statistics cannot be folded).
        """
        if self.training:
            raise RuntimeError("ResNet.fold_bn: only eval-mode BatchNorm can be folded (call .eval() first)")
        for conv, bn in self._conv_bn_pairs():
            conv.folded = fold_batchnorm(conv.weight.data, None if conv.bias is None else conv.bias.data,
                                         bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var, bn.eps)
        self._bn_folded = True
        return self

    def unfold_bn(self) -> "ResNet":
        """Forget the folded weights (features() then runs conv and BN separately)."""
        if "_bn_folded" in self.__dict__:
            for conv, _ in self._conv_bn_pairs():
                conv.folded = None
            self._bn_folded = False
        return self

    def train(self, mode: bool = True):
        if mode:
            self.unfold_bn()
        return super().train(mode)

    def to(self, backend_name, dtype=None):
        self.unfold_bn()
        return super().to(backend_name, dtype)

    def double(self):
        self.unfold_bn()
        return super().double()

    # ------------------------------------------------------------------------------ loading
    def load_state_dict(self, mapping, strict=True):
        """Load torchvision-named arrays (NumPy or CuPy; see the module docstring for fc / num_batches_tracked).

        Returns
        -------
        dict with ``missing_keys``, ``unexpected_keys``, ``ignored_keys`` (the fc
        head) and ``defaulted_keys`` (num_batches_tracked set to 0).

        Raises
        ------
        KeyError
            (strict) naming every missing and unexpected key.
        ValueError
            naming a key whose shape does not match (fc included: its input size must be C).
        """
        mapping = dict(mapping)
        ignored = [k for k in IGNORED_KEYS if k in mapping]
        for k in ignored:
            shape = tuple(mapping.pop(k).shape)
            ok = (len(shape) == 2 and shape[1] == self.out_channels) if k == "fc.weight" else len(shape) == 1
            if not ok:
                raise ValueError(f"ResNet.load_state_dict: {k!r} has shape {shape}; a resnet{self.depth} "
                                 f"classifier takes {self.out_channels} inputs")
        defaulted = []
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked") and k not in mapping:
                mapping[k] = np.zeros((), dtype=np.int64)  # what PyTorch fills in for pre-0.4.1 checkpoints
                defaulted.append(k)
        self.unfold_bn()
        result = super().load_state_dict(mapping, strict)
        result.update(ignored_keys=ignored, defaulted_keys=defaulted)
        return result


def build(depth=152, rng=None, init=True) -> ResNet:
    """A ResNet of ``depth`` (18/34/50/101/152 or ``'resnet152'``) in eval mode, randomly initialised.

    Load weights with ``model.load_state_dict(mapping)`` (torchvision names, NumPy
    arrays), optionally ``model.fold_bn()``, then ``model.features(images)``.
    ``init=False`` skips the random draws (faster when weights are loaded anyway).
    """
    return ResNet(depth, rng=rng, init=init)
