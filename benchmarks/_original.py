"""Drive the AUTHORS' MSCMT (LiuPeiP-CS/IIE4MNER) from a user-given checkout, with minimner-style inputs.

Nothing of the authors' code lives in this repository: this module only imports
``my_bert/mner_modeling.py`` (and the ``utils.py`` next to it) from the checkout path the
user gives (``--original PATH`` in the benchmarks, ``$MINIMNER_IIE4MNER`` in the parity
tests). Used by ``tests/models/test_torch_reference.py`` and the issue-13 benchmark.

What importing the checkout needs (and what this module supplies):

* ``config.py`` builds its vocabularies from data files when imported (``build_vocab``)
  and pins ``CUDA_VISIBLE_DEVICES``; it is replaced by a stub module ``config`` whose
  ``Args`` holds the flags, ``obj_num``, ``img_object_label_num = 85``, ``aug_dim = 200``,
  ``char_input_dim = 128``, ``max_wordlen = 12``, a ``char_dict`` of the chosen size
  (it only sets the char-embedding rows) and a tiny ``word_dict``.
* ``from utils import ...`` is served by the checkout's own ``utils.py``, loaded by path
  (so an unrelated ``utils`` on ``sys.path`` cannot shadow it).
* ``my_bert/file_utils.py`` imports ``boto3``, ``requests``, ``botocore`` and ``tqdm`` at
  top level (for downloads only); any of them that is not installed is stubbed.
* ``apex`` is optional in the original (it falls back to its own LayerNorm).

The package is imported under a private name per checkout, and ``sys.modules`` /
``sys.path`` are restored afterwards. The original reads its flags from
``config.Args`` at forward time, one ``Args`` per imported checkout, so flags are
process-global for that checkout: :class:`OriginalMSCMT` keeps each model's own flags and
writes them into ``Args`` before every call.

Inputs (numpy or torch): ``input_ids``, ``input_mask`` (B, T) int; ``aug`` (B, T, 200);
``image`` (B, 2048, 7, 7) (the original hard-codes 2048 channels and 49 regions);
``objects`` (B, O) int (0 = none); ``char_ids`` (B, T, 12) int (zeros if None: the original
runs its char-CNN even when it is off); ``labels`` / ``aux_labels`` (B, T) int;
``trans_matrix`` (7, 13) (docs/model.md §4 if None); ``region_mask`` (B, 49) (ones if None). The
unused Faster R-CNN inputs are zeros, segment ids zeros, and ``added_attention_mask`` is
``[region_mask; input_mask]``, of which the model reads the first 49 entries.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np

FLAGS = ("use_char_cnn", "aug_before", "aug_gate", "ffusion_method", "main_cat", "alpha_seg", "seg_task")
FLAG_DEFAULTS = dict(use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0, alpha_seg=1,
                     seg_task=0)
BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_dropout_prob",
             "attention_probs_dropout_prob", "initializer_range")
_REQUIRED_FILES = ("my_bert/__init__.py", "my_bert/mner_modeling.py", "my_bert/file_utils.py", "utils.py")
_LOADED: dict[Path, types.SimpleNamespace] = {}


def _stub_config(char_vocab_size: int, obj_num: int) -> types.ModuleType:
    """A ``config`` module standing in for the checkout's config.py (no data files, no env changes)."""
    specials = ["[PAD]", "[UNK]", "[X]", "[XC]", "[XS]"]
    if char_vocab_size < len(specials):
        raise ValueError(f"char_vocab_size must be >= {len(specials)} (the special chars), received "
                         f"{char_vocab_size}")
    char_dict = {c: i for i, c in enumerate(specials)}
    char_dict.update({f"c{i}": i for i in range(len(specials), char_vocab_size)})
    attrs = dict(FLAG_DEFAULTS, obj_num=obj_num, img_object_label_num=85, aug_dim=200, char_input_dim=128,
                 max_wordlen=12, rcnn_input_dim=2048, epoch_num=75, resize=1, token_aug_num=4,
                 word_dict={"[PAD]": 0, "[UNK]": 1}, char_dict=char_dict, text_data_dir="", img_path="",
                 added_output_dir="")
    mod = types.ModuleType("config")
    mod.Args = type("Args", (), attrs)
    return mod


