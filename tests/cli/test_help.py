"""Every command's ``--help`` shows the default of every option that has one."""
from __future__ import annotations

import argparse

import pytest

from minimner.cli import build_parser


def _parsers(parser, name="python -m minimner"):
    """(command name, parser) for the top-level parser and every sub-command, recursively."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def _options_with_defaults(parser):
    for a in parser._actions:
        if a.option_strings and a.help is not argparse.SUPPRESS and a.default not in (None, argparse.SUPPRESS) \
                and a.default is not False and not isinstance(a, argparse._HelpAction):
            yield a


ALL = list(_parsers(build_parser()))


def test_every_command_is_walked():
    names = {n.split()[-1] for n, _ in ALL}
    assert {"train", "evaluate", "predict", "features", "explain", "resnet", "glove"} <= names


@pytest.mark.parametrize("name,parser", ALL, ids=[n for n, _ in ALL])
def test_help_shows_every_default(name, parser):
    formatter = parser._get_formatter()
    for action in _options_with_defaults(parser):
        flag = action.option_strings[-1]
        assert action.help, f"{name} {flag}: no help text, so --help cannot show its default {action.default!r}"
        shown = formatter._expand_help(action)                # the text --help prints for this option
        assert "default" in shown.lower(), f"{name} {flag}: {shown!r} does not say its default"
        if "default" not in action.help.lower():              # appended by minimner.cli.HelpFormatter
            assert f"(default: {action.default})" in shown, (name, flag, shown)


def test_train_help_names_the_recipe_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--epochs", "8"), ("--lr", "0.0001"), ("--batch-size", "24"), ("--seed", "1")):
        entry = text.split(f"{flag} {flag.lstrip('-').upper().replace('-', '_')}")[-1][:200]
        assert f"(default: {default})" in entry, (flag, entry)
