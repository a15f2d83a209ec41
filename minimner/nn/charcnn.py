"""The character CNN of MSCMT's char variant (docs/modules.md §8; the original ``utils.char_cnn``).

Dimension legend: B batch, T word-piece tokens, Lw characters per word
(``max_wordlen``, 12), N = B·T words, D char embedding size (128), F filters per
kernel (32), nb kernel widths (3: k ∈ {2, 3, 4}), M MLP size (100), C hidden
(BERT's ``hidden_size``), Vc character vocabulary.

Per word (one row of ``char_ids``), with ``e = char_emb[ids]`` of shape (D, Lw)::

    for each branch j with kernel k_j:                             convs.{j}
        z_j = tanh(Conv1d_{D→F, k_j, pad ⌊k_j/2⌋}(e))               (F, Lo_j)   Lo = 13 / 12 / 13
        p_j = MaxPool1d(kernel = stride = Lw − k_j + 1)(z_j)        (F, 1)      one window per channel
        p_j = drop_0.25(p_j)
    f = [p_0, p_1, p_2] flattened channel-major: f[c·nb + j] = p_j[c]           (F·nb,) = (96,)
    out = Linear_{M→C}(drop_0.25(relu(Linear_{96→M}(f))))            linear.0 / linear.3

Floor-mode pooling reads only the first Lw − k + 1 conv positions (11, 10, 9 of
13, 12, 13): the last positions of every branch never reach the output and get
no gradient. That is the original's behaviour and is kept on purpose.

The parameter names are the original's (``char_emb.weight``, ``convs.{0,1,2}.0.weight``
/ ``.bias``, ``linear.0.*``, ``linear.3.*``): each branch and the MLP are
:class:`Sequential` lists whose positions match the original ``nn.Sequential``
indices (0 conv / 1 tanh / 2 pool / 3 dropout; 0 linear / 1 relu / 2 dropout /
3 linear), so the state dict loads by name.

The convolution and the pooling are the op pairs :mod:`minimner.ops.conv1d` and
:mod:`minimner.ops.pool1d`, height-1 views of the 2-D ops (see their docstrings).
"""
from __future__ import annotations

import numpy as np

from minimner import backend
from minimner.nn import init
from minimner.nn.layers import Dropout, Embedding, Linear, ReLU, Tanh
from minimner.nn.module import Module, ModuleList, Parameter
from minimner.ops.conv1d import conv1d_backward, conv1d_forward, conv1d_output_size
from minimner.ops.pool1d import maxpool1d_backward, maxpool1d_forward

__all__ = ["Conv1d", "MaxPool1d", "Sequential", "CharCNN"]


class Conv1d(Module):
    """1-D convolution (PyTorch ``nn.Conv1d`` without groups/dilation).

    Parameters
    ----------
    in_channels, out_channels : int, D and F
    kernel_size : int, k
    padding : int, zeros at both ends
    rng : Generator for the init, as torch: weight and bias ~ U(±1/√fan_in), fan_in = D·k

    Parameters held: ``weight`` (F, D, k) float32, ``bias`` (F,) float32.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, rng=None):
        super().__init__()
        g = init.generator(rng)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.padding = int(kernel_size), int(padding)
        bound = init.fan_in_bound(in_channels * kernel_size)
        self.weight = Parameter(init.uniform(g, (out_channels, in_channels, kernel_size), bound))   # (F, D, k)
        self.bias = Parameter(init.uniform(g, (out_channels,), bound))                  # (F,)

    def forward(self, x):
        """x (N, D, L) -> (N, F, Lo)."""
        y, cache = conv1d_forward(x, self.weight.data, self.bias.data, 1, self.padding)
        self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (N, F, Lo) -> dx (N, D, L); adds into ``weight.grad`` / ``bias.grad``."""
        dx, dw, db = conv1d_backward(dy, self._pop_cache())
        self.weight.grad += dw
        self.bias.grad += db
        return dx

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}"


