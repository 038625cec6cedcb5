"""The dashboard's pages and JSON without a browser: login redirects, static files, no external
URLs, no inline scripts or handlers, the page's live settings and the call's transfer targets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.simulator import HttpAnswer, SimulatedCall, new_call_sid
from tests.dashboard.conftest import AUTH_TOKEN, PASSWORD

STATIC = Path(__file__).resolve().parents[2] / "engine" / "web" / "static"
OUR_ASSETS = ["live.js", "calls.js", "call.js", "graph.js", "flows-banner.js", "dashboard.css",
              "phoney.css", "charts.js", "overview.js"]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, never fetched
FRONT_DESK = "+15550001111"  # receptionist.yaml: the front_desk node's `to`

MakeApp = Callable[..., Flask]


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    answer = client.post("/login", data={"password": PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def start_call(app: Flask) -> SimulatedCall:
    client = app.test_client()

    def transport(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        answer = client.post(parts.path + ("?" + parts.query if parts.query else ""),
                             data=dict(params), headers=dict(headers),
                             base_url=f"{parts.scheme}://{parts.netloc}")
        return HttpAnswer(answer.status_code, answer.get_data(as_text=True),
                          answer.content_type or "")

    return SimulatedCall(transport, "http://localhost", AUTH_TOKEN).start()


def page_config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="phoney-config">(.*?)</script>', html,
                      re.S)
    assert found, html
    config: dict[str, Any] = json.loads(found.group(1))
    return config


@pytest.mark.parametrize("path", ["/", f"/calls/{'CA' + '0' * 32}"])
def test_pages_redirect_to_the_login_page_when_logged_out(make_dashboard_app: MakeApp,
                                                          path: str) -> None:
    answer = make_dashboard_app().test_client().get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["next"][0].rstrip("?") == path  # back there after signing in


def test_login_through_the_form_lands_on_the_dashboard(make_dashboard_app: MakeApp) -> None:
    client = make_dashboard_app().test_client()
    answer = client.post("/login", data={"password": PASSWORD, "next": "/"})
    assert (answer.status_code, answer.headers["Location"]) == (302, "/")
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="calls"' in page.get_data(as_text=True)


def test_transfer_targets_need_a_login(make_dashboard_app: MakeApp) -> None:
    answer = make_dashboard_app().test_client().get(
        f"/api/calls/{new_call_sid()}/transfer-targets")
    assert answer.status_code == 401


@pytest.mark.parametrize("asset", [*OUR_ASSETS, "vendor/pusher-with-encryption.min.js"])
def test_static_files_are_served_by_the_app(make_dashboard_app: MakeApp, asset: str) -> None:
    answer = make_dashboard_app().test_client().get(f"/static/{asset}")
    assert answer.status_code == 200
    expected = "text/css" if asset.endswith(".css") else "javascript"
    assert expected in answer.content_type
    assert answer.get_data() == (STATIC / asset).read_bytes()


def test_pusher_js_is_vendored_with_its_licence() -> None:
    vendor = STATIC / "vendor"
    assert "MIT" in (vendor / "pusher-js.LICENSE").read_text() or \
        "Permission is hereby granted" in (vendor / "pusher-js.LICENSE").read_text()
    script = (vendor / "pusher-with-encryption.min.js").read_bytes()
    assert b"Pusher" in script and len(script) < 150_000
    assert b"sourceMappingURL" not in script  # the map is not shipped


def _external(text: str) -> list[str]:
    return [url for url in re.findall(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s"'<>)]*""", text)
            if not url.startswith(SVG_NAMESPACE) and "localhost" not in url]


