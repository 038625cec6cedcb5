"""Tools on a relay ai node: the model calls one mid-session, the request goes to a local API on
real sockets, its JSON answer goes back to the model, and the reply streams on in the same
`text` tokens; a wrong call is answered to the model and never sent."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.simulator import SimulatedCall
from tests.ai.conftest import events
from tests.conftest import ROOT
from tests.doubles.openai_server import OpenAIDouble, Text, ToolCall
from tests.relay.conftest import RELAY_FLOW
from tests.support_api import Api, answer, serve_api

TOOLS = """\
    tools:
      find_slots:
        description: The free slots on a day.
        parameters:
          day: {type: string, enum: [monday, tuesday]}
        request: {url: "BASE/slots?day={{ args.day }}", timeout: 3}
"""


@pytest.fixture
def api() -> Iterator[Api]:
    with serve_api() as served:
        yield served


@pytest.fixture
def project(tmp_path: Path, api: Api) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "personalities", root / "personalities")
    (root / "flows").mkdir()
    flow = RELAY_FLOW.replace("    exits:\n      goodbye:",
                              TOOLS.replace("BASE", api.base) + "    exits:\n      goodbye:", 1)
    assert "find_slots" in flow
    (root / "flows" / "relay_desk.yaml").write_text(flow, encoding="utf-8")
    return root


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "HTTP_ALLOW_HOSTS": "127.0.0.1"}


def test_a_tool_call_in_a_session_is_answered_and_the_reply_goes_on(
        relay_call: Callable[..., SimulatedCall], double: OpenAIDouble, api: Api,
        app: Any) -> None:
    api.routes["/slots"] = answer(200, json.dumps({"slots": ["9am"]}).encode())
    double.chat(ToolCall("find_slots", '{"day": "monday"}', text="Let me look."),
                Text("Monday at 9am is free."))
    c = relay_call().start()
    line = c.relay()
    reply = line.say("anything on monday")
    assert reply.last
    assert reply.text == "Let me look. Monday at 9am is free."
    assert [seen.path for seen in api.seen] == ["/slots?day=monday"]
    second = double.chat_requests[1]
    [result] = [m for m in second.messages if m["role"] == "tool"]
    assert json.loads(result["content"]) == {"slots": ["9am"]}
    [record] = events(app, c.call_sid, "call.http")
    assert record["tool"] == "find_slots" and record["status"] == 200


def test_a_wrong_call_in_a_session_is_not_sent(
        relay_call: Callable[..., SimulatedCall], double: OpenAIDouble, api: Api) -> None:
    double.chat(ToolCall("find_slots", '{"day": "friday"}'),
                Text("We are closed on Fridays. Monday or Tuesday?"))
    c = relay_call().start()
    reply = c.relay().say("friday?")
    assert reply.text == "We are closed on Fridays. Monday or Tuesday?"
    assert api.seen == []
    [result] = [m for m in double.chat_requests[1].messages if m["role"] == "tool"]
    assert "invalid arguments for find_slots" in result["content"]
