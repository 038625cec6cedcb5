"""http nodes through the call service, against a local API on real sockets: answers saved into
vars, a line said while a slow answer is still coming (read back by another service over the
same store), failures retried and then the error edge, and no secret anywhere it is kept."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from engine.actions.hosts import HostPolicy
from engine.actions.http import HttpClient
from engine.actions.secrets import Secrets
from engine.bootstrap import Runtime, bootstrap
from engine.settings import Settings
from tests.calls.conftest import PERSONALITY, call_sid, ringing
from tests.calls.fakes import FakeClock, FakeResponder, elements, spoken, voicing_failing
from tests.support_api import Api, answer, serve_api

TOKEN = "tok-9f8e7d6c5b4a"

FLOW = """\
flow: desk
personality: plain
vars: {day: monday}
start: check
nodes:
  check:
    type: http
    request:
      url: "BASE/slots?day={{ vars.day }}"
      headers: {Authorization: "Bearer ${CLINIC_TOKEN}"}
      timeout: TIMEOUT
    save: {first_slot: "$.slots[0].label", count: "$.count"}
    WAITING
    next: offer
    on_error: {http: {retry: 1, then: sorry}}
  offer: {type: say, text: "The first slot is {{ vars.first_slot }}.", next: bye}
  sorry: {type: say, text: "I could not check the calendar.", next: bye}
  bye: {type: hangup, text: "Goodbye."}
