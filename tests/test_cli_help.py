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


def test_every_command_and_option_the_readme_shows_exists():
    """Each `condnet COMMAND ...` line of the README's shell blocks names a real command, and each option
    on it (within [] or not) is one that command takes: a renamed flag fails here, not in a user's hands."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", readme, flags=re.S)
    lines = [line.split("#")[0] for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines = [line for line in lines if line.strip().startswith("condnet ")]
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    unknown = []
    for line in lines:
        name = line.split()[1]
        if name not in commands:
            unknown.append(f"command {name!r}: {line.strip()}")
            continue
        options = {option for action in commands[name]._actions for option in action.option_strings}
        unknown += [f"{name} {flag}" for flag in re.findall(r"(--[a-z][a-z-]*)", line) if flag not in options]
    assert len(lines) >= 10  # the command-line block and the many-machines block
    assert unknown == []
