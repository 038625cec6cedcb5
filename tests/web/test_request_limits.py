"""Request size limits: a stranger's large or many-field body is refused before it is read or
parsed, and a webhook's signature is checked before anything parses its form for anything else.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug import formparser

from engine.web.security import MAX_BODY_BYTES
from engine.web.webhook_form import KNOWN_FIELDS, MAX_WEBHOOK_BYTES, MAX_WEBHOOK_FIELDS
from tests.web.test_bad_input import LOCAL, ROUTES, base_params, post, sign, twiml


class CountingInput(io.RawIOBase):
    """A request body of `size` bytes that counts what the server read of it."""

    def __init__(self, size: int) -> None:
        self.size, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.read_bytes  # werkzeug's test client rewinds a stream it was given: a no-op

    def tell(self) -> int:
        return self.read_bytes

    def environ(self) -> dict[str, str]:
        """The header that announces the body (werkzeug's test client would measure it)."""
        return {"CONTENT_LENGTH": str(self.size)}

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.read_bytes)
        buffer[:count] = b"a" * count
        self.read_bytes += count
        return count


@pytest.fixture
def form_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The content types werkzeug's form parser was asked to parse during the test."""
    seen: list[str] = []
    parse = formparser.FormDataParser.parse

    def counting(self: formparser.FormDataParser, stream: Any, mimetype: str,
                 *args: Any, **kwargs: Any) -> Any:
        seen.append(mimetype)
        return parse(self, stream, mimetype, *args, **kwargs)

    monkeypatch.setattr(formparser.FormDataParser, "parse", counting)
    return seen


def store_calls(app: Flask) -> int:
    return len(app.extensions["phoney"].store.list_calls(limit=1000))


@pytest.mark.parametrize("route", ROUTES)
def test_a_60_mib_webhook_body_is_refused_by_its_length_unread(
        client: FlaskClient, route: str) -> None:
    body = CountingInput(60 * 1024 * 1024)
    answer = client.post(route, input_stream=body, environ_overrides=body.environ(),
                         content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": "anything"}, base_url=LOCAL)
    assert answer.status_code == 413
    assert body.read_bytes == 0


def test_a_body_just_over_the_webhook_limit_is_refused_and_just_under_is_answered(
        client: FlaskClient, app: Flask) -> None:
    params = base_params()
    params["SpeechResult"] = ""
    room = MAX_WEBHOOK_BYTES - len(urlencode(params))
    under = {**params, "SpeechResult": "y" * room}
    assert len(urlencode(under)) == MAX_WEBHOOK_BYTES
    assert post(client, "/api/incoming-call", under).status_code == 200
    over = {**base_params(), "SpeechResult": "y" * (room + 1)}
    assert post(client, "/api/incoming-call", over).status_code == 413


def test_300_000_pairs_get_413_without_werkzeugs_form_parser_or_a_stored_call(
        client: FlaskClient, app: Flask, form_parses: list[str]) -> None:
    """The 2 MiB form of 300 000 pairs that cost seconds of CPU for one 403."""
    before = store_calls(app)
    body = "&".join(f"k{i}=v" for i in range(300_000))
    answer = client.post("/api/incoming-call", data=body, base_url=LOCAL,
                         content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": "forged"})
    assert answer.status_code == 413
    assert form_parses == []
    assert store_calls(app) == before


def test_one_field_over_the_limit_is_refused_even_when_signed(
        client: FlaskClient, form_parses: list[str]) -> None:
    params = {**base_params(), **{f"X{i}": "" for i in range(MAX_WEBHOOK_FIELDS)}}
    assert len(params) > MAX_WEBHOOK_FIELDS
    assert post(client, "/api/incoming-call", params).status_code == 413
    trimmed = dict(list(params.items())[:MAX_WEBHOOK_FIELDS])
    assert post(client, "/api/incoming-call", trimmed).status_code == 200
    assert form_parses == []  # a webhook's form is never parsed by werkzeug


def test_a_forged_signature_is_refused_before_the_form_is_read_for_logs(
        client: FlaskClient, caplog: pytest.LogCaptureFixture,
        form_parses: list[str]) -> None:
    params = base_params()
    answer = post(client, "/api/incoming-call", params, signature="forged")
    assert answer.status_code == 403 and answer.get_data() == b""
    assert form_parses == []
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refused and all(params["CallSid"] not in r.getMessage() for r in refused)


def test_a_moved_boundary_drops_a_field_and_never_changes_one(
        client: FlaskClient, app: Flask) -> None:
    """Twilio's signed string has no separators: `Fro=m+1555…` signs as `From=+1555…` does.
    The route reads only the fields it knows, so the moved pair reaches it as no `From`."""
    genuine = base_params(From="+15557654321")
    signature = sign(LOCAL + "/api/incoming-call", genuine)
    moved = {key: value for key, value in genuine.items() if key != "From"}
    moved["Fro"] = "m+15557654321"
    assert sign(LOCAL + "/api/incoming-call", moved) == signature  # the quirk itself
    answer = post(client, "/api/incoming-call", moved, signature=signature)
    assert answer.status_code == 200 and twiml(answer).tag == "Response"
    state = app.extensions["phoney"].store.get_state(genuine["CallSid"])
    assert state is not None and state.caller.number == ""  # dropped, not "m+1555…"
    assert "Fro" not in KNOWN_FIELDS


def test_a_30_mib_password_is_refused_unread(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOGIN_RATE_LIMIT="off").test_client()
    body = CountingInput(30 * 1024 * 1024)
    answer = client.post("/login", input_stream=body, environ_overrides=body.environ(),
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 413
    assert body.read_bytes == 0
    # Sent whole, just over the limit: refused as well.
    long = client.post("/login", data={"password": "p" * MAX_BODY_BYTES})
    assert long.status_code == 413


def test_a_body_cut_short_of_its_length_is_refused_with_400_not_a_traceback(
        client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    """The client went away mid-body: werkzeug says so, and the webhook answers 400."""
    answer = client.post("/api/incoming-call", input_stream=io.BytesIO(b"CallSid=CA12"),
                         environ_overrides={"CONTENT_LENGTH": "1000"},
                         content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": "anything"}, base_url=LOCAL)
    assert answer.status_code == 400 and answer.get_data() == b""
    assert "could not be read" in caplog.text and "Traceback" not in caplog.text
