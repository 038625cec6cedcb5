"""`languages:` on a flow (DESIGN.md 8.2): text maps validated at their lines, compiled with the
first language on the node and every language in `Flow.texts`, routes that switch language."""

from __future__ import annotations

from engine.flows.compile import compile_flow
from engine.flows.export import render, to_json
from engine.flows.model import GatherNode
from tests.flows.conftest import PERSONALITY, Project, dedent, line_of, only

BILINGUAL = dedent("""
    flow: t
    personality: p
    vars: {business: Acme}
    languages: [en-US, es-US]
    defaults:
      no_input:
        retries: 1
        reprompt: [{en-US: "Still there?", es-US: "¿Sigue ahí?"}]
        then: bye
    start: menu
    nodes:
      menu:
        type: gather
        input: [speech, dtmf]
        prompt: {en-US: "For English, press 1.", es-US: "Para español, oprima 2."}
        routes:
          - when: digits == '2' or detected_language == 'es-US'
            language: es-US
            to: bye
        next: bye
      bye:
        type: hangup
        text: {en-US: Goodbye., es-US: Adiós.}
""")


def test_a_bilingual_flow_compiles_with_every_text_in_each_language(project: Project) -> None:
    project.personality("p")
    project.flow("t", BILINGUAL)
    result = project.load()
    assert [str(p) for p in result.problems if p.severity == "error"] == []
    assert result.registry is not None
    flow = result.registry.flows["t"]
    assert flow.language == "en-US" and flow.spoken_languages() == ("en-US", "es-US")
    menu = flow.nodes["menu"]
    assert isinstance(menu, GatherNode) and menu.prompt == "For English, press 1."
    assert flow.text_in(menu.prompt, "es-US") == "Para español, oprima 2."
    assert flow.text_in("Still there?", "es-US") == "¿Sigue ahí?"
    assert menu.routes[0].language == "es-US"


def test_a_single_language_flow_keeps_language_and_its_plain_texts() -> None:
    flow = compile_flow({"flow": "t", "personality": "p", "language": "es-MX", "start": "a",
                         "nodes": {"a": {"type": "hangup", "text": "Adiós."}}}).flow
    assert flow.languages == () and flow.spoken_languages() == ("es-MX",)
    assert flow.text_in("Adiós.", "en-US") == "Adiós."