def test_pages_and_assets_name_no_external_url(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app()
    client = logged_in(app)
    call = start_call(app)
    for path in ("/", f"/calls/{call.call_sid}", "/login", "/overview"):
        html = client.get(path).get_data(as_text=True)
        assert _external(html) == [], path
        for attribute in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert attribute.startswith("/"), (path, attribute)
    for asset in OUR_ASSETS:
        assert _external((STATIC / asset).read_text()) == [], asset


def test_pages_have_no_inline_script_or_event_handler(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app()
    client = logged_in(app)
    call = start_call(app)
    for path in ("/", f"/calls/{call.call_sid}"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), path
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            assert "src=" in attributes or 'type="application/json"' in attributes, attributes
            if "src=" in attributes:
                assert body.strip() == ""
    for asset in ("live.js", "calls.js", "call.js", "graph.js"):
        assert ".innerHTML" not in (STATIC / asset).read_text(), asset


def test_without_pusher_the_page_reads_server_sent_events(make_dashboard_app: MakeApp) -> None:
    client = logged_in(make_dashboard_app())
    html = client.get("/").get_data(as_text=True)
    config = page_config(html)
    assert config["transport"] == "sse" and config["pusher"] is None
    assert config["sse_url"] == "/api/events"
    assert config["csrf_token"] == client.get("/api/session").get_json()["csrf_token"]
    assert "pusher" not in html.split('id="phoney-config"')[1].split("</script>", 1)[1]


def test_with_pusher_the_page_gets_its_key_and_channels(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app(PUSHER_APP_ID="1", PUSHER_KEY="the-key", PUSHER_SECRET="s3cret",
                             PUSHER_CLUSTER="eu", ENCRYPTION_KEY="k" * 32, PUBLISHER=False)
    html = logged_in(app).get("/").get_data(as_text=True)
    config = page_config(html)
    assert config["transport"] == "pusher"
    pusher = config["pusher"]
    assert (pusher["key"], pusher["cluster"], pusher["mode"]) == ("the-key", "eu", "encrypted")
    assert pusher["all_calls_channel"] == "private-encrypted-calls"
    assert pusher["call_channel_prefix"] == "private-encrypted-call-"
    assert pusher["auth_endpoint"] == "/pusher/auth"
    assert "s3cret" not in html and "k" * 32 not in html
    assert '/static/vendor/pusher-with-encryption.min.js"' in html


def test_a_self_hosted_pusher_host_is_where_the_page_connects(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app(PUSHER_APP_ID="1", PUSHER_KEY="k", PUSHER_SECRET="s",
                             PUSHER_HOST="http://127.0.0.1:6001", PUBLISHER=False)
    pusher = page_config(logged_in(app).get("/").get_data(as_text=True))["pusher"]
    assert (pusher["ws_host"], pusher["ws_port"], pusher["force_tls"]) == ("127.0.0.1", 6001,
                                                                            False)
    assert pusher["all_calls_channel"] == "private-calls"


def test_call_page_knows_its_call(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app()
    sid = new_call_sid()
    answer = logged_in(app).get(f"/calls/{sid}")
    assert answer.status_code == 200
    assert page_config(answer.get_data(as_text=True))["call_sid"] == sid


def test_call_page_for_something_that_is_not_a_call_sid_is_404(make_dashboard_app: MakeApp) -> None:
    assert logged_in(make_dashboard_app()).get("/calls/nope<script>").status_code == 404


def test_transfer_targets_are_the_flows_declared_ones(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app(TRANSFER_ALLOW="+15550009999")
    call = start_call(app)
    client = logged_in(app)
    answer = client.get(f"/api/calls/{call.call_sid}/transfer-targets")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "call_sid": call.call_sid, "flow": "receptionist", "live": True, "control": True,
        "targets": [
            {"to": FRONT_DESK, "node": "front_desk", "label": f"front_desk ({FRONT_DESK})"},
            {"to": "+15550009999", "node": None, "label": "+15550009999 (TRANSFER_ALLOW)"},
        ]}
    call.hang_up()
    assert client.get(f"/api/calls/{call.call_sid}/transfer-targets").get_json()["live"] is False


def test_transfer_targets_of_unknown_or_malformed_calls(make_dashboard_app: MakeApp) -> None:
    client = logged_in(make_dashboard_app())
    assert client.get(f"/api/calls/{new_call_sid()}/transfer-targets").status_code == 404
    assert client.get("/api/calls/CA123/transfer-targets").status_code == 400


def test_without_twilio_credentials_the_page_says_control_is_off(
        make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app(TWILIO_ACCOUNT_SID=None)
    assert page_config(logged_in(app).get("/").get_data(as_text=True))["control"] is False
