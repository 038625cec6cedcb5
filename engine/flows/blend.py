"""Personality blending (DESIGN.md 8.3): a personality made of others in given proportions.

```yaml
personality: host
blend: {friendly: 0.7, witty: 0.3}
name: Host
```

The blend compiles into an ordinary `Personality`, so nothing downstream knows it was blended:

- `traits`: from each parent in proportion to its weight (at least one each), heaviest first, about
  as many as the heaviest parent has;
- `system_prompt`: the heaviest parent's, then a line on the mix ("mostly Friendly: warm, ...;
  some Witty: playful, ...");
- `examples`: from each parent in proportion to its weight (at least one each), heaviest first;
- `style`: `max_sentences` and `temperature` averaged by weight;
- `voice`, `model` and `fallback`: the heaviest parent's.

Any field the document gives itself replaces what the blend computes. Validation (`problems`):
known ids, weights in (0, 1] (the schema's) summing to 1, and no cycles. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.flows.compile import compile_personality
from engine.flows.model import Example, Personality, Style, frozen_mapping
from engine.flows.problems import Problem
from engine.flows.schema import did_you_mean
from engine.flows.yamlread import Document

TOLERANCE = 1e-6
BLEND_KEY = "blend"
"""The personality key this module reads; every other is compile_personality's."""


def blend_of(data: Any) -> Mapping[str, float] | None:
    """A personality document's `blend` (parent id -> weight), or None when it has none."""
    blend = data.get(BLEND_KEY) if isinstance(data, dict) else None
    return blend if isinstance(blend, dict) else None


def _share(weight: float) -> str:
    return "mostly" if weight >= 0.5 else "some" if weight >= 0.2 else "a touch of"


def mix_line(parents: list[tuple[Personality, float]]) -> str:
    """The sentence on the mix added to the heaviest parent's prompt."""
    parts = [f"{_share(weight)} {parent.name} ({round(weight * 100)}%: "
             f"{', '.join(parent.traits) or parent.description})"
             for parent, weight in parents]
    return ("Your manner on this line is a blend: " + "; ".join(parts) + ". Lean on the first, "
            "with the others' touches where they fit.")


def blend(data: Mapping[str, Any], parents: Mapping[str, Personality],
          source: str = "") -> Personality:
    """Compile a blended personality document, its parents (every id in `blend`) compiled."""
    weights = sorted(((parents[name], float(weight)) for name, weight in data["blend"].items()),
                     key=lambda item: -item[1])
    heaviest = weights[0][0]
    size = max(len(heaviest.traits), 1)
    traits = list(dict.fromkeys(trait for parent, weight in weights
                                for trait in parent.traits[:max(1, round(weight * size))]))
    count = max(len(parent.examples) for parent, _ in weights)
    examples: list[Example] = []
    for parent, weight in weights:
        examples += parent.examples[:max(1, round(weight * count))]
    style = Style(
        max_sentences=max(1, round(sum(p.style.max_sentences * w for p, w in weights))),
        temperature=round(sum(p.style.temperature * w for p, w in weights), 2))
    computed: dict[str, Any] = {
        "personality": data["personality"], "name": data["name"],
        "description": "Blend of " + " and ".join(
            f"{round(weight * 100)}% {parent.name}" for parent, weight in weights) + ".",
        "traits": traits,
        "system_prompt": heaviest.system_prompt.rstrip() + "\n" + mix_line(weights) + "\n",
        "style": {"max_sentences": style.max_sentences, "temperature": style.temperature},
        "examples": [{"input": e.input, "response": e.response} for e in examples],
        "model": heaviest.model, "fallback": heaviest.fallback,
    }
    given = {key: value for key, value in data.items() if key != "blend"}
    merged = {key: value for key, value in {**computed, **given}.items() if value is not None}
    if "style" in given:
        merged["style"] = {**computed["style"], **given["style"]}
    if "voice" not in given:
        merged["voice"] = {}
    personality = compile_personality(merged, source)
    voice = personality.voice if "voice" in given else heaviest.voice
    weights_given = frozen_mapping({parent.id: weight for parent, weight in weights})
    return Personality(
        id=personality.id, name=personality.name, description=personality.description,
        traits=personality.traits, system_prompt=personality.system_prompt,
        style=personality.style, voice=voice, examples=personality.examples,
        model=personality.model, fallback=personality.fallback, source=source,
        blend=weights_given)


