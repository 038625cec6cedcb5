"""`conversation: relay` on ai nodes and in `defaults`, and personalities' `voice.relay`:
validated at their lines, compiled (defaults applied), and marked in every export."""

from __future__ import annotations

import json

from engine.flows.export import render
from engine.flows.model import AiNode, RelayVoice
from tests.flows.conftest import PERSONALITY, Project, dedent, line_of, only

RELAY_FLOW = dedent("""
    flow: t
    personality: p
    vars: {business: Acme}
    defaults:
      on_error:
        network: {retry: 1, then: bye}
        rate_limit: {retry: 1, then: bye}
        ai_failure: {then: bye}
        tts_failure: {voice: twilio}
    start: assist
    nodes:
      assist:
        type: ai
        opening: Hello, how can I help?
        conversation: relay
        exits: {bye: The caller is done., other: Something else.}
        no_input: {retries: 1, then: bye}
      other:
        type: ai
        opening: Anything else?
        exits: {bye: The caller is done.}
        no_input: {retries: 1, then: bye}
      bye:
        type: hangup
        text: Goodbye.
""")


def test_a_relay_node_compiles_and_others_stay_gather(project: Project) -> None:
    project.flow("t", RELAY_FLOW)
    result = project.load()
    assert [p for p in result.problems if p.severity == "error"] == []
    nodes = result.registry.flows["t"].nodes
    assert isinstance(nodes["assist"], AiNode) and nodes["assist"].conversation == "relay"
    assert isinstance(nodes["other"], AiNode) and nodes["other"].conversation == "gather"


def test_defaults_make_every_ai_node_relay_unless_it_says_otherwise(project: Project) -> None:
    text = RELAY_FLOW.replace("defaults:\n", "defaults:\n  conversation: relay\n")
    text = text.replace("    opening: Anything else?\n",
                        "    opening: Anything else?\n    conversation: gather\n")
    project.flow("t", text)
    result = project.load()
    assert [p for p in result.problems if p.severity == "error"] == []
    nodes = result.registry.flows["t"].nodes
    assert [getattr(nodes[n], "conversation", None) for n in ("assist", "other")] == [
        "relay", "gather"]


def test_an_unknown_conversation_is_refused_at_its_line(project: Project) -> None:
    text = RELAY_FLOW.replace("conversation: relay", "conversation: realy")
    project.flow("t", text)
    problem = only(project.errors(), "conversation")
    assert problem.path == "flows/t.yaml"
    assert problem.line == line_of(text, "conversation: realy")
    assert problem.message == ("nodes.assist.conversation: 'realy' is not allowed (did you mean "
                               "'relay'?); use one of: gather, relay")


def test_conversation_belongs_to_ai_nodes_only(project: Project) -> None:
    text = RELAY_FLOW.replace("    text: Goodbye.\n",
                              "    text: Goodbye.\n    conversation: relay\n")
    project.flow("t", text)
    problem = only(project.errors(), "unknown key 'conversation'")
    assert problem.line == line_of(text, "conversation: relay", 2)


def test_a_bad_default_conversation_is_refused_at_its_line(project: Project) -> None:
    text = RELAY_FLOW.replace("defaults:\n", "defaults:\n  conversation: websocket\n")
    project.flow("t", text)
    problem = only(project.errors(), "defaults.conversation")
    assert problem.line == line_of(text, "conversation: websocket")


def test_a_relay_voice_compiles(project: Project) -> None:
    project.personality("p", PERSONALITY.format(id="p").replace(
        "voice: {twilio: Polly.Joanna-Neural}",
        "voice:\n  twilio: Polly.Joanna-Neural\n"
        "  relay: {provider: Google, voice: en-US-Journey-O}"))
    project.flow("t", RELAY_FLOW)
    result = project.load()
    assert [p for p in result.problems if p.severity == "error"] == []
    assert result.registry.personalities["p"].voice.relay == RelayVoice("Google",
                                                                         "en-US-Journey-O")


def test_a_bad_relay_voice_is_refused_at_its_line(project: Project) -> None:
    text = PERSONALITY.format(id="p").replace(
        "voice: {twilio: Polly.Joanna-Neural}",
        "voice:\n  twilio: Polly.Joanna-Neural\n  relay:\n    provider: Azure\n    voice: x")
    project.personality("p", text)
    project.flow("t", RELAY_FLOW)
    problem = only(project.errors(), "provider")
    assert problem.path == "personalities/p.yaml"
    assert problem.line == line_of(text, "provider: Azure")
    assert "use one of: ElevenLabs, Google, Amazon" in problem.message
    text = text.replace("    provider: Azure\n    voice: x\n", "    provider: Amazon\n")
    project.personality("p", text)
    assert "missing required key 'voice'" in only(project.errors(), "voice.relay").message


def test_exports_mark_the_relay_nodes(project: Project) -> None:
    project.flow("t", RELAY_FLOW)
    flow = project.load().registry.flows["t"]
    mermaid = render(flow, "mermaid")
    assert 'n_assist["assist<br/>ai · relay"]:::relay' in mermaid
    assert 'n_other["other<br/>ai"]' in mermaid
    assert "classDef relay" in mermaid
    dot = render(flow, "dot")
    assert '"assist" [label="assist\\nai · relay", style="rounded,dashed"];' in dot
    assert '"other" [label="other\\nai"];' in dot
    nodes = {node["id"]: node for node in json.loads(render(flow, "json"))["nodes"]}
    assert nodes["assist"]["conversation"] == "relay"
    assert nodes["other"]["conversation"] == "gather"
    assert "conversation" not in nodes["bye"]
