"""Signing in with a company account, in Chromium, against a real OpenID provider: each role
sees its view and is refused what it may not do; signing out ends the provider's session too.
Everything lands in the audit log."""

from __future__ import annotations

from typing import Any

from tests.auth.conftest import Site, api, sign_in


def test_a_viewer_sees_calls_and_flows_and_is_refused_the_rest(site: Site, page: Any) -> None:
    sign_in(page, site, "vera")
    assert page.url == f"{site.url}/"
    assert page.text_content("#signed-in-as") == "vera@example.com · viewer"
    assert page.locator("#nav-audit").count() == 0  # admins' only
    assert api(page, "GET", "/api/calls")["status"] == 200
    assert api(page, "GET", "/api/flows")["status"] == 200
    ended = api(page, "POST", "/api/end-call", {"CallSid": "CA" + "0" * 32})
    assert ended["status"] == 403 and "needs operator" in ended["json"]["error"]
    made = api(page, "POST", "/api/flows", {"flow": "Not An Id"})
    assert made["status"] == 403 and "needs editor" in made["json"]["error"]
    assert api(page, "GET", "/api/audit")["status"] == 403
    page.goto(f"{site.url}/audit")
    assert "needs admin" in page.text_content("#refused-message")
    page.goto(f"{site.url}/flows/receptionist")  # read only: no save, no test calls
    page.wait_for_selector("#yaml")
    assert not page.is_visible("#save") and not page.is_visible("#call-ring")
    page.goto(f"{site.url}/flows")
    assert page.locator("table.flows-list").count() == 1 and not page.is_visible("#new-flow")
    page.goto(f"{site.url}/calls/CA{'0' * 32}")  # a call's page: no transfer, no end
    assert page.locator("#end-button").count() == 1 and not page.is_visible("#end-button")
    refused = site.audit("request.refused")
    assert {entry.what["path"] for entry in refused} >= {"/api/end-call", "/api/flows",
                                                         "/api/audit", "/audit"}
    assert all(entry.who == "vera@example.com" and entry.role == "viewer" for entry in refused)


def test_an_operator_controls_calls_but_does_not_change_flows(site: Site, page: Any) -> None:
    sign_in(page, site, "otto")
    assert page.text_content("#signed-in-role") == "operator"
    page.goto(f"{site.url}/calls/CA{'0' * 32}")  # the controls are there for an operator
    page.wait_for_selector("#end-button")
    assert page.is_visible("#end-button")
    page.goto(f"{site.url}/flows")
    assert not page.is_visible("#new-flow")  # but flows stay read only
    ended = api(page, "POST", "/api/end-call", {"CallSid": "CA" + "0" * 32})
    assert ended["status"] != 403, ended  # past the role: the call is unknown here
    assert api(page, "POST", "/api/flows", {"flow": "Not An Id"})["status"] == 403
    (entry,) = site.audit("call.end")
    assert entry.who == "otto@example.com" and entry.role == "operator"
    assert entry.what["CallSid"] == "CA" + "0" * 32 and entry.what["status"] == ended["status"]


def test_an_editor_changes_flows_and_an_admin_reads_the_audit_log(make_site: Any,
                                                                  page: Any) -> None:
    site = make_site()
    sign_in(page, site, "edith")  # roles [editor, viewer]: the highest counts
    assert page.text_content("#signed-in-role") == "editor"
    made = api(page, "POST", "/api/flows", {"flow": "Not An Id"})
    assert made["status"] == 400, made  # past the role: the id is refused, nothing written
    assert api(page, "GET", "/api/settings")["status"] == 403
    page.click("form.logout button")
    page.wait_for_selector("button[name=logout]")  # the provider asks: sign out there too?
    page.click("button[name=logout]")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login"))
    sign_in(page, site, "ada")
    assert page.text_content("#signed-in-role") == "admin"
    shown = api(page, "GET", "/api/settings")
    assert shown["status"] == 200
    assert shown["json"]["settings"]["OIDC_CLIENT_SECRET"] == "set"  # never the secret
    page.click("#nav-audit")
    page.wait_for_selector("#audit-log")
    text = page.text_content("#audit-log")
    for seen in ("sign-in", "sign-out", "flow.create", "settings.view", "request.refused",
                 "edith@example.com", "ada@example.com"):
        assert seen in text, seen
    listed = api(page, "GET", "/api/audit?limit=2")
    assert len(listed["json"]["entries"]) == 2 and listed["json"]["older"] is not None
    secrets = ("phoney-dashboard-test-secret", "code=", "id_token", "any password")
    for entry in api(page, "GET", "/api/audit?limit=500")["json"]["entries"]:
        assert not any(secret in str(entry) for secret in secrets), entry


def test_signing_out_ends_the_session_here_and_at_the_provider(site: Site, page: Any) -> None:
    sign_in(page, site, "otto")
    page.click("form.logout button")
    page.click("button[name=logout]")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login"))
    page.goto(f"{site.url}/")
    assert page.url.startswith(f"{site.url}/login")  # signed out here
    page.click("#sso-login")  # and there: the provider asks who this is again
    page.wait_for_selector("input[name=login]")
    (out,) = site.audit("sign-out")
    assert out.who == "otto@example.com" and out.what == {"method": "oidc"}