"""

SLOTS = json.dumps({"slots": [{"label": "9am"}, {"label": "2pm"}], "count": 2}).encode()


@pytest.fixture
def api() -> Iterator[Api]:
    with serve_api() as served:
        yield served


@dataclass
class Line:
    runtime: Runtime
    root: Path

    def ring(self, number: int = 1) -> str:
        return self.runtime.call_service.incoming(ringing(call_sid(number)), None,
                                                  f"ring-{number}")

    def events(self, number: int = 1, name: str | None = None) -> list[dict[str, object]]:
        return [dict(event.data) for event in self.runtime.store.events_after(0, call_sid(number))
                if name is None or event.name == name]


@pytest.fixture
def make_line(tmp_path: Path) -> Iterator[Callable[..., Line]]:
    made: list[Runtime] = []

    def make(api: Api, timeout: float = 3, waiting: str = "", store: Path | None = None) -> Line:
        root = tmp_path / f"project{len(made)}"
        (root / "flows").mkdir(parents=True)
        (root / "personalities").mkdir()
        (root / "flows" / "desk.yaml").write_text(
            FLOW.replace("BASE", api.base).replace("TIMEOUT", str(timeout))
            .replace("WAITING", waiting), encoding="utf-8")
        (root / "personalities" / "plain.yaml").write_text(PERSONALITY, encoding="utf-8")
        clock = FakeClock()
        settings = Settings(project_root=root,
                            store_url=f"sqlite:///{store or root / 's.db'}",
                            default_flow="desk", caller_call_limit="off", max_live_calls="off",
                            model_calls_per_hour="off")
        http = HttpClient(HostPolicy.parse("127.0.0.1"), Secrets({"CLINIC_TOKEN": TOKEN}))
        runtime = bootstrap(settings, responder=FakeResponder(clock), clock=clock,
                            voicing=voicing_failing(set()), http=http)
        made.append(runtime)
        return Line(runtime, root)

    yield make
    for runtime in made:
        runtime.store.close()


def test_the_answer_is_saved_into_vars_and_the_call_goes_on(
        api: Api, make_line: Callable[..., Line]) -> None:
    api.routes["/slots"] = answer(200, SLOTS)
    line = make_line(api)
    twiml = line.ring()
    assert spoken(twiml) == ["The first slot is 9am.", "Goodbye."]
    [seen] = api.seen
    assert seen.path == "/slots?day=monday" and seen.headers["Authorization"] == f"Bearer {TOKEN}"
    [record] = line.events(name="call.http")
    assert record["status"] == 200 and record["node"] == "check"
    assert record["saved"] == ["count", "first_slot"]
    assert record["url"] == f"{api.base}/slots?day=monday"
    assert isinstance(record["elapsed_ms"], float)
    nodes = [event["edge_id"] for event in line.events(name="call.node")]
    assert nodes == ["check/next", "offer/next"]


def _huge(handler: BaseHTTPRequestHandler, chunked: bool) -> None:
    """50 MB of JSON, announced by Content-Length or sent in chunks with no length."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", str(50 << 20))
    handler.end_headers()
    piece = b"[" + b"1," * ((1 << 20) // 2 - 1)
    try:
        for _ in range(50):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    except OSError:
        pass  # the client stopped reading: what it should do
    handler.close_connection = True


@pytest.mark.parametrize(("route", "reason"), [
    (answer(500, b'{"error": "down"}'), "status"),
    (answer(200, b"<html>Maintenance</html>", "text/html"), "bad_json"),
    (lambda handler: _huge(handler, chunked=False), "too_large"),
    (lambda handler: _huge(handler, chunked=True), "too_large"),
    (answer(302, b"", headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
     "refused"),
])
def test_a_failing_api_is_retried_then_the_error_edge_is_taken(
        api: Api, make_line: Callable[..., Line],
        route: Callable[[BaseHTTPRequestHandler], None], reason: str) -> None:
    api.routes["/slots"] = route
    line = make_line(api)
    twiml = line.ring()
    assert spoken(twiml) == ["I could not check the calendar.", "Goodbye."]
    records = line.events(name="call.http")
    assert [record["reason"] for record in records] == [reason, reason]
    edges = [event["edge_id"] for event in line.events(name="call.node")]
    assert edges == ["check/error:http/retry", "check/error:http/then", "sorry/next"]
    errors = line.events(name="call.error")
    assert [error["kind"] for error in errors] == ["http", "http"]


def test_an_api_that_hangs_times_out_within_the_webhook(
        api: Api, make_line: Callable[..., Line]) -> None:
    def hang(handler: BaseHTTPRequestHandler) -> None:
        api.release.wait(30)

    api.routes["/slots"] = hang
    line = make_line(api, timeout=0.3)
    twiml = line.ring()
    assert spoken(twiml) == ["I could not check the calendar.", "Goodbye."]
    assert [record["reason"] for record in line.events(name="call.http")] == ["timeout"] * 2


def test_a_slow_answer_is_waited_for_with_a_line_and_read_by_another_process(
        api: Api, make_line: Callable[..., Line]) -> None:
    came = threading.Event()

    def slow(handler: BaseHTTPRequestHandler) -> None:
        came.set()
        api.release.wait(30)
        answer(200, SLOTS)(handler)

    api.routes["/slots"] = slow
    line = make_line(api, waiting="say_while_waiting: One moment while I check.")
    twiml = line.ring()
    assert came.is_set()
    assert spoken(twiml) == ["One moment while I check."]
    assert "Redirect" in elements(twiml) and "Gather" not in elements(twiml)
    state = line.runtime.store.get_state(call_sid(1))
    assert state is not None and state.request is not None and state.node == "check"
    # Twilio's continuation reaches another server process: it reads the answer from the store.
    other = make_line(api, waiting="say_while_waiting: One moment while I check.",
                      store=line.root / "s.db")
    api.release.set()
    again = other.runtime.call_service.advance(call_sid(1), None, state.step, "resume-1")
    assert spoken(again) == ["The first slot is 9am.", "Goodbye."]
    assert len(api.seen) == 1
    [record] = line.events(name="call.http")
    assert record["status"] == 200


def test_no_secret_is_stored_published_recorded_or_logged(
        api: Api, make_line: Callable[..., Line], caplog: pytest.LogCaptureFixture) -> None:
    def echo(handler: BaseHTTPRequestHandler) -> None:
        answer(500 if len(api.seen) == 1 else 200, json.dumps({
            "slots": [{"label": handler.headers.get("Authorization")}]}).encode())(handler)

    api.routes["/slots"] = echo
    line = make_line(api)
    with caplog.at_level(logging.DEBUG):
        twiml = line.ring()
    assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "send_request_headers" in caplog.text and TOKEN not in caplog.text
    assert spoken(twiml) == ["The first slot is Bearer ${CLINIC_TOKEN}.", "Goodbye."]
    line.runtime.store.close()
    for path in line.root.glob("s.db*"):
        assert TOKEN.encode() not in path.read_bytes()
    assert TOKEN not in twiml
