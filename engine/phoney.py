"""The `phoney` command: Phoney installed as a package, over a business's own repository.

`pip install` of Phoney's repository gives `phoney` (pyproject's console_scripts). It runs the
same commands as `flask` does in Phoney's checkout, over the flows and personalities of a
directory (`--project DIR`, else PROJECT_ROOT, else the current directory):

    phoney validate [PATH ...]        = flask flows validate
    phoney test [FLOW ...]            = flask flows test
    phoney export FLOW [--format ...] = flask flows export
    phoney call FLOW                  = flask call
    phoney serve [--host H --port P]  = flask run (with hot reload of the directory's files)

plus every other `flask` command of the app under its own name (`phoney flows ...`,
`phoney doctor`, ...). Settings come from the environment and `.env` (the current directory's,
and the `--project` directory's), as under `flask`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import click
from dotenv import load_dotenv
from flask import Flask
from flask.cli import FlaskGroup, run_command

from engine.cli import call_command, flows_cli
from engine.web.app import create_app
from engine.web.startup import load_app

ALIASES = {
    "validate": flows_cli.commands["validate"],
    "test": flows_cli.commands["test"],
    "export": flows_cli.commands["export"],
    "call": call_command,
}
SERVE = "serve"
"""`flask run` under the name `phoney serve` (the app counts it as serving, engine/web/watcher)."""


def _make_app() -> Flask:
    return load_app(create_app)  # after --project has set PROJECT_ROOT


def _use_project(context: click.Context, _: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        os.environ["PROJECT_ROOT"] = str(value.resolve())
        if (value / ".env").is_file():  # its settings too; the environment still wins
            load_dotenv(value / ".env", override=False)
    return value


cli = FlaskGroup(
    name="phoney", create_app=_make_app, add_version_option=False, load_dotenv=True,
    help="Phoney over a directory of flows/ and personalities/ (default: the current one).",
    params=[click.Option(["--project", "-C"], type=click.Path(file_okay=False, exists=True,
                                                             path_type=Path),
                         expose_value=False, is_eager=True, callback=_use_project,
                         help="The directory holding flows/ and personalities/.")],
)
for _name, _command in ALIASES.items():
    cli.add_command(_command, _name)
cli.add_command(run_command, SERVE)


def main(argv: Sequence[str] | None = None) -> None:
    """The `phoney` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="phoney")
