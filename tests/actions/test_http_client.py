"""HttpClient against a real HTTP server on a local port: answers, failures, the host policy at
every hop, and secrets kept out of every record."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.actions.hosts import Address, HostPolicy
from engine.actions.http import MAX_REDIRECTS, HttpClient, HttpFailure, HttpRequest
from engine.actions.secrets import Secrets
from tests.support_api import Api, serve_api
from tests.support_api import answer as reply

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def api() -> Iterator[Api]:
    with serve_api() as served:
        yield served


def _client(policy: str = "127.0.0.1", resolver: Callable[[str, int], list[Address]] | None = None,
            max_bytes: int = 1 << 20) -> HttpClient:
    secrets = Secrets({"API_TOKEN": TOKEN})
    if resolver is None:
        return HttpClient(HostPolicy.parse(policy), secrets, max_bytes=max_bytes)
    return HttpClient(HostPolicy.parse(policy), secrets, resolver=resolver, max_bytes=max_bytes)


def _resolving(answers: dict[str, list[str]]) -> Callable[[str, int], list[Address]]:
    def resolve(host: str, port: int) -> list[Address]:
        return [ipaddress.ip_address(a) for a in answers[host]]
    return resolve


def _failure(client: HttpClient, request: HttpRequest, deadline: float | None = None
             ) -> HttpFailure:
    with pytest.raises(HttpFailure) as caught:
        client.send(request, deadline)
    return caught.value


# Answers

def test_a_json_answer_is_read_and_the_secret_goes_only_over_the_wire(api: Api) -> None:
    api.routes["/slots"] = reply(200, json.dumps({"slots": [{"label": "9am"}]}).encode())
    request = HttpRequest("POST", f"{api.base}/slots?day=mon",
                          headers=(("Authorization", "Bearer ${API_TOKEN}"),),
                          body='{"day": "mon"}', timeout=3)
    answer = _client().send(request)
    assert answer.status == 200 and answer.data == {"slots": [{"label": "9am"}]}
    [seen] = api.seen
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"] == "application/json" and seen.body == b'{"day": "mon"}'
    record = json.dumps(answer.exchange.as_dict())
    assert TOKEN not in record and "/slots?day=mon" in record
    assert answer.exchange.status == 200 and answer.exchange.size > 0


def test_an_empty_answer_is_none(api: Api) -> None:
    api.routes["/done"] = reply(204, b"")
    assert _client().send(HttpRequest("PUT", f"{api.base}/done")).data is None


def test_a_name_connects_to_the_address_the_policy_checked(api: Api) -> None:
    # "api.clinic.test" is in no DNS: the request reaches the server only through the address
    # the client resolved and checked itself, with the name as the Host.
    api.routes["/ok"] = reply(200, b"[1, 2]")
    client = _client("api.clinic.test,127.0.0.1",
                     resolver=_resolving({"api.clinic.test": ["127.0.0.1"]}))
    answer = client.send(HttpRequest("GET", f"http://api.clinic.test:{api.port}/ok"))
    assert answer.data == [1, 2]
    assert api.seen[0].headers["Host"] == f"api.clinic.test:{api.port}"


# The host policy

def test_a_host_not_listed_is_refused_before_anything_is_sent(api: Api) -> None:
    failure = _failure(_client("api.example.com"), HttpRequest("GET", f"{api.base}/x"))
    assert failure.reason == "refused" and "HTTP_ALLOW_HOSTS" in failure.detail
    assert api.seen == []
    failure = _failure(_client(""), HttpRequest("GET", f"{api.base}/x"))
    assert "not set" in failure.detail


def test_a_listed_name_answering_with_a_private_address_is_refused(api: Api) -> None:
    for answers in (["127.0.0.1"], ["93.184.215.14", "127.0.0.1"], ["169.254.169.254"],
                    ["::ffff:127.0.0.1"], ["10.1.2.3"]):
        client = _client("api.example.com", resolver=_resolving({"api.example.com": answers}))
        failure = _failure(client, HttpRequest("GET", f"http://api.example.com:{api.port}/x"))
        assert failure.reason == "refused" and "private or reserved" in failure.detail, answers
    assert api.seen == []


def test_a_redirect_to_the_metadata_address_is_refused(api: Api) -> None:
    api.routes["/r"] = reply(302, b"", headers={"Location": "http://169.254.169.254/latest/"})
    failure = _failure(_client("127.0.0.1,*"), HttpRequest("GET", f"{api.base}/r"))
    assert failure.reason == "refused" and "169.254.169.254" in failure.detail
    assert failure.exchange.redirects == ("http://169.254.169.254/latest/",)
    api.routes["/r2"] = reply(302, b"", headers={"Location": "file:///etc/passwd"})
    assert _failure(_client(), HttpRequest("GET", f"{api.base}/r2")).reason == "refused"


def test_redirects_are_followed_a_few_times_and_secrets_stay_with_their_origin(api: Api) -> None:
    api.routes["/old"] = reply(301, b"", headers={"Location": "/new"})
    api.routes["/new"] = reply(200, b'{"moved": true}')
    api.routes["/away"] = reply(
        307, b"", headers={"Location": f"http://localhost:{api.port}/new"})
    request = HttpRequest("GET", f"{api.base}/old", headers=(("X-Key", "${API_TOKEN}"),))
    assert _client().send(request).data == {"moved": True}
    assert api.seen[1].headers["X-Key"] == TOKEN  # same origin
    api.seen.clear()
    request = HttpRequest("GET", f"{api.base}/away", headers=(("X-Key", "${API_TOKEN}"),))
    assert _client("127.0.0.1,localhost").send(request).data == {"moved": True}
    assert api.seen[0].headers["X-Key"] == TOKEN and "X-Key" not in api.seen[1].headers
    api.routes["/loop"] = reply(302, b"", headers={"Location": "/loop"})
    failure = _failure(_client(), HttpRequest("GET", f"{api.base}/loop"))
    assert failure.reason == "status" and len(failure.exchange.redirects) == MAX_REDIRECTS


def test_the_policy_setting_names_a_bad_entry() -> None:
    for bad in ("https://api.example.com", "api.example.com:443", "10.0.0.0/33", "a b"):
        with pytest.raises(ValueError, match="HTTP_ALLOW_HOSTS entry"):
            HostPolicy.parse(f"ok.example.com, {bad}")
    policy = HostPolicy.parse("*.example.com, 10.0.0.0/8")
    assert policy.host_refusal("api.example.com") is None
    assert policy.host_refusal("example.com") is not None
    assert policy.host_refusal("10.9.9.9") is None and policy.host_refusal("11.0.0.1")


# Failures

def test_an_api_that_hangs_times_out_by_the_deadline(api: Api) -> None:
    def hang(handler: BaseHTTPRequestHandler) -> None:
        api.release.wait(30)
    api.routes["/hang"] = hang
    started = time.monotonic()
    failure = _failure(_client(), HttpRequest("GET", f"{api.base}/hang", timeout=10),
                       deadline=started + 0.3)
    assert failure.reason == "timeout"
    # Given up by the deadline the call set, not the request's 10 s (generous for a busy machine).
    assert time.monotonic() - started < 5


def test_errors_html_and_oversized_answers_fail_by_reason(api: Api) -> None:
    api.routes["/500"] = reply(500, b'{"error": "' + TOKEN.encode() + b'"}')
    api.routes["/html"] = reply(200, b"<html>maintenance</html>", "text/html")
    api.routes["/big"] = reply(200, b"[" + b"1," * 60_000 + b"1]")

    def drip(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: read as it comes
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(200):
            chunk = b" " * 1000
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")
    api.routes["/drip"] = drip
    client = _client(max_bytes=100_000)
    request = HttpRequest("GET", f"{api.base}/500", headers=(("X-Key", "${API_TOKEN}"),))
    failure = _failure(client, request)
    assert (failure.reason, failure.exchange.status) == ("status", 500)
    assert TOKEN not in json.dumps(failure.exchange.as_dict()) and TOKEN not in str(failure)
    failure = _failure(client, HttpRequest("GET", f"{api.base}/html"))
    assert failure.reason == "bad_json" and "text/html" in failure.detail
    assert _failure(client, HttpRequest("GET", f"{api.base}/big")).reason == "too_large"
    failure = _failure(client, HttpRequest("GET", f"{api.base}/drip"))
    assert failure.reason == "too_large" and failure.exchange.size <= 100_000 + 1000


def test_a_closed_port_and_a_missing_secret(api: Api) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    failure = _failure(_client(), HttpRequest("GET", f"http://127.0.0.1:{port}/"))
    assert failure.reason == "connection"
    request = HttpRequest("GET", f"{api.base}/x", headers=(("X-Key", "${NOT_SET}"),))
    failure = _failure(_client(), request)
    assert failure.reason == "refused" and "${NOT_SET} is not set" in failure.detail
    assert api.seen == []


def test_an_answer_echoing_a_secret_comes_back_with_the_reference(api: Api) -> None:
    def echo(handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps({"you_sent": handler.headers.get("Authorization")}).encode()
        reply(200, body)(handler)

    api.routes["/echo"] = echo
    answer = _client().send(HttpRequest("GET", f"{api.base}/echo",
                                         headers=(("Authorization", "Bearer ${API_TOKEN}"),)))
    assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert answer.data == {"you_sent": "Bearer ${API_TOKEN}"}
