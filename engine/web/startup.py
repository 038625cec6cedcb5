"""What the entry point does with settings that cannot be used: one line each, no traceback.

`load_app(create_app)` (app.py) builds the app. When the settings are refused
(`SettingsError`, engine/web/settings_check.py) it prints each problem on a line of its own to
standard error and exits with status 4, which gunicorn's arbiter reads as "App failed to load"
and stops on, instead of booting the worker again and again. Under `flask`:
- `flask run`, `flask shell`, `flask routes` and gunicorn exit so;
- any other command gets an app whose only command is `doctor`, so `flask doctor` reports the
  same lines among everything else it checks, and every other command exits as above.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import click
from flask import Flask

from engine.doctor import doctor_command
from engine.settings import SettingsError

APP_LOAD_ERROR = 4
"""gunicorn's exit status for an app that does not load (its arbiter then halts)."""


def refuse(error: SettingsError) -> NoReturn:
    """Print each problem of `error` as one line on standard error and exit."""
    for problem in error.problems:
        print(f"Error: {problem}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(APP_LOAD_ERROR)


class _DoctorOnly(click.Group):
    """The commands of an app whose settings were refused: `doctor`; the others refuse."""

    def __init__(self, error: SettingsError) -> None:
        super().__init__("phoney")
        self.error = error

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [doctor_command.name or "doctor"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == doctor_command.name:
            return doctor_command
        refuse(self.error)


def load_app(factory: Callable[[], Flask]) -> Flask:
    """`factory()`, or what the module docstring says when its settings are refused."""
    try:
        return factory()
    except SettingsError as error:
        context = click.get_current_context(silent=True)
        if context is None or context.parent is not None:
            refuse(error)  # gunicorn, an import, or inside `flask run` / `shell` / `routes`
        # `flask <command>` is being looked up: only doctor can run.
        stub = Flask(__name__)
        stub.cli = _DoctorOnly(error)
        return stub