def test_a_plain_text_in_a_bilingual_flow_names_the_languages_it_needs(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace("text: {en-US: Goodbye., es-US: Adiós.}", "text: Goodbye.")
    project.flow("t", text)
    problem = only(project.errors(), "nodes.bye.text")
    assert (problem.path, problem.line) == ("flows/t.yaml", line_of(text, "text: Goodbye."))
    assert "a plain text in a flow with languages en-US, es-US" in problem.message
    assert "{en-US: ..., es-US: ...}" in problem.message


def test_a_text_missing_a_language_is_refused_at_its_line(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace('es-US: "Para español, oprima 2."', 'es-MX: "Oprima 2."')
    project.flow("t", text)
    errors = [p for p in project.errors() if "nodes.menu.prompt" in p.message]
    line = line_of(text, "    prompt:")
    assert [(p.line, p.message.split(";")[0]) for p in errors] == [
        (line, "nodes.menu.prompt: no text in es-US"),
        (line, "nodes.menu.prompt: es-MX is not one of the flow's languages (en-US, es-US)")]


def test_a_reprompt_in_defaults_is_checked_per_language(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace('[{en-US: "Still there?", es-US: "¿Sigue ahí?"}]',
                             '["Still there?"]')
    project.flow("t", text)
    problem = only(project.errors(), "defaults.no_input.reprompt[0]")
    assert problem.line == line_of(text, '["Still there?"]')


def test_a_route_to_a_language_the_flow_lacks_is_refused(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace("language: es-US\n", "language: fr-FR\n")
    project.flow("t", text)
    problem = only(project.errors(), "routes[0].language")
    assert problem.line == line_of(text, "language: fr-FR")
    assert "fr-FR is not one of the flow's languages (en-US, es-US)" in problem.message


def test_a_language_tag_that_is_not_bcp47_is_refused(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace("languages: [en-US, es-US]", "languages: [en-US, spanish]")
    project.flow("t", text)
    problem = only(project.errors(), "languages[1]")
    assert problem.line == line_of(text, "languages:")
    assert "'spanish' does not match" in problem.message and "BCP 47" in problem.message


def test_language_and_languages_together_are_refused(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace("languages: [en-US, es-US]",
                             "language: en-US\nlanguages: [en-US, es-US]")
    project.flow("t", text)
    assert "not both" in only(project.errors(), "language:").message


def test_a_text_map_in_a_single_language_flow_asks_for_languages(project: Project) -> None:
    project.personality("p")
    project.flow("t", dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: bye
        nodes:
          bye: {type: hangup, text: {en-US: Bye., es-US: Adiós.}}
    """))
    problem = only(project.errors(), "es-US")
    assert "needs the flow's `languages: [...]`" in problem.message


def test_each_language_of_a_text_is_checked_as_a_template(project: Project) -> None:
    project.personality("p")
    text = BILINGUAL.replace("es-US: Adiós.}", "es-US: 'Adiós {{ vars.nombre }}.'}")
    project.flow("t", text)
    problem = only(project.errors(), "vars.nombre")
    assert "nodes.bye.text.es-US" in problem.message


def test_a_voice_given_for_a_language_it_does_not_speak_is_refused(project: Project) -> None:
    personality = PERSONALITY.format(id="p").replace(
        "voice: {twilio: Polly.Joanna-Neural}",
        "voice:\n  twilio: {en-US: Polly.Joanna-Neural, es-US: Polly.Matthew-Neural}")
    project.personality("p", personality)
    project.flow("t", BILINGUAL)
    problem = only(project.errors(), "voice.twilio.es-US")
    assert problem.path == "personalities/p.yaml"
    assert "Polly.Matthew-Neural speaks en-US, not es-US" in problem.message


def test_a_language_without_a_voice_of_its_own_is_a_warning(project: Project) -> None:
    project.personality("p")  # one Twilio voice, Joanna's English
    project.flow("t", BILINGUAL)
    warnings = [p for p in project.problems() if p.severity == "warning"
                and "no Twilio voice for es-US" in p.message]
    assert len(warnings) == 1 and warnings[0].line == line_of(BILINGUAL, "languages:")


def test_a_voice_map_compiles_per_language(project: Project) -> None:
    personality = PERSONALITY.format(id="p").replace(
        "voice: {twilio: Polly.Joanna-Neural}",
        "voice:\n  twilio: {en-US: Polly.Joanna-Neural, es-US: Polly.Lupe-Neural}\n"
        "  openai: {voice: coral}\n"
        "  relay: {es-US: {provider: Google, voice: es-US-Neural2-A}}")
    project.personality("p", personality)
    project.flow("t", BILINGUAL)
    result = project.load()
    assert result.registry is not None
    voice = result.registry.personalities["p"].voice
    assert voice.twilio == "Polly.Joanna-Neural"
    spanish = voice.for_language("es-US")
    assert spanish.twilio == "Polly.Lupe-Neural" and spanish.openai == voice.openai
    assert spanish.relay is not None and spanish.relay.voice == "es-US-Neural2-A"
    assert voice.for_language("en-US").relay == voice.relay


def test_exports_show_the_languages_and_the_routes_that_switch(project: Project) -> None:
    project.personality("p")
    project.flow("t", BILINGUAL)
    result = project.load()
    assert result.registry is not None
    flow = result.registry.flows["t"]
    data = to_json(flow)
    assert data["languages"] == ["en-US", "es-US"]
    route = next(edge for edge in data["edges"] if edge["kind"] == "route")
    assert route["language"] == "es-US"
    assert all("language" not in edge for edge in data["edges"] if edge["kind"] != "route")
    mermaid = render(flow, "mermaid")
    assert 'flow_start(("en-US · es-US")):::start' in mermaid
    assert "→ es-US" in mermaid
    assert 'label="languages: en-US, es-US"' in render(flow, "dot")
