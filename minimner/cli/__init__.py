"""Command-line interface: ``python -m minimner <command> ...``.

Each command lives in its own module ``minimner/cli/<command>.py`` that defines
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the
parsed arguments and returning an exit code. User errors (bad files, bad flags)
are raised as :class:`CLIError` (or ``ValueError``/``FileNotFoundError``) and
printed as one clear line with exit code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Commands in the order ``--help`` lists them.
COMMANDS = ("demo", "train", "evaluate", "predict", "score", "convert", "features",
            "neighbours", "visualise", "explain")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minimner",
        description="minimner: multimodal NER on social media, in readable NumPy/CuPy.")
    parser.add_argument("--backend", choices=("numpy", "cupy", "strict"), default=None,
                        help="array backend (default: $MINIMNER_BACKEND or numpy); 'strict' runs on the CPU "
                             "under CuPy's rules, to check code for a GPU without one")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"minimner.cli.{name}")
        except ModuleNotFoundError as e:  # a command not written yet is simply not offered
            if e.name == f"minimner.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.backend:
            from minimner import backend
            backend.set_backend(args.backend)
        rc = args.func(args)
    except (CLIError, ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"minimner {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `... --json | head`: the reader went away, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"minimner {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
