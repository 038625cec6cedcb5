"""A relay session in a flow of several languages: the call's language and the personality's
relay voice for it on `<ConversationRelay>`, and a `<Language>` with its voice for each of the
flow's languages, so a `language` message can switch the session (DESIGN.md 8.2)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import replace

from engine.calls.library import Pinned
from engine.calls.relay import RelayCall, hold_line
from engine.calls.relay_voice import connect_relay
from engine.calls.urls import CallbackUrls
from engine.flows.loader import load_project
from engine.flows.model import AiNode
from engine.runtime.state import Caller, Converse
from engine.runtime.step import start_state
from engine.twiml import render
from tests.conftest import ROOT

SID = "CA" + "1" * 32


def test_a_bilingual_session_lists_each_language_with_its_voice() -> None:
    result = load_project(ROOT)
    assert result.registry is not None
    action = Converse("assist", SID, "friendly", "es-US", ("cita",), "Hola.",
                      ("en-US", "es-US"))
    twiml = render([connect_relay(action, result.registry)],
                   CallbackUrls("https://phoney.example").for_step(2))
    relay = ElementTree.fromstring(twiml).find("Connect/ConversationRelay")
    assert relay is not None
    assert (relay.get("language"), relay.get("ttsProvider"), relay.get("voice")) == (
        "es-US", "Amazon", "Lupe-Neural")
    assert [language.attrib for language in relay.findall("Language")] == [
        {"code": "en-US", "ttsProvider": "Amazon", "voice": "Joanna-Neural"},
        {"code": "es-US", "ttsProvider": "Amazon", "voice": "Lupe-Neural"}]


def test_a_single_language_session_has_no_language_elements() -> None:
    result = load_project(ROOT)
    assert result.registry is not None
    action = Converse("assist", SID, "friendly", "en-US")
    twiml = render([connect_relay(action, result.registry)],
                   CallbackUrls("https://phoney.example").for_step(2))
    relay = ElementTree.fromstring(twiml).find("Connect/ConversationRelay")
    assert relay is not None and relay.findall("Language") == []
    assert relay.get("voice") == "Joanna-Neural"


def test_a_relay_sessions_hold_line_is_in_the_calls_language() -> None:
    result = load_project(ROOT)
    assert result.registry is not None
    flow = result.registry.flows["family_clinic"]
    node = flow.nodes["assist"]
    assert isinstance(node, AiNode)
    pinned = Pinned(flow, result.registry, result.registry.versions["family_clinic"])
    state = start_state(flow, pinned.version, SID, Caller(), "+15550005000", 0.0)
    assert hold_line(RelayCall(pinned, state, node), 0.0) == "One moment please."
    spanish = replace(state, language="es-US")
    assert hold_line(RelayCall(pinned, spanish, node), 0.0) == "Un momento, por favor."
