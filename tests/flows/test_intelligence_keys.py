"""A flow's `analysis` and `webhooks`: compiled into the Flow, checked by schema and checks."""

from __future__ import annotations

from engine.flows.compile import compile_flow
from engine.flows.model import DEFAULT_WEBHOOK_EVENTS, Analysis, AnalysisField, Webhook
from tests.flows.conftest import Project, flow_problems

BASE = """
    flow: t
    personality: p
    vars: {business: Acme}
    start: bye
    nodes:
      bye: {type: hangup, text: Goodbye.}
"""


def test_analysis_and_webhooks_compile_with_their_defaults() -> None:
    data = {"flow": "t", "personality": "p", "start": "bye",
            "nodes": {"bye": {"type": "hangup", "text": "Goodbye."}},
            "analysis": {"fields": {
                "reason": {"type": "string", "enum": ["booking", "other"],
                           "description": "Why they called."},
                "callback_requested": {"type": "boolean"}}},
            "webhooks": [{"url": "https://crm.example.com/hook"},
                         {"url": "http://10.0.0.5/calls", "events": ["call.start"]}]}
    flow = compile_flow(data).flow
    assert flow.analysis == Analysis(summary=True, fields=(
        AnalysisField("reason", "string", ("booking", "other"), "Why they called."),
        AnalysisField("callback_requested", "boolean")))
    assert flow.webhooks == (Webhook("https://crm.example.com/hook", DEFAULT_WEBHOOK_EVENTS),
                             Webhook("http://10.0.0.5/calls", ("call.start",)))


def test_a_flow_without_them_has_none() -> None:
    flow = compile_flow({"flow": "t", "personality": "p", "start": "bye",
                         "nodes": {"bye": {"type": "hangup"}}}).flow
    assert flow.analysis is None and flow.webhooks == ()


def test_an_enum_on_a_field_that_is_not_a_string_is_an_error(project: Project) -> None:
    text = BASE + "    analysis: {fields: {paid: {type: boolean, enum: ['yes']}}}\n"
    [problem] = flow_problems(project, text)
    assert "analysis.fields.paid.enum: only a string field takes an enum" in str(problem)


def test_an_unknown_field_type_webhook_event_or_url_is_refused(project: Project) -> None:
    text = BASE + ("    analysis: {fields: {paid: {type: money}}}\n"
                   "    webhooks: [{url: 'ftp://example.com', events: [call.said]}]\n")
    messages = "\n".join(map(str, flow_problems(project, text)))
    assert "analysis.fields.paid.type" in messages
    assert "webhooks[0].url" in messages
    assert "webhooks[0].events[0]" in messages