def _load_by_path(name: str, path: Path, package_dir: Path | None = None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=None if package_dir is None else [str(package_dir)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def _import_sandbox(names):
    """Give ``names`` fresh slots in sys.modules (and keep sys.path), restoring both on exit."""
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    saved_path = list(sys.path)
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
        sys.path[:] = saved_path


def load_original(checkout, char_vocab_size: int = 15, obj_num: int = 5) -> types.SimpleNamespace:
    """Import the authors' modelling code from ``checkout`` (cached per path).

    Returns a namespace with ``modeling`` (``my_bert.mner_modeling``), ``utils``, ``Args`` (the
    stub config class the original reads its flags and sizes from) and ``path``.
    ``char_vocab_size`` / ``obj_num`` only seed the stub; :class:`OriginalMSCMT` sets them per build.

    Raises
    ------
    FileNotFoundError if ``checkout`` is not an IIE4MNER checkout; ImportError if torch or
    pytorch-crf (``torchcrf``) is missing.
    """
    path = Path(checkout).expanduser().resolve()
    if path in _LOADED:
        return _LOADED[path]
    missing = [f for f in _REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not an IIE4MNER checkout (LiuPeiP-CS/IIE4MNER): expected "
                                f"{list(_REQUIRED_FILES)}, missing {missing}")
    for dep, pip in (("torch", "torch"), ("torchcrf", "pytorch-crf==0.7.2")):
        if importlib.util.find_spec(dep) is None:
            raise ImportError(f"the original MSCMT needs {dep!r} (pip install {pip})")
    pkg = "_iie4mner_" + hashlib.sha1(str(path).encode()).hexdigest()[:10] + "_my_bert"
    optional = [m for m in ("boto3", "requests", "botocore", "tqdm") if importlib.util.find_spec(m) is None]
    with _import_sandbox(["config", "utils", *optional, "botocore.exceptions"]):
        config = _stub_config(char_vocab_size, obj_num)
        sys.modules["config"] = config
        for name in optional:                              # download helpers only; never called here
            stub = types.ModuleType(name)
            stub.tqdm = lambda *a, **k: None
            sys.modules[name] = stub
        if "botocore" in optional:
            exc = types.ModuleType("botocore.exceptions")
            exc.ClientError = type("ClientError", (Exception,), {})
            sys.modules["botocore.exceptions"] = exc
        utils = _load_by_path("utils", path / "utils.py")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _load_by_path(pkg, path / "my_bert" / "__init__.py", path / "my_bert")
            modeling = importlib.import_module(pkg + ".mner_modeling")
    ns = types.SimpleNamespace(modeling=modeling, utils=utils, Args=modeling.mu_conf, path=path)
    _LOADED[path] = ns
    return ns


def default_trans_matrix() -> np.ndarray:
    """docs/model.md §4, (7, 13) float32: rows aux tags, columns main tags."""
    m = np.zeros((7, 13), dtype=np.float32)                # (Ka, K)
    m[0, 0] = m[1, 1] = m[4, 10] = m[5, 11] = m[6, 12] = 1.0
    m[2, [2, 4, 6, 8]] = 0.25
    m[3, [3, 5, 7, 9]] = 0.25
    return m


class OriginalMSCMT:
    """The authors' ``MSCMT`` built from a checkout, with its own flags and numpy-friendly calls.

    Parameters
    ----------
    checkout : path of an IIE4MNER checkout.
    bert_config : dict with ``BERT_KEYS`` entries (the first six required; the rest default to
        type_vocab_size 2, layer_norm_eps 1e-12, dropouts 0.1, initializer_range 0.02).
    char_vocab_size : Vc (rows of the char embedding); obj_num : O (only stored in ``Args``).
    num_labels, auxnum_labels : 13 and 7 in the release.
    seed : if given, ``torch.manual_seed(seed)`` before building (the original inits from torch's RNG).
    **flags : original flags (``FLAGS``); defaults ``FLAG_DEFAULTS``.

    Attributes
    ----------
    module : the torch ``MSCMT``; flags : dict; last : ``{"main", "aux"}`` emissions of the last call
    (captured with hooks on ``crf`` / ``crf.decode`` and ``aux_classifier``; "main" is after the
    alpha_seg mixing, i.e. exactly what the CRF sees).
    """

    def __init__(self, checkout, bert_config: dict, *, char_vocab_size: int = 15, obj_num: int = 5,
                 num_labels: int = 13, auxnum_labels: int = 7, seed: int | None = None, **flags):
        import torch

        self.orig = load_original(checkout)
        self.flags = dict(FLAG_DEFAULTS)
        self.set_flags(**flags)
        missing = [k for k in BERT_KEYS[:6] if k not in bert_config]
        if missing:
            raise ValueError(f"bert_config lacks {missing}; expected keys {list(BERT_KEYS)}")
        m = self.orig.modeling
        cfg = m.BertConfig(bert_config["vocab_size"], **{k: bert_config[k] for k in BERT_KEYS[1:]
                                                          if k in bert_config})
        args = self.orig.Args
        args.char_dict = _stub_config(char_vocab_size, obj_num).Args.char_dict   # read by BertEmbeddings.__init__
        args.obj_num = obj_num
        self._apply_flags()
        if seed is not None:
            torch.manual_seed(seed)
        self.module = m.MSCMT(cfg, num_labels=num_labels, auxnum_labels=auxnum_labels)
        self.last: dict = {}
        self.module.aux_classifier.register_forward_hook(lambda mod, inp, out: self.last.__setitem__("aux", out))
        self.module.crf.register_forward_pre_hook(lambda mod, args: self.last.__setitem__("main", args[0]))
        decode = self.module.crf.decode

        def capturing_decode(emissions, *a, **k):
            self.last["main"] = emissions
            return decode(emissions, *a, **k)
        self.module.crf.decode = capturing_decode

    # ------------------------------------------------------------------ flags and weights
    def set_flags(self, **flags):
        unknown = set(flags) - set(FLAGS)
        if unknown:
            raise ValueError(f"unknown flags {sorted(unknown)}; expected a subset of {list(FLAGS)}")
        self.flags.update({k: int(v) for k, v in flags.items()})

    def _apply_flags(self):
        for k, v in self.flags.items():
            setattr(self.orig.Args, k, v)

    def state_dict(self) -> dict:
        """name → float32 numpy array, in the original's key order."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> list[str]:
        """Copy tensors in by key (numpy or torch), shapes checked; returns the keys left untouched.

        strict: every one of the original's keys must be given (False: a subset, e.g. only the
        tensors a configuration uses, docs/parameters.md §4). An unknown key is always an error.
        """
        import torch

        own = self.module.state_dict()
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if unexpected or (strict and missing):
            raise ValueError(f"state dict keys differ: missing {missing[:5]} ({len(missing)}), "
                             f"unexpected {unexpected[:5]} ({len(unexpected)})")
        with torch.no_grad():
            for k, dst in own.items():
                if k not in state_dict:
                    continue
                src = torch.as_tensor(np.asarray(state_dict[k]) if not torch.is_tensor(state_dict[k])
                                      else state_dict[k])
                if tuple(src.shape) != tuple(dst.shape):
                    raise ValueError(f"{k}: expected shape {tuple(dst.shape)}, received {tuple(src.shape)}")
                dst.copy_(src)
        return [k for k in own if k not in state_dict]

    def train(self):
        self.module.train()
        return self

    def eval(self):
        self.module.eval()
        return self

    # ------------------------------------------------------------------ calls
    def inputs(self, input_ids, input_mask, aug, image, objects, char_ids=None, trans_matrix=None,
               region_mask=None) -> tuple:
        """The original forward's 11 positional arguments, as torch tensors."""
        import torch

        ids = torch.as_tensor(np.asarray(input_ids)).long()            # (B, T)
        mask = torch.as_tensor(np.asarray(input_mask)).long()          # (B, T)
        B, T = ids.shape
        objects = torch.as_tensor(np.asarray(objects)).long()          # (B, O)
        O = objects.shape[1]
        image = torch.as_tensor(np.asarray(image, dtype=np.float32))   # (B, 2048, 7, 7)
        if tuple(image.shape) != (B, 2048, 7, 7):
            raise ValueError(f"the original needs image (B, 2048, 7, 7) = ({B}, 2048, 7, 7), received "
                             f"{tuple(image.shape)}")
        aug = torch.as_tensor(np.asarray(aug, dtype=np.float32))       # (B, T, 200)
        if char_ids is None:
            char_ids = np.zeros((B, T, self.orig.Args.max_wordlen), dtype=np.int64)
        chars = torch.as_tensor(np.asarray(char_ids)).long()           # (B, T, 12)
        if region_mask is None:
            region_mask = np.ones((B, 49), dtype=np.int64)
        added = torch.cat([torch.as_tensor(np.asarray(region_mask)).long(), mask], 1)   # (B, 49 + T)
        tm = torch.as_tensor(default_trans_matrix() if trans_matrix is None
                             else np.asarray(trans_matrix, dtype=np.float32))   # (7, 13)
        frcnn = torch.zeros(B, O, 2048)                    # Faster R-CNN features: passed, never used
        frcnn_mask = torch.zeros(B, O, dtype=torch.long)
        segment_ids = torch.zeros_like(ids)
        return (chars, aug, frcnn, frcnn_mask, objects, ids, segment_ids, mask, added, image, tm)

    def _call(self, args, labels=None, aux_labels=None):
        import torch

        self._apply_flags()
        kw = {}
        if labels is not None:
            kw["labels"] = torch.as_tensor(np.asarray(labels)).long()
            kw["auxlabels"] = (torch.zeros_like(kw["labels"]) if aux_labels is None
                               else torch.as_tensor(np.asarray(aux_labels)).long())
        with warnings.catch_warnings():                    # uint8 CRF masks etc. (docs/original-quirks.md §18)
            warnings.simplefilter("ignore")
            return self.module(*args, **kw)

    def loss(self, input_ids, input_mask, aug, image, objects, labels, aux_labels=None, char_ids=None,
             trans_matrix=None, region_mask=None):
        """The training loss as a torch scalar with its graph (``self.last`` holds the emissions)."""
        args = self.inputs(input_ids, input_mask, aug, image, objects, char_ids, trans_matrix, region_mask)
        return self._call(args, labels, aux_labels)

    def train_step(self, input_ids, input_mask, aug, image, objects, labels, aux_labels=None, char_ids=None,
                   trans_matrix=None, region_mask=None) -> float:
        """zero grads → loss → backward (no optimiser step); returns the loss. Grads: :meth:`grads`."""
        self.module.zero_grad(set_to_none=True)
        loss = self.loss(input_ids, input_mask, aug, image, objects, labels, aux_labels, char_ids, trans_matrix,
                         region_mask)
        loss.backward()
        return float(loss.detach())

    def grads(self) -> dict:
        """name → gradient as numpy (None where torch has none), in key order."""
        return {k: None if p.grad is None else p.grad.detach().cpu().numpy().copy()
                for k, p in self.module.named_parameters()}

    def eval_step(self, input_ids, input_mask, aug, image, objects, char_ids=None, trans_matrix=None,
                  region_mask=None) -> list:
        """Forward + Viterbi decode under no_grad; returns B lists of tags (length Σ mask each).

        Call :meth:`eval` first for dropout-free inference. ``self.last`` holds the emissions.
        """
        import torch

        args = self.inputs(input_ids, input_mask, aug, image, objects, char_ids, trans_matrix, region_mask)
        with torch.no_grad():
            # the 3 extra outputs are torch.rand (docs/original-quirks.md §8)
            paths, *_random_maps = self._call(args)
        return paths

    def emissions(self, *args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """(main (B, T, 13), aux (B, T, 7)) numpy emissions of an eval forward (same inputs as eval_step)."""
        self.eval_step(*args, **kwargs)
        return self.last["main"].detach().cpu().numpy(), self.last["aux"].detach().cpu().numpy()
