"""Bad input to the OpenID Connect sign-in, each refused with a page saying so, a log line and
an audit entry, and no session: ID tokens expired, for another audience, from another issuer,
forged, or signed with a key the provider never published; a state or a code used twice; a
user with no role; a provider that does not answer. A rotated signing key is picked up."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.auth.conftest import CLIENT_ID, Site, api, reach_callback, sign_in


def refused_here(page: Any, site: Site, caplog: pytest.LogCaptureFixture, reason: str,
                 signed_in_before: bool = False) -> None:
    """The page says the sign-in was refused, the log and the audit log say why, and the
    browser is not signed in."""
    assert page.text_content("h1") == "Sign-in refused"
    detail = page.text_content("#refused-detail")
    assert re.search(reason, detail), detail
    (entry,) = site.audit("sign-in.failed")
    assert entry.outcome == "refused" and re.search(reason, entry.what["reason"])
    assert entry.where == "127.0.0.1" and entry.what["method"] == "oidc"
    assert any("sign-in with OpenID Connect refused" in record.getMessage()
               for record in caplog.records)
    assert len(site.audit("sign-in")) == (1 if signed_in_before else 0)
    assert api(page, "GET", "/api/calls")["status"] == 401


@pytest.mark.parametrize(("mode", "reason"), [
    ("expired", r"ExpiredTokenError"),
    ("wrong-audience", r"InvalidClaimError.*aud|MissingClaimError.*azp"),
    ("wrong-issuer", r"InvalidClaimError.*iss"),
    ("forged", r"BadSignatureError"),
    ("unknown-key", r"InvalidKeyIdError"),
])
def test_an_id_token_that_fails_a_check_is_refused(site: Site, page: Any, mode: str,
                                                   reason: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    assert site.provider is not None
    site.provider.mode(mode)
    reach_callback(page, site, "ada")  # an admin's account: the token is what fails
    refused_here(page, site, caplog, reason)


def test_a_rotated_signing_key_is_fetched_and_accepted(site: Site, page: Any) -> None:
    assert site.provider is not None
    sign_in(page, site, "otto")  # the provider's keys as they were: fetched, kept
    page.click("form.logout button")
    page.click("button[name=logout]")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login"))
    fetched = site.provider.served()["jwks"]
    site.provider.mode("rotated")  # signs with a key published only from now on
    sign_in(page, site, "otto")
    assert page.text_content("#signed-in-role") == "operator"
    assert site.provider.served()["jwks"] == fetched + 1  # fetched again, once


def test_a_state_used_twice_is_refused(site: Site, page: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    callbacks: list[str] = []
    page.on("request", lambda request: callbacks.append(request.url)
            if "/login/sso/callback" in request.url else None)
    sign_in(page, site, "otto")
    page.click("form.logout button")
    page.click("button[name=logout]")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login"))
    (callback,) = callbacks
    page.goto(callback)  # the same state and code again
    refused_here(page, site, caplog, r"state unknown or already used", signed_in_before=True)


def test_a_code_used_twice_is_refused_by_the_provider(site: Site, page: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    callbacks: list[str] = []
    page.on("request", lambda request: callbacks.append(request.url)
            if "/login/sso/callback" in request.url else None)
    sign_in(page, site, "otto")
    (callback,) = callbacks
    code = re.search(r"code=([^&]+)", callback)
    assert code is not None
    page.click("form.logout button")  # here and at the provider, which then asks again
    page.click("button[name=logout]")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login"))
    # A new sign-in's state (kept in this browser's session), left at the provider's login.
    assert site.provider is not None
    issuer = site.provider.issuer
    with page.expect_request(lambda sent: sent.url.startswith(f"{issuer}/auth")) as sent:
        page.click("#sso-login")
    page.wait_for_selector("input[name=login]")
    authorize = sent.value.url
    state = re.search(r"[?&]state=([^&]+)", authorize)
    assert state is not None
    page.goto(f"{site.url}/login/sso/callback?code={code.group(1)}&state={state.group(1)}")
    assert page.text_content("h1") == "Sign-in refused"
    assert "the provider refused: invalid_grant" in page.text_content("#refused-detail")
    (entry,) = site.audit("sign-in.failed")
    assert entry.what["reason"] == "the provider refused: invalid_grant"
    assert code.group(1) not in str(entry.as_json())  # the code itself is never kept


@pytest.mark.parametrize(("login", "settings", "outcome"), [
    ("nora", {}, "viewer"),  # no roles claim: OIDC_DEFAULT_ROLE, viewer by default
    ("nora", {"OIDC_DEFAULT_ROLE": "operator"}, "operator"),
    ("nora", {"OIDC_DEFAULT_ROLE": "none"}, r"no 'roles' claim"),
    ("mallory", {}, r"names no Phoney role"),  # roles: [superuser]
    ("vera", {"OIDC_ROLES_CLAIM": "groups"}, "viewer"),  # no groups claim: the default
])
def test_the_role_comes_from_the_claim_or_the_default(make_site: Any, page: Any, login: str,
                                                      settings: dict[str, str], outcome: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(**settings)
    reach_callback(page, site, login)
    if outcome in ("viewer", "operator"):
        page.wait_for_url(f"{site.url}/")
        assert page.text_content("#signed-in-role") == outcome
        (entry,) = site.audit("sign-in")
        assert entry.role == outcome
        assert entry.what["role_from"] == "OIDC_DEFAULT_ROLE"
    else:
        refused_here(page, site, caplog, outcome)
        assert page.text_content("#refused-message").startswith("Your account")


def test_a_provider_that_does_not_answer_is_a_page_saying_so(
        make_site: Any, page: Any, caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(provider=False, OIDC_ISSUER="http://localhost:9",  # discard: nobody
                     OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET="secret")
    page.goto(f"{site.url}/login")
    page.click("#sso-login")
    page.wait_for_selector("#refused-message")
    assert "did not answer" in page.text_content("#refused-message")
    refused_here(page, site, caplog, r"the provider did not answer")
    # The owner's password still signs in, as admin.
    page.goto(f"{site.url}/login")
    page.fill("#password", "owner-password")
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    assert page.text_content("#signed-in-role") == "admin"


def test_callbacks_count_against_the_sign_in_limit(make_site: Any) -> None:
    site = make_site(provider=False, OIDC_ISSUER="http://localhost:9", OIDC_CLIENT_ID=CLIENT_ID,
                     OIDC_CLIENT_SECRET="secret", LOGIN_RATE_LIMIT="2/minute")
    client = site.app.test_client()
    answers = [client.get("/login/sso/callback?code=made-up&state=made-up").status_code
               for _ in range(4)]
    assert answers == [401, 401, 429, 429]
    reasons = [entry.what["reason"] for entry in site.audit("sign-in.failed")]
    assert reasons == ["over LOGIN_RATE_LIMIT", "state unknown or already used",
                       "state unknown or already used"]  # newest first; the flood once
    assert client.get("/login/sso").status_code == 429  # a provider down: counted there too


def test_a_provider_gone_before_the_code_is_exchanged_is_a_page_saying_so(
        site: Site, page: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert site.provider is not None
    site.provider.mode("token-down")  # signing in works; the token endpoint drops the line
    reach_callback(page, site, "otto")
    assert "did not answer" in page.text_content("#refused-message")
    refused_here(page, site, caplog, r"the provider did not answer \(ConnectionError\)")
