"""Personality blending (DESIGN.md 8.3): a blend compiles into a personality (traits, prompt,
examples and style weighted, voice of the heaviest unless given), is validated at its lines
(known ids, weights in (0, 1] summing to 1, no cycles), and `flask personalities show` prints
it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from engine.flows.loader import load_project, registry_from_snapshot
from engine.web.app import create_app
from tests.conftest import ROOT
from tests.flows.conftest import SMALL_FLOW, Project, dedent, line_of, only

PARENT = dedent("""
    personality: {id}
    name: {name}
    traits: [{traits}]
    system_prompt: You are {id} on the phone for {{{{ vars.business }}}}, briefly.
    style: {{max_sentences: {sentences}, temperature: {temperature}}}
    voice: {{twilio: {voice}}}
    examples:
      - {{input: Hi 1, response: {id} one}}
      - {{input: Hi 2, response: {id} two}}
      - {{input: Hi 3, response: {id} three}}
      - {{input: Hi 4, response: {id} four}}
""")

MIX = dedent("""
    personality: mix
    blend: {a: 0.75, b: 0.25}
    name: Mix
""")


def parents(project: Project) -> None:
    project.personality("a", PARENT.format(id="a", name="Ay", traits="warm, calm, kind, patient",
                                           sentences=2, temperature=0.5,
                                           voice="Polly.Joanna-Neural"))
    project.personality("b", PARENT.format(id="b", name="Bee", traits="quick, bright",
                                           sentences=4, temperature=1.0,
                                           voice="Polly.Matthew-Neural"))


def test_a_blend_compiles_into_a_weighted_personality(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX)
    result = project.load()
    assert [str(p) for p in result.problems if p.severity == "error"] == []
    assert result.registry is not None
    mix, a = result.registry.personalities["mix"], result.registry.personalities["a"]
    assert dict(mix.blend) == {"a": 0.75, "b": 0.25}
    assert mix.traits == ("warm", "calm", "kind", "quick")  # 3 of a's four, 1 of b's
    assert (mix.style.max_sentences, mix.style.temperature) == (2, 0.62)  # 2.5 rounds to even
    assert [e.response for e in mix.examples] == ["a one", "a two", "a three", "b one"]
    assert mix.voice == a.voice and mix.fallback is None
    assert mix.system_prompt.startswith(a.system_prompt.rstrip())
    assert "mostly Ay (75%: warm, calm, kind, patient); some Bee (25%: quick, bright)" \
        in mix.system_prompt
    assert mix.description == "Blend of 75% Ay and 25% Bee."


def test_fields_given_replace_what_the_blend_computes(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX + "description: Mine.\nstyle: {temperature: 0.1}\n"
                                      "voice: {twilio: Polly.Lupe-Neural}\ntraits: [odd]\n")
    result = project.load()
    assert result.registry is not None
    mix = result.registry.personalities["mix"]
    assert (mix.description, mix.traits, mix.voice.twilio) == ("Mine.", ("odd",),
                                                               "Polly.Lupe-Neural")
    assert (mix.style.max_sentences, mix.style.temperature) == (2, 0.1)


def test_an_unknown_part_is_refused_at_its_key(project: Project) -> None:
    parents(project)
    text = MIX.replace("b: 0.25", "bb: 0.25")
    project.personality("mix", text)
    problem = only(project.errors(), "blend.bb")
    assert (problem.path, problem.line) == ("personalities/mix.yaml", line_of(text, "blend:"))
    assert "unknown personality 'bb' (did you mean 'b'?)" in problem.message


def test_weights_must_sum_to_one(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX.replace("b: 0.25", "b: 0.5"))
    assert "the weights sum to 1.25, not 1" in only(project.errors(), "blend:").message


def test_a_weight_outside_zero_to_one_is_refused(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX.replace("{a: 0.75, b: 0.25}", "{a: 1.25, b: -0.25}"))
    messages = [p.message for p in project.errors()]
    assert any(m.startswith("blend.a:") for m in messages)
    assert any(m.startswith("blend.b:") for m in messages)


def test_blends_that_go_round_in_a_cycle_are_refused(project: Project) -> None:
    parents(project)
    project.personality("x", "personality: x\nblend: {y: 0.5, a: 0.5}\nname: X\n")
    project.personality("y", "personality: y\nblend: {x: 0.5, b: 0.5}\nname: Y\n")
    cycle = [p for p in project.errors() if "cycle" in p.message]
    assert sorted(p.path for p in cycle) == ["personalities/x.yaml", "personalities/y.yaml"]
    assert "(x → y → x)" in cycle[0].message


def test_a_personality_cannot_blend_itself(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX.replace("b: 0.25", "mix: 0.25"))
    assert "cannot blend itself" in only(project.errors(), "blend.mix").message


def test_a_blend_of_a_blend_compiles_after_its_parts(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX)
    project.personality("outer", "personality: outer\nblend: {mix: 0.6, b: 0.4}\nname: Outer\n")
    result = project.load()
    assert result.registry is not None
    assert result.registry.personalities["outer"].voice.twilio == "Polly.Joanna-Neural"


def test_a_calls_snapshot_compiles_the_blend_again_from_its_parts(project: Project) -> None:
    parents(project)
    project.personality("mix", MIX)
    project.flow("t", SMALL_FLOW.format(id="t").replace("personality: p", "personality: mix"))
    result = project.load()
    assert result.registry is not None
    snapshot = result.registry.snapshots["t"]
    assert sorted(snapshot["personalities"]) == ["a", "b", "mix"]
    again = registry_from_snapshot(snapshot)
    # The same personality, but for the file it came from (a snapshot has no files).
    assert again.personalities["mix"] == replace(result.registry.personalities["mix"], source="")
    assert again.versions["t"] == result.registry.versions["t"]


def test_the_bundled_blend_and_personalities_show(tmp_path: Path) -> None:
    result = load_project(ROOT)
    assert result.registry is not None
    host = result.registry.personalities["host"]
    assert dict(host.blend) == {"friendly": 0.7, "witty": 0.3}
    assert host.description == "Warm, with a light touch of humour."
    app = create_app({"PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 's.db'}"})
    shown = app.test_cli_runner().invoke(args=["personalities", "show", "host", "--format",
                                               "json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["blend"] == {"friendly": 0.7, "witty": 0.3}
    assert data["voice"]["by_language"]["es-US"]["twilio"] == "Polly.Lupe-Neural"
    text = app.test_cli_runner().invoke(args=["personalities", "show", "host"])
    assert 'blend: {"friendly": 0.7, "witty": 0.3}' in text.stdout
    assert "Your manner on this line is a blend" in text.stdout
    unknown = app.test_cli_runner().invoke(args=["personalities", "show", "nope"])
    assert unknown.exit_code == 1 and "unknown personality 'nope'" in unknown.output


def test_a_personality_without_blend_needs_its_own_fields(project: Project) -> None:
    parents(project)
    project.personality("mix", "personality: mix\nname: Mix\n")
    # Without `blend`, a personality needs its own prompt, voice and examples.
    assert "missing required key 'system_prompt'" in only(project.errors(), "system_prompt").message


def test_the_json_export_shows_the_personalities_and_their_blends(tmp_path: Path) -> None:
    app = create_app({"PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 's.db'}"})
    exported = app.test_cli_runner().invoke(
        args=["flows", "export", "family_clinic", "--format", "json"])
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.stdout)
    assert data["personalities"] == [
        {"id": "host", "name": "Host", "blend": {"friendly": 0.7, "witty": 0.3}},
        {"id": "professional", "name": "Professional", "blend": {}}]