def problems(document: Document, known: set[str]) -> Iterator[Problem]:
    """What is wrong with a personality's `blend` on its own: unknown ids, itself as a part,
    weights that do not sum to 1."""
    weights = blend_of(document.data)
    if weights is None:
        return
    own = document.data.get("personality")
    for name in weights:
        if name == own:
            yield document.problem(("blend", name), f"blend.{name}: a personality cannot "
                                                    f"blend itself", at_key=True)
        elif name not in known:
            yield document.problem(("blend", name), f"blend.{name}: unknown personality "
                                                    f"'{name}'{did_you_mean(name, sorted(known))}",
                                   at_key=True)
    total = sum(float(weight) for weight in weights.values()
                if isinstance(weight, int | float))
    if abs(total - 1.0) > TOLERANCE:
        yield document.problem(("blend",), f"blend: the weights sum to {total:g}, not 1; "
                                           f"make them add up to 1")


def cycles(blends: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    """Every cycle of blends (`a` blends `b` blends `a`), each once, as the ids around it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(name: str, path: list[str]) -> None:
        for parent in blends.get(name, {}):
            if parent in path:
                cycle = path[path.index(parent):]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif parent in blends:
                walk(parent, [*path, parent])

    for name in sorted(blends):
        walk(name, [name])
    return found


def order(blends: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The blended ids, each after the blended parents it needs (cycles left out)."""
    done: list[str] = []
    in_cycle = {name for cycle in cycles(blends) for name in cycle}

    def visit(name: str) -> None:
        if name in done or name in in_cycle:
            return
        for parent in blends.get(name, {}):
            if parent in blends:
                visit(parent)
        done.append(name)

    for name in sorted(blends):
        visit(name)
    return done


def compile_blends(blended: Mapping[str, Document],
                   personalities: dict[str, tuple[Personality, Document]]) -> list[Problem]:
    """Check the blended documents (by id) and compile each one whose parts are all known and
    sound into `personalities`, where the others already are; every problem found."""
    known = set(personalities) | set(blended)
    found: list[Problem] = []
    failed: set[str] = set()
    for name, document in blended.items():
        own = list(problems(document, known))
        found += own
        if own:
            failed.add(name)
    weights = {name: blend_of(document.data) or {} for name, document in blended.items()}
    for cycle in cycles(weights):
        loop = " → ".join([*cycle, cycle[0]])
        for name in cycle:
            failed.add(name)
            found.append(blended[name].problem(("blend",), f"blend: the blends go round in a "
                                                           f"cycle ({loop}); break it"))
    for name in order(weights):
        document = blended[name]
        if name in failed or not all(parent in personalities for parent in weights[name]):
            continue
        parents = {parent: personalities[parent][0] for parent in weights[name]}
        personalities[name] = (blend(document.data, parents, document.path), document)
    return found


def blend_parents(name: str, documents: Mapping[str, Any]) -> set[str]:
    """Every personality `name` is blended from, its parents' parents included."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for parent in blend_of(documents.get(todo.pop())) or {}:
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def compile_documents(documents: Mapping[str, Any]) -> dict[str, Personality]:
    """Compile personality documents already validated together (a call's snapshot), blends
    after the personalities they are made of."""
    compiled = {name: compile_personality(data) for name, data in documents.items()
                if blend_of(data) is None}
    blends = {name: blend_of(data) or {} for name, data in documents.items()
              if blend_of(data) is not None}
    for name in order(blends):
        compiled[name] = blend(documents[name], compiled)
    return compiled
