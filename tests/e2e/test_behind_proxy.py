"""gunicorn behind a TLS-terminating proxy, as the README's deployment section describes.

Twilio signs the public https URL it calls; the server behind the proxy sees plain HTTP on an
internal address. Either the proxy passes the public scheme and host on (`Host` or
`X-Forwarded-Host`, and `X-Forwarded-Proto`), or PUBLIC_BASE_URL names the public address; in both
cases a whole call runs, every callback URL leads back through the proxy, and a signature made for
any other URL is refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import pytest
import requests
from twilio.request_validator import RequestValidator

from engine.simulator import SimulatedCall, new_call_sid
from tests.e2e.conftest import server_env
from tests.e2e.harness import Gunicorn, ProxyTransport
from tests.support import AUTH_TOKEN

pytestmark = pytest.mark.e2e

PUBLIC = "https://phoney.example.com"
RECEPTIONIST = "+15550001000"


def whole_call(proxy: ProxyTransport) -> SimulatedCall:
    c = SimulatedCall(proxy, PUBLIC, AUTH_TOKEN, to=RECEPTIONIST).start()
    c.say("Hi, are you guys open on Saturdays?")
    c.say("Can I talk to a person?")
    c.dial_ends("busy")
    c.record(5)
    assert c.ended and c.last_heard().endswith("Goodbye!")
    assert c.hang_up().status == 200
    return c


def callback_urls(bodies: list[str]) -> list[str]:
    """Every URL the TwiML answers send Twilio to: actions, redirects, audio."""
    found = []
    for body in bodies:
        for element in ElementTree.fromstring(body).iter():
            if element.get("action"):
                found.append(element.get("action") or "")
            if element.tag in ("Redirect", "Play"):
                found.append((element.text or "").strip())
    return found


def post_signed_for(server: Gunicorn, signed_url: str, headers: dict[str, str]) -> int:
    """A new call's webhook, sent to `server` with a signature computed over `signed_url`."""
    params = {"CallSid": new_call_sid(), "AccountSid": "AC" + "0" * 32, "From": "+15551230000",
              "To": RECEPTIONIST, "CallStatus": "ringing", "Direction": "inbound",
              "ApiVersion": "2010-04-01"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(signed_url, params)
    answer = requests.post(server.url + "/api/incoming-call", data=params, timeout=15,
                           headers={"X-Twilio-Signature": signature, **headers})
    return answer.status_code


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gunicorn]]:
    """One server configured by the forwarded headers only (and TRUSTED_PROXIES=1, as the README
    has it), one with PUBLIC_BASE_URL (SQLite stores: no Redis needed), shared by this module's
    tests."""
    root = tmp_path_factory.mktemp("proxy")
    started = [Gunicorn(server_env(f"sqlite:///{root / 'forwarded.db'}", TRUSTED_PROXIES="1"),
                        root / "forwarded.log"),
               Gunicorn(server_env(f"sqlite:///{root / 'public.db'}", PUBLIC_BASE_URL=PUBLIC),
                        root / "public.log")]
    try:
        for server in started:
            server.start()
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()
        for server in started:
            print(f"--- {server.url} ---\n{server.log_tail(60)}")


@pytest.mark.parametrize("forward", ["host", "x-forwarded-host"])
def test_a_proxy_that_forwards_scheme_and_host(servers: list[Gunicorn], forward: str) -> None:
    behind = servers[0]
    proxy = ProxyTransport(PUBLIC, behind.url, forward=forward)
    whole_call(proxy)

    assert [status for _, status, _ in proxy.sent] == [200] * len(proxy.sent)
    # Callbacks are relative: Twilio resolves them against the https URL it called.
    urls = callback_urls([body for _, _, body in proxy.sent])
    assert urls and all(url.startswith("/api/") for url in urls), urls

    forwarded = ({"Host": "phoney.example.com"} if forward == "host"
                 else {"X-Forwarded-Host": "phoney.example.com"})
    headers = {"X-Forwarded-Proto": "https", **forwarded}
    assert post_signed_for(behind, f"{PUBLIC}/api/incoming-call", headers) == 200
    # Signed for the address the server itself sees, not the one Twilio called: refused.
    assert post_signed_for(behind, f"{behind.url}/api/incoming-call", headers) == 403
    assert post_signed_for(behind, "http://phoney.example.com/api/incoming-call",
                           headers) == 403


def test_public_base_url_behind_a_proxy_that_forwards_nothing(servers: list[Gunicorn]) -> None:
    behind = servers[1]
    proxy = ProxyTransport(PUBLIC, behind.url, forward=None)
    whole_call(proxy)

    assert [status for _, status, _ in proxy.sent] == [200] * len(proxy.sent)
    # Callbacks are absolute on the public address.
    urls = callback_urls([body for _, _, body in proxy.sent])
    assert urls and all(url.startswith(f"{PUBLIC}/api/") for url in urls), urls

    assert post_signed_for(behind, f"{PUBLIC}/api/incoming-call", {}) == 200
    # PUBLIC_BASE_URL wins over what the request says about itself.
    assert post_signed_for(behind, f"{behind.url}/api/incoming-call", {}) == 403
    assert post_signed_for(behind, "https://elsewhere.example/api/incoming-call",
                           {"X-Forwarded-Proto": "https",
                            "X-Forwarded-Host": "elsewhere.example"}) == 403
