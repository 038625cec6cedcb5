"""Bad settings stop a start with one line each (the variable and what to write), a non-zero
exit and no traceback: `flask run`, gunicorn `app:app` and other `flask` commands, run as a user
runs them; `flask doctor` still runs and names them among the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.settings import ENV_KEYS, Settings, SettingsError
from engine.web.app import create_app
from engine.web.settings_check import CHECKS, check_settings, checked_settings
from engine.web.startup import APP_LOAD_ERROR
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def run(tmp_path: Path, *command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ENV_KEYS and not key.startswith(("FLASK_", "PROMETHEUS_"))}
    environment.update(PROJECT_ROOT=str(ROOT), STORE_URL=f"sqlite:///{tmp_path / 'p.db'}",
                       PYTHONPATH=str(ROOT), PORT="0", WEB_CONCURRENCY="1", **settings)
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120, check=False)


BAD_PUSHER = {"PUSHER_APP_ID": "my-app", "PUSHER_KEY": "key", "PUSHER_SECRET": "secret"}
PUSHER_LINE = ("Error: PUSHER_APP_ID='my-app': write the app's numeric id (app_id in the "
               "Pusher dashboard's App Keys), such as 1234567")


@pytest.mark.parametrize("command", [("flask", "run", "--port", "0"),
                                     ("flask", "flows", "validate"),
                                     ("gunicorn", "app:app")])
def test_a_non_numeric_pusher_app_id_stops_the_start_with_one_line(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    done = run(tmp_path, *command, **BAD_PUSHER)
    assert done.returncode == APP_LOAD_ERROR, done.stderr
    assert "Traceback" not in done.stderr and "Invalid app id" not in done.stderr
    assert PUSHER_LINE in done.stderr.splitlines()


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    done = run(tmp_path, "flask", "run", "--port", "0", SESSION_HOURS="twelve",
               LOG_FORMAT="yaml", TRUSTED_PROXIES="yes", **BAD_PUSHER)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert [line.split("=")[0] for line in errors] == [
        "Error: SESSION_HOURS", "Error: PUSHER_APP_ID", "Error: LOG_FORMAT",
        "Error: TRUSTED_PROXIES"]
    assert "Traceback" not in done.stderr and done.returncode != 0


def test_flask_doctor_still_runs_with_settings_the_start_refuses(tmp_path: Path) -> None:
    done = run(tmp_path, "flask", "doctor", **BAD_PUSHER)
    assert done.returncode == 1
    assert any(line.startswith("FAIL") and "PUSHER_APP_ID='my-app'" in line
               for line in done.stdout.splitlines()), done.stdout
    assert "store" in done.stdout and "Traceback" not in done.stderr


# -- the checks themselves -----------------------------------------------------------------------

BAD: list[tuple[str, str]] = [
    ("PROJECT_ROOT", "/no/such/place"), ("STORE_URL", "postgres://db"),
    ("STORE_URL", "sqlite://relative.db"), ("TWILIO_API_URL", "api.twilio.com"),
    ("OPENAI_BASE_URL", "localhost:11434"), ("PUSHER_APP_ID", "my-app"),
    ("PUSHER_CLUSTER", "EU West"), ("PUSHER_HOST", "http://"), ("PUSHER_CHANNELS", "secret"),
    ("PUBLIC_BASE_URL", "https://phoney.example.com/twilio"), ("DEFAULT_FLOW", "a b"),
    ("ENCRYPTION_KEY", "one,,two"), ("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD"),
    ("TRUSTED_PROXIES", "yes"), ("CALLER_CALL_LIMIT", "lots"), ("MAX_CALL_TURNS", "-1"),
    ("LOGIN_RATE_LIMIT", "5"), ("API_RATE_LIMIT", "fast"), ("ALERT_WEBHOOK_URL", "hooks"),
    ("SESSION_HOURS", "0"), ("SESSION_HOURS", "many"), ("SSE_STREAMS_PER_SESSION", "0"),
    ("RETENTION_DAYS", "forever"), ("HTTP_ALLOW_HOSTS", "https://api.example.com/v1"),
    ("OUTBOUND_FROM", "555-0100"), ("DO_NOT_CALL_FILE", "no-such-list.txt"),
    ("QUIET_HOURS", "night"), ("QUIET_HOURS", "08:00-08:00"),
]


@pytest.mark.parametrize(("key", "value"), BAD)
def test_each_bad_setting_is_one_line_naming_it(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        checked_settings({"PROJECT_ROOT": str(ROOT), key: value})
    (line,) = refused.value.problems
    assert line.startswith(key) and "\n" not in line
    assert "write" in line or "use one of" in line, line


def test_the_defaults_and_the_bundled_example_pass() -> None:
    assert check_settings(Settings.load({"PROJECT_ROOT": str(ROOT)}, environ={})) == []
    example = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            example[key] = value
    settings, problems = Settings.read({**example, "PROJECT_ROOT": str(ROOT)}, environ={})
    assert problems == [] and check_settings(settings) == []


def test_every_setting_has_its_check() -> None:
    # A new setting gets an entry in CHECKS (None when it is free text).
    assert sorted(CHECKS) == sorted(ENV_KEYS)


def test_create_app_refuses_them_before_building_anything(tmp_path: Path,
                                                          clean_environment: None) -> None:
    config: dict[str, Any] = {"PROJECT_ROOT": str(ROOT), **BAD_PUSHER,
                              "STORE_URL": f"sqlite:///{tmp_path / 'never.db'}"}
    with pytest.raises(SettingsError, match="PUSHER_APP_ID='my-app'"):
        create_app(config)
    assert not (tmp_path / "never.db").exists()
