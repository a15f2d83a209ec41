"""Command-line interface: ``python -m minimner <command> ...``.

Each command lives in its own module ``minimner/cli/<command>.py`` that defines
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the
parsed arguments and returning an exit code. User errors (bad files, bad flags)
are raised as :class:`CLIError` (or ``ValueError``/``FileNotFoundError``) and
printed as one clear line with exit code 2, without a traceback. Operating-system
errors (a full disk, a read-only or unwritable folder, a path that cannot be
created) are printed the same way, naming the path: the writers are atomic, so
nothing partial is left behind.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from minimner import backend

#: Commands in the order ``--help`` lists them.
COMMANDS = ("demo", "train", "evaluate", "predict", "score", "convert", "features",
            "neighbours", "visualise", "explain")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def os_error_message(e: OSError) -> str:
    """One line for an operating-system error: the path(s) and the system's reason.

    ``[Errno 28] No space left on device: 'run/.last.npz.tmp-…'`` becomes
    ``run/.last.npz.tmp-…: No space left on device``.
    """
    reason = e.strerror or str(e) or type(e).__name__
    paths = [p for p in (e.filename, e.filename2) if p is not None]
    if not paths:
        return reason
    return " -> ".join(str(p) for p in paths) + f": {reason}"
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every option's default: ``(default: %(default)s)`` is appended to a help text
    that does not already say its default. Flags (default False) and options without a default
    (None) are left alone: "default: None" would tell the reader nothing."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if (action.default is None or action.default is False or action.default is argparse.SUPPRESS
                or "default" in text.lower() or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help uses :class:`HelpFormatter` (sub-commands inherit it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m minimner",
        description="minimner: multimodal NER on social media, in readable NumPy/CuPy.")
    parser.add_argument("--backend", choices=("numpy", "cupy", "strict"), default=None,
                        help="array backend (default: $MINIMNER_BACKEND or numpy); 'strict' runs on the CPU "
                             "under CuPy's rules, to check code for a GPU without one")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
            backend.set_backend(args.backend)
        rc = args.func(args)
    except (CLIError, ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, OSError) and e.strerror:            # raised by the system, not by minimner
            msg = os_error_message(e)
        print(f"minimner {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `... --json | head`: the reader went away, nothing to report
        sys.stderr.close()
        return 0
    except OSError as e:     # disk full, permission denied, read-only folder, ...
        print(f"minimner {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minimner {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