class MaxPool1d(Module):
    """Max pooling over the last axis (PyTorch ``nn.MaxPool1d``, floor mode, stride = kernel by default)."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.stride = self.kernel_size if stride is None else int(stride)

    def forward(self, x):
        """x (N, F, L) -> (N, F, Lo)."""
        y, cache = maxpool1d_forward(x, self.kernel_size, self.stride)
        self._save_cache(cache)
        return y

    def backward(self, dy):
        """dy (N, F, Lo) -> dx (N, F, L)."""
        return maxpool1d_backward(dy, self._pop_cache())

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Sequential(ModuleList):
    """Sub-modules ``0, 1, …`` applied in order; backward runs them in reverse (PyTorch ``nn.Sequential``)."""

    def forward(self, x):
        for m in self:
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(list(self)):
            dy = m.backward(dy)
        return dy


def _wordlen_fits(max_wordlen: int, kernels) -> bool:
    """Whether every branch's pool yields exactly one window (what ``Linear(F·nb → M)`` needs)."""
    for k in kernels:
        window = max_wordlen - k + 1
        if window < 1 or conv1d_output_size(max_wordlen, k, 1, k // 2) >= 2 * window:
            return False
    return True


class CharCNN(Module):
    """``(B, T, Lw)`` char ids -> ``(B, T, C)`` word vectors (docs/modules.md §8).

    Parameters
    ----------
    char_vocab_size : int, Vc (5 specials + the data's characters, docs/data.md §4)
    hidden_size : int, C (the output size: BERT's hidden size)
    char_dim : int, D (the original's ``char_input_dim`` = 128)
    max_wordlen : int, Lw (12); every input must have exactly this many characters per word
    kernels : tuple of int, the branch kernel widths (2, 3, 4)
    filters : int, F (32)
    mlp_dim : int, M (100)
    dropout : float, the drop probability after each pool and inside the MLP (0.25)
    initializer_range : float, the std of BERT's normal init (0.02)
    rng : Generator for the init and the dropout masks (default: a fresh unseeded one)

    Init (docs/training.md §1): ``char_emb`` N(0, initializer_range) *including* the padding
    row 0 (BERT's init overwrites it; padding_idx 0 still keeps its gradient at
    zero); convs PyTorch's default U(±1/√(D·k)); ``linear.0`` / ``linear.3`` weights
    N(0, initializer_range), biases 0.

    Parameters held (original names): ``char_emb.weight`` (Vc, D),
    ``convs.{j}.0.weight`` (F, D, k_j), ``convs.{j}.0.bias`` (F,), ``linear.0.weight``
    (M, F·nb), ``linear.0.bias`` (M,), ``linear.3.weight`` (C, M), ``linear.3.bias`` (C,).

    Raises
    ------
    ValueError
        when ``max_wordlen`` is too short for every pool to yield one window
        (Lw ≥ 8 for kernels 2, 3, 4), or a size is not positive.
    """

    def __init__(self, char_vocab_size: int, hidden_size: int, char_dim: int = 128, max_wordlen: int = 12,
                 kernels=(2, 3, 4), filters: int = 32, mlp_dim: int = 100, dropout: float = 0.25,
                 initializer_range: float = 0.02, rng=None):
        super().__init__()
        for name, v in (("char_vocab_size", char_vocab_size), ("hidden_size", hidden_size), ("char_dim", char_dim),
                        ("max_wordlen", max_wordlen), ("filters", filters), ("mlp_dim", mlp_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"CharCNN: {name} must be a positive integer, got {v!r}")
        kernels = tuple(int(k) for k in kernels)
        if not kernels or min(kernels) < 1:
            raise ValueError(f"CharCNN: kernels must be positive ints, got {kernels!r}")
        if not _wordlen_fits(int(max_wordlen), kernels):
            raise ValueError(f"CharCNN: max_wordlen {max_wordlen} is too short for kernels {kernels}: every "
                             "branch's pool (kernel = stride = max_wordlen - k + 1) must yield exactly one window")
        g = init.generator(rng)
        self.max_wordlen, self.kernels = int(max_wordlen), kernels
        self.char_emb = Embedding(char_vocab_size, char_dim, padding_idx=0, rng=g)
        self.convs = ModuleList(
            Sequential([Conv1d(char_dim, filters, k, padding=k // 2, rng=g),      # 0: (N, D, Lw) -> (N, F, Lo)
                        Tanh(),                                                   # 1
                        MaxPool1d(self.max_wordlen - k + 1),                      # 2: (N, F, Lo) -> (N, F, 1)
                        Dropout(dropout, rng=g)])                                 # 3
            for k in kernels)
        self.linear = Sequential([Linear(filters * len(kernels), mlp_dim, rng=g),  # 0: (N, F·nb) -> (N, M)
                                  ReLU(),                                         # 1
                                  Dropout(dropout, rng=g),                        # 2
                                  Linear(mlp_dim, hidden_size, rng=g)])           # 3: (N, M) -> (N, C)
        std = float(initializer_range)
        self.char_emb.weight.data = init.normal(g, (char_vocab_size, char_dim), std)    # (Vc, D)
        for lin in (self.linear[0], self.linear[3]):
            lin.weight.data = init.normal(g, lin.weight.data.shape, std)                 # (Out, In)
            lin.bias.data = init.zeros(lin.weight.data, lin.bias.data.shape)

    def forward(self, char_ids):
        """char_ids (B, T, Lw) int -> (B, T, C) float (the parameters' dtype).

        Raises
        ------
        ValueError
            when ``char_ids`` is not a 3-D integer array with Lw = ``max_wordlen``
            (or, on NumPy, holds an id outside [0, Vc)).
        """
        Lw = self.max_wordlen
        if getattr(char_ids, "ndim", None) != 3 or char_ids.dtype.kind not in "iu" or char_ids.shape[2] != Lw:
            raise ValueError(f"CharCNN: char_ids must be a (B, T, Lw={Lw}) integer array, got "
                             f"{getattr(char_ids, 'dtype', type(char_ids))} shape {getattr(char_ids, 'shape', None)}")
        B, T, _ = char_ids.shape
        e = self.char_emb(char_ids.reshape(B * T, Lw))            # (N, Lw) -> (N, Lw, D)
        x = e.transpose(0, 2, 1)                                  # (N, D, Lw) view: channels first, as Conv1d wants
        pooled = [branch(x) for branch in self.convs]             # nb × (N, F, 1)
        f = backend.get_xp(x).concatenate(pooled, axis=-1)        # (N, F, nb): f[n, c, j] = branch j, channel c
        f = f.reshape(B * T, -1)                                  # (N, F·nb): feature c·nb + j (channel-major)
        out = self.linear(f)                                      # (N, F·nb) -> (N, M) -> (N, C)
        self._save_cache((B, T))
        return out.reshape(B, T, -1)                              # (B, T, C)

    def backward(self, dout):
        """dout (B, T, C) -> None (ids have no gradient); adds into every parameter's ``.grad``."""
        B, T = self._pop_cache()
        df = self.linear.backward(dout.reshape(B * T, -1))        # undo the MLP: (N, C) -> (N, F·nb)
        df = df.reshape(B * T, -1, len(self.convs))               # undo the flatten: (N, F, nb)
        dx = None
        for j, branch in enumerate(self.convs):                   # every branch read the same x: sum
            dxj = branch.backward(df[:, :, j:j + 1])              # (N, F, 1) -> (N, D, Lw)
            dx = dxj if dx is None else dx + dxj
        self.char_emb.backward(dx.transpose(0, 2, 1))             # undo the transpose: (N, Lw, D); pad row gets 0
        return None

    def extra_repr(self) -> str:
        Vc, D = self.char_emb.weight.data.shape
        return f"Vc={Vc}, D={D}, max_wordlen={self.max_wordlen}, kernels={self.kernels}"
