"""Property: whatever a signed webhook carries, the answer is HTTP 200 with TwiML Twilio accepts.

Hypothesis makes up the form (any subset of Twilio's parameter names with any text, control
characters and non-BMP characters included) and the `?step=`; every request is signed correctly,
so only the contents are hostile.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from urllib.parse import quote

import pytest

pytest.importorskip("hypothesis")

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.simulator import SimulatedCall, Transport
from tests.support import AUTH_TOKEN
from tests.web.test_bad_input import LOCAL, ROUTES, post

NAMES = ["From", "To", "CallStatus", "SpeechResult", "Confidence", "Digits", "DialCallStatus",
         "DialCallDuration", "RecordingUrl", "RecordingDuration", "CallDuration", "CallerName",
         "FromCity", "FromCountry", "UnstableSpeechResult", "ForwardedFrom"]
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)  # any encodable text
FORMS = st.dictionaries(st.sampled_from(NAMES), TEXT, max_size=8)
STEPS = st.one_of(st.none(), st.integers(0, 40).map(str), TEXT.map(lambda s: s[:20]))


@pytest.fixture
def known_call(inprocess_transport: Transport) -> SimulatedCall:
    return SimulatedCall(inprocess_transport, LOCAL, AUTH_TOKEN).start()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), form=FORMS, step=STEPS, known=st.booleans())
def test_any_signed_webhook_gets_200_and_twiml(client: FlaskClient, app: Flask,
                                               known_call: SimulatedCall,
                                               route: str, form: dict[str, str],
                                               step: str | None, known: bool) -> None:
    params = {**form, "CallSid": known_call.call_sid if known else form.get("From", "")[:34]}
    path = route + (f"?step={quote(step, safe='')}" if step is not None else "")
    response = post(client, path, params)

    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    body = response.get_data(as_text=True)
    assert len(body.encode()) <= 64_000
    root = ElementTree.fromstring(body)
    assert root.tag == "Response"
    for say in root.iter("Say"):
        assert 0 < len(say.text or "") <= 4096

