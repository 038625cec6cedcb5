"""The call's language in the pure step (DESIGN.md 8.2): texts spoken in it, `<Gather>` and
`<Say>` in it, a route's `language` switching it, and `language` and `detected_language` read
by templates and conditions."""

from __future__ import annotations

from typing import Any

from engine.flows.compile import compile_flow
from engine.flows.model import Flow
from engine.runtime.state import Heard, Listen, Say, Silence
from tests.runtime.test_step import begin, emitted, run, shell

T1 = 1_800_000_000.0


def bilingual(**menu: Any) -> Flow:
    nodes: dict[str, Any] = {
        "menu": {"type": "gather", "input": ["speech", "dtmf"],
                 "prompt": {"en-US": "Press 2 for Spanish.", "es-US": "Oprima 2 para español."},
                 "no_input": {"retries": 1, "then": "bye",
                              "reprompt": [{"en-US": "Still there?", "es-US": "¿Sigue ahí?"}]},
                 "routes": [{"when": "digits == '2' or detected_language == 'es-US'",
                             "language": "es-US", "to": "menu"},
                            {"when": "digits == '1'", "language": "en-US", "to": "bye"}],
                 "next": "bye", **menu},
        "bye": {"type": "hangup",
                "text": {"en-US": "Goodbye, in {{ language }}.",
                         "es-US": "Adiós, en {{ language }}."}},
    }
    return compile_flow({"flow": "t", "personality": "p", "start": "menu",
                         "languages": ["en-US", "es-US"], "nodes": nodes}).flow


def test_a_call_starts_in_the_first_language() -> None:
    state, actions = begin(bilingual())
    assert state.language == ""
    assert shell(actions)[:2] == [Say("Press 2 for Spanish.", "p", "en-US"),
                                  Listen(input=("speech", "dtmf"), language="en-US")]


def test_a_route_with_language_switches_every_text_and_the_listening() -> None:
    flow = bilingual()
    state, _ = begin(flow)
    state, actions = run(flow, state, Heard(T1, digits="2"))
    assert state.language == "es-US"
    assert emitted(actions, "call.language") == [{"node": "menu", "language": "es-US"}]
    assert shell(actions)[:2] == [Say("Oprima 2 para español.", "p", "es-US"),
                                  Listen(input=("speech", "dtmf"), language="es-US")]
    state, actions = run(flow, state, Silence(T1 + 5))
    assert shell(actions)[0] == Say("¿Sigue ahí?", "p", "es-US")
    state, actions = run(flow, state, Heard(T1 + 9, digits="9"))
    assert shell(actions)[0] == Say("Adiós, en es-US.", "p", "es-US")


def test_a_switch_back_is_a_switch_too() -> None:
    flow = bilingual()
    state, _ = begin(flow)
    state, _ = run(flow, state, Heard(T1, digits="2"))
    state, actions = run(flow, state, Heard(T1 + 1, digits="1"))
    assert state.language == "en-US"
    assert emitted(actions, "call.language") == [{"node": "menu", "language": "en-US"}]
    assert shell(actions)[0] == Say("Goodbye, in en-US.", "p", "en-US")


def test_routes_read_the_detected_language_of_the_utterance() -> None:
    flow = bilingual()
    state, _ = begin(flow)
    state, actions = run(flow, state, Heard(T1, "quiero una cita", 0.9, language="es-US"))
    assert (state.language, state.detected_language) == ("es-US", "es-US")
    assert shell(actions)[0] == Say("Oprima 2 para español.", "p", "es-US")
    # Speech the detector was unsure of is no language: the route does not hold.
    state, actions = run(flow, state, Heard(T1 + 1, "mmm", 0.9))
    assert state.detected_language == ""
    assert shell(actions)[0] == Say("Adiós, en es-US.", "p", "es-US")


def test_a_route_to_the_language_already_spoken_emits_no_switch() -> None:
    flow = bilingual()
    state, _ = begin(flow)
    state, _ = run(flow, state, Heard(T1, digits="2"))
    state, actions = run(flow, state, Heard(T1 + 1, digits="2"))
    assert emitted(actions, "call.language") == []
