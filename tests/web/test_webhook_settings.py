"""CALL_WEBHOOK_URL and WEBHOOK_SECRET as the settings check reads them: an http(s) URL that is
never shown (it may hold a token), a secret to sign with, and no secret too short to be one."""

from __future__ import annotations

import pytest

from engine.settings import SettingsError
from engine.web.settings_check import checked_settings
from tests.conftest import ROOT

SECRET = "0123456789abcdef0123"


def problems(**config: str) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as refused:
        checked_settings({"PROJECT_ROOT": str(ROOT), **config})
    return refused.value.problems


def test_a_url_that_is_not_http_is_refused_without_showing_it() -> None:
    (line,) = problems(CALL_WEBHOOK_URL="crm.example.com/token-abc", WEBHOOK_SECRET=SECRET)
    assert line.startswith("CALL_WEBHOOK_URL: write an http(s) URL")
    assert "token-abc" not in line


def test_a_url_without_a_secret_is_refused() -> None:
    (line,) = problems(CALL_WEBHOOK_URL="https://crm.example.com/phoney")
    assert "WEBHOOK_SECRET is not" in line and "openssl rand -hex 32" in line


def test_a_short_secret_is_refused() -> None:
    (line,) = problems(WEBHOOK_SECRET="short")
    assert line.startswith("WEBHOOK_SECRET: 5 characters is too short")


def test_a_url_with_its_secret_reads() -> None:
    settings = checked_settings({"PROJECT_ROOT": str(ROOT),
                                 "CALL_WEBHOOK_URL": "https://crm.example.com/phoney",
                                 "WEBHOOK_SECRET": SECRET})
    assert settings.call_webhook_url == "https://crm.example.com/phoney"
    assert settings.webhook_secret == SECRET
