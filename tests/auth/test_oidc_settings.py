"""The OIDC_* settings are checked at start, one line each: all three of issuer, client id and
secret or none, the issuer an https URL (http only for localhost), the roles claim a name, the
default role a known one (or none)."""

from __future__ import annotations

import pytest

from engine.settings import Settings, SettingsError
from engine.web.roles import Role
from engine.web.settings_check import checked_settings
from engine.web.sso import OidcSettings
from tests.conftest import ROOT

TRIO = {"OIDC_ISSUER": "https://login.example.com/realms/staff", "OIDC_CLIENT_ID": "phoney",
        "OIDC_CLIENT_SECRET": "s3cret-value"}


@pytest.mark.parametrize(("settings", "key", "says"), [
    ({"OIDC_ISSUER": TRIO["OIDC_ISSUER"], "OIDC_CLIENT_SECRET": "s3cret-value"},
     "OIDC_CLIENT_ID", "needs all three"),
    ({"OIDC_CLIENT_ID": "phoney", "OIDC_CLIENT_SECRET": "x"}, "OIDC_ISSUER", "needs all three"),
    ({**TRIO, "OIDC_ISSUER": "http://login.example.com"}, "OIDC_ISSUER", "https URL"),
    ({**TRIO, "OIDC_ISSUER": "login.example.com"}, "OIDC_ISSUER", "https URL"),
    ({**TRIO, "OIDC_ISSUER": "https://login.example.com/?x=1"}, "OIDC_ISSUER", "without a query"),
    ({"OIDC_ROLES_CLAIM": "my roles"}, "OIDC_ROLES_CLAIM", "name of the ID token's claim"),
    ({"OIDC_DEFAULT_ROLE": "owner"}, "OIDC_DEFAULT_ROLE", "viewer, operator, editor, admin"),
])
def test_a_bad_oidc_setting_is_one_line_naming_it(settings: dict[str, str], key: str,
                                                  says: str) -> None:
    with pytest.raises(SettingsError) as refused:
        checked_settings({"PROJECT_ROOT": str(ROOT), **settings})
    (line,) = refused.value.problems
    assert line.startswith(key) and says in line, line
    assert "s3cret-value" not in line  # the secret is never shown


@pytest.mark.parametrize("issuer", ["https://login.example.com/realms/staff",
                                    "http://localhost:8080", "http://127.0.0.1:9000/oidc"])
def test_good_oidc_settings_pass(issuer: str) -> None:
    settings = checked_settings({"PROJECT_ROOT": str(ROOT), **TRIO, "OIDC_ISSUER": issuer + "/",
                                 "OIDC_DEFAULT_ROLE": "None"})
    config = OidcSettings.from_settings(settings)
    assert config is not None and config.issuer == issuer and config.default_role is None
    assert config.discovery_url == issuer + "/.well-known/openid-configuration"


def test_sign_in_with_oidc_is_off_without_an_issuer() -> None:
    settings = Settings.load({"PROJECT_ROOT": str(ROOT)}, environ={})
    assert OidcSettings.from_settings(settings) is None
    assert (settings.oidc_roles_claim, settings.oidc_default_role) == ("roles", "viewer")
    on = OidcSettings.from_settings(checked_settings({"PROJECT_ROOT": str(ROOT), **TRIO}))
    assert on is not None and on.default_role is Role.VIEWER and on.roles_claim == "roles"


def test_empty_oidc_settings_are_unset() -> None:
    """As every setting: the scenario runner and `flask call` pass every key, most empty."""
    empty = {key: "" for key in ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET",
                                 "OIDC_ROLES_CLAIM", "OIDC_DEFAULT_ROLE")}
    settings = checked_settings({"PROJECT_ROOT": str(ROOT), **empty})
    assert OidcSettings.from_settings(settings) is None
