"""What a flow's template may make: huge repetitions, widths, ranges and loops are refused
before they take memory or time, the output is capped, and the interpreter treats a refusal as
the template error it is (recorded, the call goes on).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.flows.compile import compile_flow
from engine.runtime.state import Caller, CallStarted, Emit, Heard, Listen, Say
from engine.runtime.step import start_state, step
from engine.runtime.template_limits import MAX_OUTPUT, MAX_STEPS, TemplateLimitError
from engine.runtime.templates import evaluate, render
from tests.support import epoch

T0 = epoch("2025-01-15 10:00", "America/New_York")
HUGE = [
    "{{ 'x' * 10**9 }}",
    "{{ ['x'] * 10**9 }}",
    "{{ ('x' * 30000) * 2 }}",
    "{{ 7 ** 100000 }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ '%1000000000s' % 'x' }}",
    "{{ '%*s' % (10**9, 'x') }}",
    "{{ '{:>1000000000}'.format('x') }}",
    "{{ '{:>{}}'.format('x', 10**9) }}",
    "{{ '%1000000000s'|format('x') }}",
    "{{ ('x' * 30000)|replace('', 'y' * 30000) }}",
    "{{ ('x' * 30000).replace('', 'y' * 30000) }}",
    "{{ (['x' * 30000] * 1000)|join }}",
    "{{ ('a\\n' * 10000)|indent('y' * 3000) }}",
    "{{ ('x' * 1000)|wordwrap(1, wrapstring='y' * 1000) }}",
    "{{ [1]|batch(10**9, 'x')|list }}",
    "{{ lipsum(10**6) }}",
    "{{ range(10**9)|list }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "{% set a = 'x' * 30000 %}{{ a ~ a }}",
    "{% set a = 'x' * 30000 %}{% set b = a + a %}",
    "{% set a %}{{ 'x' * 20000 }}{{ 'x' * 20000 }}{% endset %}{{ a }}",
    "{% for i in range(5000) %}{{ 'abcdefghij' }}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
]


@pytest.mark.parametrize("text", HUGE)
def test_what_would_be_huge_is_refused_at_once(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError):
        render(text, {})
    assert time.perf_counter() - started < 1.0


def test_the_output_cap_is_exact() -> None:
    assert len(render(f"{{{{ 'x' * {MAX_OUTPUT} }}}}", {})) == MAX_OUTPUT
    with pytest.raises(TemplateLimitError, match=f"over {MAX_OUTPUT} characters"):
        render(f"{{{{ 'x' * {MAX_OUTPUT // 2} }}}}{{{{ 'y' * {MAX_OUTPUT // 2 + 1} }}}}", {})
    loop = MAX_STEPS - 1
    assert render(f"{{% for i in range({loop}) %}}{{% endfor %}}done", {}) == "done"


def test_conditions_are_bounded_too() -> None:
    with pytest.raises(TemplateLimitError):
        evaluate("('x' * 10**9) == 'x'", {})
    with pytest.raises(TemplateLimitError):
        evaluate("range(10**9)|list|length > 0", {})
    assert evaluate("2 ** 10 == 1024 and 'ab' * 2 == 'abab'", {})


def test_ordinary_templates_render_as_before() -> None:
    values: dict[str, Any] = {"vars": {"business": "Acme", "hours": ["9", "5"]}, "turn": 2}
    text = ("Thanks for calling {{ vars.business }}. {% for h in vars.hours %}{{ h }} "
            "{% endfor %}{{ '%s-%d' % ('a', 3) }} {{ '{:>4}'.format('x') }} "
            "{{ vars.hours|join(', ') }} {{ 'Hi'|center(6) }}|{{ 'ab' * 2 }} {{ [1] + [2] }} "
            "{{ turn * 3 }} {{ 'a' ~ 'b' }}{% for i in range(turn) %}{{ i }}{% endfor %}")
    assert render(text, values) == ("Thanks for calling Acme. 9 5 a-3    x 9, 5   Hi  |abab "
                                    "[1, 2] 6 ab01")


def _flow(text: str, when: str = "digits == '1'") -> Any:
    return compile_flow({
        "flow": "t", "personality": "p", "start": "hello", "vars": {"business": "Acme"},
        "nodes": {
            "hello": {"type": "say", "text": text, "next": "menu"},
            "menu": {"type": "gather", "prompt": "Press one.", "input": ["dtmf"],
                     "routes": [{"when": when, "to": "bye"}], "next": "bye"},
            "bye": {"type": "hangup", "text": "Bye from {{ vars.business }}."},
        }}).flow


def _started(flow: Any) -> list[Any]:
    state = start_state(flow, "v1", "CA" + "0" * 32, Caller(number="+15551230000"),
                        "+15550001000", T0)
    return step(flow, state, CallStarted(T0))[1]


def test_a_huge_text_is_a_template_error_and_the_call_goes_on() -> None:
    # Rendered before the fix, this was ten million characters of <Say>.
    actions = _started(_flow("Hello {{ 'x' * 10**7 }}."))
    errors = [a.data for a in actions if isinstance(a, Emit) and a.name == "call.error"]
    assert [e["kind"] for e in errors] == ["template"]
    assert errors[0]["detail"].startswith("nodes.hello.text: TemplateLimitError: ")
    assert len(errors[0]["detail"]) < 300
    # The broken text is skipped and the call goes on to the question.
    assert all(len(a.text) < 100 for a in actions if isinstance(a, Say))
    assert any(isinstance(a, Listen) for a in actions)
    assert [a.data["node"] for a in actions
            if isinstance(a, Emit) and a.name == "call.node"][-1] == "menu"


def test_a_huge_condition_fails_closed() -> None:
    flow = _flow("Hi.", when="(range(10**7)|list|length) > 0")
    state = start_state(flow, "v1", "CA" + "0" * 32, Caller(number="+15551230000"),
                        "+15550001000", T0)
    state, _ = step(flow, state, CallStarted(T0))
    _, actions = step(flow, state, Heard(T0 + 5, digits="1"))
    errors = [a.data for a in actions if isinstance(a, Emit) and a.name == "call.error"]
    assert [e["kind"] for e in errors] == ["condition"]
    assert "TemplateLimitError" in errors[0]["detail"]
