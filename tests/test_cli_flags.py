"""The command line as a newcomer reads it: every flag explained, defaults shown, a version."""

from __future__ import annotations

import argparse
import subprocess
import sys

from canistry import __version__
from canistry.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser, path: str = "canistry"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{path} {name}")


def test_every_flag_has_help_and_shows_its_default() -> None:
    missing, no_default = [], []
    for path, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(
                action, argparse._HelpAction | argparse._VersionAction
            ):
                continue
            flag = f"{path} {action.option_strings[-1]}"
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(flag)
                continue
            silent = action.default in (None, False) or action.required
            if not silent and "default" not in action.help:
                no_default.append(flag)
    assert not missing, f"flags without help: {missing}"
    assert not no_default, f"flags that do not show their default: {no_default}"


def test_up_lists_every_setting_it_takes() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "canistry", "up", "--help"], capture_output=True, text=True
    ).stdout
    for flag in ("--warm-pool", "--max-shards", "--daily-attempt-limit", "--data-dir"):
        assert flag in text
    assert "(default: 90,000)" in text and "(default: 8080)" in text


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canistry", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"canistry {__version__}"
    assert __version__ != "0+unknown"
