"""Logs mask a speech field's whole value (form-encoded, key=value text and JSON alike) and
numbers written with separators, not only E.164; the generated dashboard password is logged
only by the start that made it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask

from engine.store import SQLiteStore
from engine.web import security
from engine.web.auth import configure_auth
from engine.web.security import REDACTED, RedactingFilter

SAID = "my pin is 4321"


def clean(text: str) -> str:
    return RedactingFilter().clean(text)


@pytest.mark.parametrize(("line", "expected"), [
    (f"SpeechResult={SAID}", f"SpeechResult={REDACTED}"),
    (f"SpeechResult={SAID}&Confidence=0.9", f"SpeechResult={REDACTED}&Confidence=0.9"),
    (f"SpeechResult=yes, {SAID}; thanks&From=x", f"SpeechResult={REDACTED}&From=x"),
    (f"SpeechResult={SAID} Confidence=0.9", f"SpeechResult={REDACTED} Confidence=0.9"),
    (f"SpeechResult={SAID.replace(' ', '+')}", f"SpeechResult={REDACTED}"),
    (f"SpeechResult={SAID.replace(' ', '%20')}&x=1", f"SpeechResult={REDACTED}&x=1"),
    (f"text: {SAID}", f"text: {REDACTED}"),
    (f'{{"SpeechResult": "{SAID}", "node": "ask"}}',
     f'{{"SpeechResult": "{REDACTED}", "node": "ask"}}'),
    (f'{{"speech":"{SAID}"}}', f'{{"speech":"{REDACTED}"}}'),
    (f'{{\\"speech\\": \\"{SAID}\\", \\"node\\": \\"ask\\"}}',
     f'{{\\"speech\\": \\"{REDACTED}\\", \\"node\\": \\"ask\\"}}'),
    (f"{{'SpeechResult': ['{SAID}'], 'CallSid': ['CA1']}}",
     f"{{'SpeechResult': ['{REDACTED}'], 'CallSid': ['CA1']}}"),
    (f"ImmutableMultiDict([('SpeechResult', '{SAID}'), ('From', 'x')])",
     f"ImmutableMultiDict([('SpeechResult', '{REDACTED}'), ('From', 'x')])"),
    ('{"Digits": 4321, "node": "ask"}', f'{{"Digits": {REDACTED}, "node": "ask"}}'),
    (f'"GET /api/voice/input?step=2&SpeechResult={SAID.replace(" ", "+")} HTTP/1.1" 200 612',
     f'"GET /api/voice/input?step=2&SpeechResult={REDACTED} HTTP/1.1" 200 612'),
])
def test_a_speech_value_is_masked_whole(line: str, expected: str) -> None:
    assert clean(line) == expected
    assert "4321" not in clean(line) and "pin" not in clean(line)


@pytest.mark.parametrize(("line", "expected"), [
    ("call from (555) 123-4567 now", "call from (***) ***-4567 now"),
    ("call from (555)123-4567", "call from (***)***-4567"),
    ("call from 555-123-4567.", "call from ***-***-4567."),
    ("call from 555.123.4567", "call from ***.***.4567"),
    ("dial 1-555-123-4567", "dial *-***-***-4567"),
    ("dial +1 (555) 123-4567", "dial +* (***) ***-4567"),
    ("dial +1 555-123-4567", "dial +* ***-***-4567"),
    ("London +44 20 7946 0958", "London +** ** **** 0958"),
    ("To=555-123-4567&From=x", "To=***-***-4567&From=x"),
])
def test_national_and_separated_numbers_are_masked(line: str, expected: str) -> None:
    assert clean(line) == expected


@pytest.mark.parametrize("line", [
    "2026-12-07 16:45:18,060 WARNING engine.web.auth: started",
    "at 16:45:18.123 from 192.168.100.200 and 10.555.123.4567",
    "version 2.10.4, 200 OK, port 5000, took 1234.567 ms, 555-1234",
    "uuid 123e4567-e89b-12d3-a456-426614174000 CA0123456789abcdef0123456789abcdef",
    '127.0.0.1 - - [07/Dec/2026:16:00:00 +0000] "POST /api/voice/input?step=1 HTTP/1.1" 200 612',
    "ranges 1-2-3 and 12.34.56 and +12 and +1 2 3",
    "the context of the text is fine; speech recognition is on",
])
def test_other_numbers_and_words_are_left_alone(line: str) -> None:
    assert clean(line) == line


def test_a_record_of_any_logger_is_masked(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("some.library").info("form %s", f"SpeechResult={SAID}")
    logging.getLogger("some.library").info("caller %s", "(555) 123-4567")
    assert "4321" not in caplog.text and "pin" not in caplog.text and "123-" not in caplog.text
    assert f"SpeechResult={REDACTED}" in caplog.text and "(***) ***-4567" in caplog.text


def test_the_generated_password_is_logged_only_by_the_start_that_made_it(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = make_app(DASHBOARD_PASSWORD="").extensions["phoney"].dashboard_password
    assert first and caplog.text.count(first) == 1
    caplog.clear()

    again = make_app(DASHBOARD_PASSWORD="").extensions["phoney"].dashboard_password
    assert again == first  # a restart, or another worker: the same password ...
    assert first not in caplog.text  # ... not shown again
    assert "kept in the store" in caplog.text and "DASHBOARD_PASSWORD" in caplog.text


def test_a_command_before_any_server_leaves_the_password_to_the_server(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = SQLiteStore(":memory:")
    throwaway = configure_auth(Flask("command"), store, "", "", secure_cookies=False,
                               announce=False)
    assert throwaway and throwaway not in caplog.text
    served = configure_auth(Flask("server"), store, "", "", secure_cookies=False)
    assert served != throwaway and caplog.text.count(served) == 1  # made, and shown, now
    assert configure_auth(Flask("command"), store, "", "", secure_cookies=False,
                          announce=False) == served


@pytest.mark.parametrize("line", [
    "call from (555) 123-4567 and +44 20 7946 0958, 555.123.4567 or 1-555-123-4567",
    '127.0.0.1 - - [07/Dec/2026:16:00:00 +0000] "GET /x?To=555-123-4567 HTTP/1.1" 200 612',
    "nothing here but 2026-12-07 and +0000",
])
def test_the_cheap_tests_before_the_number_patterns_skip_no_number(line: str) -> None:
    every = security._NATIONAL.sub(security.mask_separated, line)
    every = security._INTERNATIONAL.sub(security.mask_separated, every)
    assert clean(line) == every
