"""The post-call analysis of a scenario (`analysis:` in a scenario file), with the model's
answers scripted: the same checks and retry as the model analyst, so a scenario shows what a
wrong type, an unknown enum value or prose would be stored as.

`run_scripted_analysis` analyses a scenario's ended call as the analysis lane would, and says
what differs from the scenario's expectations; the scenario runner calls it after the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.ai.analysis import Analyst, ModelAnalyst, OfflineAnalyst
from engine.events.analysis_sink import AnalysisSink
from engine.flows.model import Flow
from engine.flows.scenarios import AnalysisScript
from engine.store import CallStore


class ScriptedAnalyst(ModelAnalyst):
    """A model analyst whose model answers with `answers`, in order (an object is its JSON, a
    text is answered as it is); asked once more than scripted, its request fails."""

    def __init__(self, answers: Sequence[Any], model: str = "scripted") -> None:
        self.model = model
        self.answers = list(answers)

    def _ask(self, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> str:
        """The next scripted answer; ValueError (a failed request) when none is left."""
        if not self.answers:
            raise ValueError("the scenario scripts no more analysis answers")
        answer = self.answers.pop(0)
        return answer if isinstance(answer, str) else json.dumps(answer)


def run_scripted_analysis(store: CallStore, flow: Flow, call_sid: str, script: AnalysisScript,
                          at: float) -> list[str]:
    """Analyse the ended call `call_sid` of `flow` with the script's answers (offline without
    any), record its `call.analysis` event at `at`, and return what differs from the
    script's expectations (empty when all held)."""
    analyst: Analyst = ScriptedAnalyst(script.model) if script.scripted else OfflineAnalyst()
    sink = AnalysisSink(store, analyst, lambda sid: flow, clock=lambda: at)
    result = sink.analyse(call_sid)
    if result is None:
        return ["the call was not analysed (it has an analysis already, or its flow asks "
                "for none)"]
    return script.check(result.as_json())
