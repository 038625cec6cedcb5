"""A local HTTP server that answers like Twilio's REST API, for the calls Phoney makes.

It serves the Call resource (`GET` and `POST`
`/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`) and the creation of calls (`POST
.../Calls.json`, `add_outcome` scripting how each created call ends) the way api.twilio.com
does: HTTP
Basic auth with the account SID and auth token, a form-encoded body, Twilio's JSON error shape
`{"code", "message", "more_info", "status"}`, and a JSON call resource on success. Every request
is recorded (method, path, headers, form) for assertions.

Error codes used for created calls: 21201 (no `To`), 21211 (an invalid `To`), 21603 (no
`From`), 21212 (an invalid `From`), 21205 (no `Url`), and any `refuse(to, status, code)` sets.
Error codes used: 20003 (authenticate), 20404 (not found), 32018 (inline TwiML over 4 000
characters), 21220 (redirecting a call that is not in progress), 20001 for a bad parameter
value and 21208 for `Twiml` sent with `Url` (the REST API refuses the pair; which code it uses
for that is not in our notes, so this one is a stand-in).

    with TwilioApiDouble(account_sid, auth_token) as api:
        api.add_call(call_sid)
        app = create_app({"TWILIO_API_URL": api.url, ...})
        ...
        assert api.requests[0].form["Status"] == "completed"
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

API_VERSION = "2010-04-01"
MAX_INLINE_TWIML = 4000
CALLS_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
FINAL_STATUSES = ("completed", "canceled", "busy", "failed", "no-answer")
CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json$")
UPDATABLE_STATUSES = ("queued", "ringing", "in-progress")


def more_info(code: int) -> str:
    return f"https://www.twilio.com/docs/errors/{code}"


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": more_info(code), "status": status}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    body: str
    lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each field

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        return parse_basic_auth(self.headers.get("Authorization", ""))


@dataclass
class FakeCall:
    sid: str
    account_sid: str
    to: str = "+15550001000"
    from_: str = "+15551230000"
    status: str = "in-progress"
    direction: str = "inbound"
    twiml: str | None = None
    url: str | None = None
    updates: list[dict[str, str]] = field(default_factory=list)
    script: list[str] = field(default_factory=list)  # statuses successive GETs move through

    def resource(self) -> dict[str, Any]:
        """The JSON Twilio answers for a call (the fields the SDK's CallInstance reads)."""
        now = formatdate(usegmt=False).replace("-0000", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        ended = self.status in ("completed", "canceled", "busy", "failed", "no-answer")
        return {
            "sid": self.sid, "account_sid": self.account_sid, "parent_call_sid": None,
            "date_created": now, "date_updated": now, "start_time": now,
            "end_time": now if ended else None, "duration": "0" if ended else None,
            "to": self.to, "to_formatted": self.to, "from": self.from_,
            "from_formatted": self.from_, "phone_number_sid": "PN" + "0" * 32,
            "status": self.status, "direction": self.direction, "answered_by": None,
            "annotation": None, "api_version": API_VERSION, "forwarded_from": None,
            "group_sid": None, "caller_name": None, "queue_time": "0", "trunk_sid": None,
            "price": None, "price_unit": "USD", "uri": uri + ".json",
            "subresource_uris": {"notifications": f"{uri}/Notifications.json",
                                 "recordings": f"{uri}/Recordings.json",
                                 "events": f"{uri}/Events.json",
                                 "streams": f"{uri}/Streams.json"},
        }


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class TwilioApiDouble:
    def __init__(self, account_sid: str, auth_token: str, *, any_call: bool = False) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.any_call = any_call  # True: every well-formed CallSid is a live call
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[RecordedRequest] = []
        self.created: list[FakeCall] = []  # calls created through the API, in order
        self.timeline: list[tuple[str, str]] = []  # ("created" | "ended", CallSid), in order
        self.outcomes: dict[str, list[str]] = {}  # To -> final status of each call to it
        self.refusals: dict[str, tuple[int, int, str]] = {}  # To -> status, code, message
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TwilioApiDouble:
        double = self

        class Handler(_Handler):
            api = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="twilio-api-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TwilioApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the double first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- state ---------------------------------------------------------------------------------

    def add_call(self, sid: str, **details: Any) -> FakeCall:
        call = FakeCall(sid, self.account_sid, **details)
        with self._lock:
            self.calls[sid] = call
        return call

    def add_outcome(self, to: str, *finals: str) -> None:
        """How the next calls created to `to` end, one status each (default: completed)."""
        with self._lock:
            self.outcomes.setdefault(to, []).extend(finals)

    def refuse(self, to: str, status: int, code: int, message: str) -> None:
        """Refuse every call created to `to` with Twilio's error `code`."""
        with self._lock:
            self.refusals[to] = (status, code, message)

    def creations(self) -> list[RecordedRequest]:
        """The requests that created calls (refused ones included), in order."""
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls.json"
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def most_at_once(self) -> int:
        """The most created calls that were not yet seen ended at any one time."""
        live = most = 0
        with self._lock:
            for kind, _sid in self.timeline:
                live += 1 if kind == "created" else -1
                most = max(most, live)
        return most

    def call_updates(self, sid: str) -> list[RecordedRequest]:
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json"
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # -- the API -------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str],
               form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        credentials = parse_basic_auth(headers.get("Authorization", ""))
        if credentials != (self.account_sid, self.auth_token):
            return 401, twilio_error(401, 20003, "Authenticate")
        if CALLS_PATH.match(path.split("?", 1)[0]):
            if CALLS_PATH.match(path.split("?", 1)[0])["account"] != self.account_sid:
                return 404, twilio_error(404, 20404, f"The requested resource {path} was not "
                                                     f"found")
            if method != "POST":
                return 405, twilio_error(405, 20004, "Method not allowed")
            return self._create(form)
        match = CALL_PATH.match(path.split("?", 1)[0])
        if match is None or match["account"] != self.account_sid:
            return 404, twilio_error(404, 20404, f"The requested resource {path} was not found")
        sid = match["call"]
        with self._lock:
            call = self.calls.get(sid)
            if call is None and self.any_call and re.fullmatch(r"CA[0-9a-f]{32}", sid):
                call = self.calls[sid] = FakeCall(sid, self.account_sid)
        if call is None:
            return 404, twilio_error(404, 20404, f"The requested resource {path} was not found")
        if method == "GET":
            with self._lock:
                if call.script:
                    call.status = call.script.pop(0)
                    if call.status in FINAL_STATUSES:
                        self.timeline.append(("ended", call.sid))
            return 200, call.resource()
        if method != "POST":
            return 405, twilio_error(405, 20004, "Method not allowed")
        return self._update(call, form)

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            return 400, twilio_error(400, 21201, "No 'To' number is specified")
        if not E164.fullmatch(to):
            return 400, twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return 400, twilio_error(400, 21603, "A 'From' phone number is required.")
        if not E164.fullmatch(from_):
            return 400, twilio_error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not form.get("Url", "").startswith(("http://", "https://")):
            return 400, twilio_error(400, 21205, "Url is not a valid URL")
        with self._lock:
            if to in self.refusals:
                status, code, message = self.refusals[to]
                return status, twilio_error(status, code, message)
            final = self.outcomes[to].pop(0) if self.outcomes.get(to) else "completed"
            sid = "CA" + secrets.token_hex(16)
            call = FakeCall(sid, self.account_sid, to=to, from_=from_, status="queued",
                            direction="outbound-api", url=form.get("Url"),
                            script=["ringing", "in-progress", final]
                            if final == "completed" else ["ringing", final])
            self.calls[sid] = call
            self.created.append(call)
            self.timeline.append(("created", sid))
            return 201, call.resource()

    def _update(self, call: FakeCall, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        twiml, url, status = form.get("Twiml"), form.get("Url"), form.get("Status")
        if twiml is not None and url is not None:
            return 400, twilio_error(400, 21208, "Twiml and Url cannot both be provided")
        if twiml is not None and len(twiml) > MAX_INLINE_TWIML:
            return 400, twilio_error(400, 32018, f"Twiml is {len(twiml)} characters; the "
                                                 f"limit is {MAX_INLINE_TWIML}")
        if status is not None and status not in ("completed", "canceled"):
            return 400, twilio_error(400, 20001, f"Status must be 'completed' or 'canceled', "
                                                 f"not {status!r}")
        with self._lock:
            if (twiml is not None or url is not None) and call.status not in UPDATABLE_STATUSES:
                return 400, twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
            call.updates.append(dict(form))
            if twiml is not None:
                call.twiml, call.url = twiml, None
            if url is not None:
                call.url, call.twiml = url, None
            if status == "completed" and call.status in UPDATABLE_STATUSES:
                call.status = "completed"
            elif status == "canceled" and call.status in ("queued", "ringing"):
                call.status = "canceled"
            return 200, call.resource()


class _Handler(BaseHTTPRequestHandler):
    api: TwilioApiDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        lists = parse_qs(body, keep_blank_values=True)
        form = {key: values[-1] for key, values in lists.items()}
        headers = {key: value for key, value in self.headers.items()}
        self.api.record(RecordedRequest(method, self.path, headers, form, body, lists))
        status, payload = self.api.answer(method, self.path, headers, form)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
