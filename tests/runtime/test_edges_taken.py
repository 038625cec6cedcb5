"""The interpreter leaves nodes only by the compiled graph's edges.

Random calls through the bundled flows, stepped in the pure core: every `call.node` event names
an edge of the flow by its `edge_id` and says of it exactly what the graph says (ends, kind, a
route's condition, a self-loop's strategy); and together the calls take every edge the graph
has, so no edge is drawn that the interpreter cannot take.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.flows.loader import load_project
from engine.flows.model import AiNode, Edge, Flow, RecordNode, Registry, TransferNode
from engine.runtime.state import (
    Caller,
    CallStarted,
    CallState,
    DialEnded,
    Emit,
    Event,
    Failed,
    Heard,
    MachineAnswered,
    RecordingDone,
    Replied,
    Resume,
    Silence,
    SpeechFailed,
)
from engine.runtime.step import start_state, step
from tests.support import epoch

ROOT = Path(__file__).resolve().parents[2]
T0 = epoch("2025-01-13 08:00", "America/New_York")  # a Monday, before opening
CALLS = 400  # enough for every edge of each bundled flow, with room to spare
EVENTS_PER_CALL = 40
QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


@pytest.fixture(scope="module")
def bundled() -> Registry:
    result = load_project(ROOT)
    assert result.registry is not None, "\n".join(map(str, result.problems))
    return result.registry


def words(flow: Flow) -> list[str]:
    """What callers might say or press: the quoted words of the flow's route conditions."""
    found = {"hello"}
    for node in flow.nodes.values():
        for route in getattr(node, "routes", ()):
            found.update(match[1] or match[2] for match in QUOTED.finditer(route.when))
    return sorted(word for word in found if word)


def caller_turn(rng: random.Random, now: float, said: list[str],
                languages: tuple[str, ...] = ()) -> Event:
    if rng.random() < 0.25:
        return Silence(now)
    text = rng.choice(said)
    if text.isdigit():
        return Heard(now, digits=text)
    # The shell scores every utterance and detects its language; a random mood and language
    # here, so routes on them are taken too.
    return Heard(now, speech=text, confidence=0.9,
                 sentiment=rng.choice([0.8, 0.4, 0.0, -0.4, -0.9]),
                 language=rng.choice(("", *languages)) if len(languages) > 1 else "")


def next_event(rng: random.Random, flow: Flow, state: CallState, now: float,
               said: list[str], last: Event) -> Event:
    """Mostly what the node waits for, sometimes anything at all (late or repeated webhooks)."""
    node = flow.nodes[state.node]
    if isinstance(last, Failed) and rng.random() < 0.7:
        # Failures come in runs, which is what exhausts a retry strategy.
        return dataclasses.replace(last, now=now)
    anything = rng.random() < 0.15
    if isinstance(node, AiNode) and (state.pending is not None or anything):
        roll = rng.random()
        if roll < 0.4:
            exits = [None, None, *(exit_.to for exit_ in node.exits)]
            return Replied(now, "Sure.", exit=rng.choice(exits))
        if roll < 0.8:
            return Failed(now, rng.choice(["network", "rate_limit", "ai_failure"]), "boom",
                          retry_after=rng.choice([0.0, 1.0, 5.0]))
        if roll < 0.9:
            return SpeechFailed(now, state.node, rng.choice(["network", "rate_limit"]), "down")
        return Resume(now)
    if isinstance(node, TransferNode) and not anything:
        return DialEnded(now, rng.choice(["completed", "busy", "no-answer", "failed"]))
    if isinstance(node, RecordNode) and not anything:
        return RecordingDone(now, "https://example.com/r.wav", 12)
    if anything and rng.random() < 0.5:
        return rng.choice([Resume(now), DialEnded(now, "busy"), RecordingDone(now),
                           SpeechFailed(now, state.node, "network")])
    return caller_turn(rng, now, said, flow.spoken_languages())


def node_events(flow: Flow, seed: int) -> Iterator[Mapping[str, Any]]:
    """The data of every `call.node` event of one random call."""
    rng = random.Random(seed)
    said = words(flow)
    if rng.random() < 0.2:  # a holiday: every flag of the flow's vars turned over
        flow = dataclasses.replace(flow, vars={
            name: not value if isinstance(value, bool) else value
            for name, value in flow.vars.items()})
    now = T0 + rng.randrange(0, 7 * 24 * 3600)  # any hour of the week: open and closed
    state = start_state(flow, "v", f"CA{seed:032d}", Caller(number="+15551230000"),
                        "+15550001000", now)
    # Answering machines, from a stream of their own so the other events stay as they were:
    # found on the first webhook now and then, or later in the call.
    machines = random.Random(seed * 7919 + 1)
    event: Event = CallStarted(now, answered_by="machine_end_beep"
                               if machines.random() < 0.05 else "")
    for _ in range(EVENTS_PER_CALL):
        state, actions = step(flow, state, event)
        yield from (action.data for action in actions
                    if isinstance(action, Emit) and action.name == "call.node")
        if state.ended:
            return
        now += rng.choice([1.0, 5.0, 30.0, 120.0, 700.0])  # now and then past max_seconds
        event = next_event(rng, flow, state, now, said, event)
        if machines.random() < 0.01:
            event = MachineAnswered(now, "machine_end_silence")


def as_the_graph_says(edge: Edge) -> dict[str, Any]:
    said: dict[str, Any] = {"source": edge.source, "node": edge.target, "edge": edge.kind}
    said["when"] = edge.label if edge.kind == "route" else None
    said["strategy"] = edge.strategy
    return said


def test_every_move_is_an_edge_of_the_graph_and_every_edge_is_taken(bundled: Registry) -> None:
    for flow in bundled.flows.values():
        taken: set[str] = set()
        for seed in range(CALLS):
            for data in node_events(flow, seed):
                edge = flow.edge(data["edge_id"])
                assert edge is not None, (flow.id, seed, data)
                assert {key: data.get(key) for key in as_the_graph_says(edge)} == \
                    as_the_graph_says(edge), (flow.id, seed)
                taken.add(edge.id)
        never = [edge.id for edge in flow.edges if edge.id not in taken]
        assert never == [], f"{flow.id}: random calls never took {never}"
