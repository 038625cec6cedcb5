"""`is_signed` against the twilio SDK's `RequestValidator.validate`: the same answer for every
URL form (with a port, without one), every algorithm and every forged signature, though it
computes one HMAC for a genuine request where the SDK computes two.
"""

from __future__ import annotations

import itertools
import logging

import pytest
from flask import Flask, request
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator
from werkzeug.datastructures import MultiDict

from engine.web import signature
from engine.web.signature import is_signed, url_forms

TOKEN = "test-token"
FORM = MultiDict([("CallSid", "CA" + "1" * 32), ("From", "+15551230000"),
                  ("To", "+15550001000"), ("CallStatus", "ringing")])
app = Flask(__name__)


def sign(url: str, form: MultiDict[str, str], token: str = TOKEN,
         algorithm: str | None = None) -> str:
    return str(RequestValidator(token).compute_signature(url, form, algorithm))


def check(path: str, form: MultiDict[str, str], headers: dict[str, str], *,
          base_url: str = "http://localhost", public_base_url: str | None = None,
          token: str = TOKEN) -> bool:
    with app.test_request_context(path, method="POST", data=form, headers=headers,
                                  base_url=base_url):
        return is_signed(request, token, public_base_url)


def sdk(url: str, form: MultiDict[str, str], headers: dict[str, str],
        token: str = TOKEN) -> bool:
    """What the SDK answers for the same request (the settings header's algorithm)."""
    from twilio.request_validator import get_signature_algorithm

    if not headers.get("X-Twilio-Signature") or not token:
        return False
    algorithm = get_signature_algorithm(headers.get("X-Twilio-Webhooks-Signature-Settings"))
    return bool(RequestValidator(token).validate(url, form, headers["X-Twilio-Signature"],
                                                 algorithm))


@pytest.mark.parametrize(("requested", "signed_over"), [
    ("https://phoney.example", "https://phoney.example"),  # the usual: no port either side
    ("https://phoney.example", "https://phoney.example:443"),  # Twilio added the default port
    ("http://localhost:8000", "http://localhost:8000"),  # a port, signed with it
    ("http://localhost:8000", "http://localhost"),  # a port, signed without it
])
def test_a_signature_over_either_url_form_is_accepted(requested: str, signed_over: str) -> None:
    path = "/api/voice/input?step=2"
    headers = {"X-Twilio-Signature": sign(signed_over + path, FORM)}
    assert check(path, FORM, headers, base_url=requested)
    assert check(path, FORM, headers, public_base_url=requested)  # configured, same answer


def test_the_url_as_requested_is_checked_first_and_the_other_form_only_when_it_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    matches = signature._matches

    def counting(key: bytes, digest: str, message: str, expected: bytes) -> bool:
        checked.append(message.split("/api/")[0])
        return matches(key, digest, message, expected)

    monkeypatch.setattr(signature, "_matches", counting)
    path = "/api/incoming-call"
    assert check(path, FORM, {"X-Twilio-Signature": sign("http://localhost:8000" + path, FORM)},
                 base_url="http://localhost:8000")
    assert checked == ["http://localhost:8000"]
    checked.clear()
    assert check(path, FORM, {"X-Twilio-Signature": sign("http://localhost" + path, FORM)},
                 base_url="http://localhost:8000")
    assert checked == ["http://localhost:8000", "http://localhost"]
    assert url_forms("https://phoney.example/x?a=1") == ("https://phoney.example/x?a=1",
                                                         "https://phoney.example:443/x?a=1")


@pytest.mark.parametrize("forged", [
    "forged",
    "",
    sign("http://localhost/api/incoming-call", FORM, token="another-token"),
    sign("http://localhost/api/voice/input", FORM),  # another route
    sign("http://localhost/api/incoming-call?flow=x", FORM),  # another query
    sign("http://localhost:8080/api/incoming-call", FORM),  # another port
    sign("https://localhost/api/incoming-call", FORM),  # another scheme
    sign("http://localhost/api/incoming-call",
         MultiDict([*FORM.items(multi=True), ("Digits", "1")])),  # another form
    sign("http://localhost/api/incoming-call", FORM) + "=",
    sign("http://localhost/api/incoming-call", FORM)[:-1] + "é",
])
def test_a_forged_signature_is_refused(forged: str) -> None:
    headers = {"X-Twilio-Signature": forged}
    assert not check("/api/incoming-call", FORM, headers)
    assert not check("/api/incoming-call", FORM, headers, base_url="http://localhost:8000")


def test_no_token_refuses_everything() -> None:
    url = "http://localhost/api/incoming-call"
    assert not check("/api/incoming-call", FORM, {"X-Twilio-Signature": sign(url, FORM, "")},
                     token="")


FORMS = [
    MultiDict(),
    FORM,
    MultiDict([*FORM.items(multi=True), ("Digits", "2"), ("Digits", "1"), ("Digits", "2")]),
    MultiDict([("SpeechResult", "café — 你好 🙂"), ("Empty", ""), ("a", "b"), ("A", "c")]),
]
URLS = ["http://localhost", "http://localhost:80", "http://localhost:8000",
        "https://phoney.example", "https://phoney.example:443", "https://phoney.example:8443"]
SETTINGS = [None, f"key=k1,algorithm={HMAC_SHA256}", "algorithm=hmac_sha256",
            f"algorithm={HMAC_SHA1}", "algorithm=HMAC_MD5", "key=k1"]


def test_every_answer_is_the_sdks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = "/api/voice/input?step=3"
    compared = 0
    for form, requested, settings in itertools.product(FORMS, URLS, SETTINGS):
        algorithm = (settings or "").rpartition("algorithm=")[2] or None
        signatures = ["nope"]
        if algorithm is None or algorithm.upper() in (HMAC_SHA1, HMAC_SHA256):
            signatures += [sign(url + path, form, algorithm=algorithm) for url in URLS]
        for signed in signatures:
            headers = {"X-Twilio-Signature": signed}
            if settings is not None:
                headers["X-Twilio-Webhooks-Signature-Settings"] = settings
            ours = check(path, form, headers, base_url=requested)
            assert ours == sdk(requested + path, form, headers), (form, requested, settings)
            compared += 1
    assert compared > 500
    assert "HMAC_MD5" in caplog.text  # an unknown algorithm is refused with the SDK's warning


@pytest.mark.parametrize("pairs", [
    [("CallSid", "CA1"), ("From", "+1555"), ("To", "+1666")],
    [("b", "2"), ("a", "1"), ("b", "1"), ("b", "2"), ("a", "")],  # repeats, out of order
    [("Digits", "1"), ("Digits", "1")],
    [],
])
def test_the_signed_text_of_pairs_is_the_sdks(pairs: list[tuple[str, str]]) -> None:
    """The pairs a webhook's body was read into sign as werkzeug's MultiDict of them does, and
    as the SDK computes it."""
    form = MultiDict(pairs)
    assert signature.signed_text(pairs) == signature.signed_text(form)
    url = "https://phoney.example/api/incoming-call"
    expected = sign(url, form)
    with app.test_request_context("/api/incoming-call", method="POST", data=form,
                                  base_url="https://phoney.example",
                                  headers={"X-Twilio-Signature": expected}):
        assert is_signed(request, TOKEN, None, pairs)
        assert not is_signed(request, TOKEN, None, [*pairs, ("extra", "x")])
