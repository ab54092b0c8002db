"""Command-line conventions: --version, -h beside --help on every command, help that fits 80 columns without cutting
an option's name, and a mistyped option or value reported like every other bad input (one line, exit 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from conftest import ROOT
from textclass import __version__
from textclass.cli.app import app

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)


def test_every_command_is_listed():
    assert {"classify", "batch", "check", "eval", "explain", "serve", "tokenize", "train"} <= set(COMMANDS)


def test_version_without_typer():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    code = ("import sys; sys.argv = ['textclass', '--version']; from textclass.cli.entry import main; main(); "
            "print(sorted(m for m in sys.modules if m in ('typer', 'click', 'torch')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    printed, imported = done.stdout.splitlines()
    assert printed == f"textclass {__version__} (Python {sys.version.split()[0]})" and imported == "[]"
    full = runner.invoke(app, ["--version"])  # the full CLI answers the same
    assert full.exit_code == 0 and full.stdout.strip() == printed


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_fits_80_columns_and_h_is_help(command):
    args = [] if command is None else [command]
    long = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    short = runner.invoke(app, [*args, "-h"], env={"COLUMNS": "80"}, terminal_width=80)
    assert long.exit_code == short.exit_code == 0, long.output
    assert short.output == long.output
    lines = long.output.splitlines()
    assert max(map(len, lines)) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in long.output  # nothing cut short
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", long.output))
    declared = {name for param in _params(command) for name in param.opts if name.startswith("--")}
    assert declared <= options | {"--help"}, declared - options  # every option's whole name is there


def _params(command: str | None):
    group = typer.main.get_command(app)
    return (group if command is None else group.commands[command]).params


@pytest.mark.parametrize(("args", "message"), [
    (["batch", "--version"], "No such option: --version (see '"),
    (["classify", "a", "-k", "x"], "Invalid value for '--top-k'"),
    (["classify", "a", "--top-k", "-1"], "Invalid value for '--top-k'"),
    (["nope"], "No such command 'nope'"),
    (["batch"], "Missing option '--input'"),
    (["check", "-d"], "Option '-d' requires an argument"),
    (["batch", "-i", "x.csv", "-o", "y.jsonl", "--engine", "spark"], "Invalid value for '--engine'"),
])  # fmt: skip
def test_a_mistyped_command_line_is_one_line(args, message):
    done = runner.invoke(app, args)
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.output
    assert message in lines[0], lines[0]
