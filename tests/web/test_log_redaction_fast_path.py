"""The redacting log filter skips a pattern only where it cannot match: the same text comes out
as when every pattern runs on every line."""

from __future__ import annotations

import re

import pytest

from engine.web import security
from engine.web.security import RedactingFilter


def full_clean(redacting: RedactingFilter, text: str) -> str:
    """What `clean` gave before its shortcuts: every pattern, every time."""
    pattern = redacting._pattern
    if pattern is not None:
        text = pattern.sub(security.SECRET, text)
    text = security._FIELD.sub(security._redact_field, text)
    return security._E164.sub(security.mask_e164, text)


LINES = [
    '127.0.0.1 - - [07/Dec/2026:16:00:00 +0000] "POST /api/voice/input?step=1 HTTP/1.1" 200 612 '
    '"-" "TwilioProxy/1.1"',
    "GET /api/incoming-call?To=%2B15550001000&From=%2b15557654321 HTTP/1.1",
    "call CA1: caller +15557654321 said SpeechResult=I need my card blocked",
    "UnstableSpeechResult='hello there' StableSpeechResult=\"hi\"",
    "{'speech': 'my pin is 1234', 'digits': '1234#', 'text': \"reply\"}",
    "transcript: hello; pending=tomorrow; utterance='at nine'",
    "Digits=4321 and the context of the text",
    "nothing to hide here, only +12 and %20 and words",
    "a secret-token-value in the middle",
    "",
]


@pytest.mark.parametrize("line", LINES)
def test_clean_is_the_full_redaction(line: str) -> None:
    redacting = RedactingFilter()
    redacting.add_secrets(["secret-token-value"])
    assert redacting.clean(line) == full_clean(redacting, line)


def test_every_field_name_has_its_word() -> None:
    names = re.search(r"\(\?:([^)]*)\)", security._FIELD.pattern)
    assert names is not None
    for name in re.sub(r"\s+", "", names.group(1)).split("|"):
        assert any(word in name for word in security._FIELD_WORDS), name


def test_lines_with_nothing_to_redact_come_out_unchanged() -> None:
    assert RedactingFilter().clean(LINES[0]) == LINES[0]
    assert "7654321" not in RedactingFilter().clean(LINES[1])
    assert "SpeechResult=[redacted]" in RedactingFilter().clean(LINES[2])
