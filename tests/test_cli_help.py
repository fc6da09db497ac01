"""Every option of every command has a help text, and the main help describes condnet (issue 23)."""

from __future__ import annotations

import argparse

from condnet.cli import build_parser


def test_every_option_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [f"{name} {action.dest}" for name, command in commands.items() for action in command._actions
               if not action.help]  # fmt: skip
    assert not missing, missing
    assert "parses, calls the library" not in parser.format_help()
    assert "(default: 0)" in " ".join(commands["bench"].format_help().split())  # a default of 0 too
