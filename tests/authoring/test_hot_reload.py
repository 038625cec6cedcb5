"""Hot reload: a changed flow goes live for new calls, calls in progress finish on their version,
and a broken edit is refused (its problems shown on /api/flows) while the last good set stays."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import click
from flask import Flask

from engine.authoring.transports import app_transport
from engine.calls.library import FlowLibrary
from engine.simulator import SimulatedCall
from engine.web.watcher import FlowWatcher, serving_requests, snapshot
from tests.authoring.conftest import AUTH_TOKEN, Project, logged_in

OLD_ANNOUNCE = "Connecting you to the front desk now."
NEW_ANNOUNCE = "Hold on, ringing the front desk for you."


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not pick up the change in time"
        time.sleep(0.02)


def start_call(app: Flask) -> SimulatedCall:
    call = SimulatedCall(app_transport(app), "http://localhost", AUTH_TOKEN)
    call.start("/api/incoming-call?flow=receptionist")
    assert call.waiting.kind == "gather", call.transcript()
    return call


def ask_for_a_person(call: SimulatedCall) -> str:
    call.say("Can I talk to a person?")
    assert call.waiting.kind == "dial", call.transcript()
    return call.last_heard()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_edits_go_live_for_new_calls_only_and_broken_ones_are_refused(
        bundled_copy: Project, make_app: Callable[..., Flask]) -> None:
    app = make_app(bundled_copy.root, RELOAD=True, RELOAD_INTERVAL=0.05)
    library: FlowLibrary = app.extensions["phoney"].library
    assert isinstance(app.extensions.get("phoney.watcher"), FlowWatcher)
    first = library.live.versions["receptionist"]
    before_edit = start_call(app)  # in progress across the reload

    flow_file = bundled_copy.root / "flows" / "receptionist.yaml"
    edit(flow_file, OLD_ANNOUNCE, NEW_ANNOUNCE)
    wait_for(lambda: library.live.versions["receptionist"] != first)
    second = library.live.versions["receptionist"]
    assert ask_for_a_person(start_call(app)) == NEW_ANNOUNCE
    assert ask_for_a_person(before_edit) == OLD_ANNOUNCE  # finishes on the version it began on
    assert library.live.versions["after_hours"]  # the rest of the set is still there

    client = logged_in(app)
    listing = client.get("/api/flows").get_json()
    assert listing["refused"] is None
    loaded_at = listing["loaded_at"]

    edit(flow_file, "    next: assist\n\n  assist:", "    next: asist\n\n  assist:")
    wait_for(lambda: bool(library.refused))
    assert library.live.versions["receptionist"] == second  # the last good version stays live
    assert ask_for_a_person(start_call(app)) == NEW_ANNOUNCE
    listing = client.get("/api/flows").get_json()
    assert listing["loaded_at"] == loaded_at
    receptionist = next(flow for flow in listing["flows"] if flow["id"] == "receptionist")
    assert receptionist["version"] == second
    refused = listing["refused"]
    assert refused["at"]
    (problem,) = refused["problems"]
    line = flow_file.read_text().splitlines().index("    next: asist") + 1
    assert problem["path"] == "flows/receptionist.yaml" and problem["line"] == line
    assert "unknown node 'asist' (did you mean 'assist'?)" in problem["message"]
    assert problem["text"].startswith(f"flows/receptionist.yaml:{line}:")

    edit(flow_file, "next: asist", "next: assist")  # fixed: goes live again, refusal cleared
    wait_for(lambda: not library.refused)
    assert client.get("/api/flows").get_json()["refused"] is None


def test_the_watcher_sees_only_flow_and_personality_files(bundled_copy: Project) -> None:
    before = snapshot(bundled_copy.root)
    names = {name for name, _, _ in before}
    assert "flows/receptionist.yaml" in names and "personalities/friendly.yaml" in names
    assert not any(name.endswith(".test.yaml") for name in names)
    bundled_copy.write("flows/receptionist.test.yaml", "flow: receptionist\n")
    bundled_copy.write("flows/notes.txt", "not a flow")
    assert snapshot(bundled_copy.root) == before
    bundled_copy.write("personalities/new.yaml", "personality: new\n")
    assert snapshot(bundled_copy.root) != before


def test_one_poll_reloads_once_per_change(bundled_copy: Project,
                                          make_app: Callable[..., Flask]) -> None:
    app = make_app(bundled_copy.root)  # RELOAD=False: no thread; polled by hand here
    assert "phoney.watcher" not in app.extensions
    watcher = FlowWatcher(app.extensions["phoney"].library)
    assert watcher.check() is False
    (bundled_copy.root / "flows" / "after_hours.yaml").unlink()
    assert watcher.check() is True and watcher.reloads == 1
    assert "after_hours" not in app.extensions["phoney"].library.live.flows
    assert watcher.check() is False


def test_short_lived_commands_start_no_watcher() -> None:
    assert serving_requests()  # no click context: a WSGI server or a test

    @click.command("validate")
    def validate() -> None:
        assert not serving_requests()

    @click.command("run")
    def run() -> None:
        assert serving_requests()

    for command in (validate, run):
        command.main([], standalone_mode=False)


def redescribe(path: Path, description: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^description: .*$", text, re.M), path
    path.write_text(re.sub(r"^description: .*$", f"description: {description}", text, count=1,
                           flags=re.M), encoding="utf-8")


def test_a_refused_file_holds_back_only_its_own_flow(
        bundled_copy: Project, make_app: Callable[..., Flask]) -> None:
    app = make_app(bundled_copy.root)
    library: FlowLibrary = app.extensions["phoney"].library
    watcher = FlowWatcher(library)
    versions = dict(library.live.versions)
    flows = bundled_copy.root / "flows"
    edit(flows / "receptionist.yaml", "    next: assist\n\n  assist:",
         "    next: asist\n\n  assist:")
    redescribe(flows / "after_hours.yaml", "Edited while receptionist is broken.")
    assert watcher.check() is True
    assert library.refused and library.held_back == ["receptionist"]
    assert library.live.versions["receptionist"] == versions["receptionist"]
    assert library.live.versions["after_hours"] != versions["after_hours"]  # went live anyway
    assert library.live.flows["after_hours"].description == \
        "Edited while receptionist is broken."
    assert library.live.versions["support_triage"] == versions["support_triage"]
    assert ask_for_a_person(start_call(app)) == OLD_ANNOUNCE  # the last good receptionist

    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    line = (flows / "receptionist.yaml").read_text().splitlines().index("    next: asist") + 1
    assert body["held_back"] == ["receptionist"]
    (text,) = body["refused"]
    assert text.startswith(f"flows/receptionist.yaml:{line}:")
    assert "unknown node 'asist'" in text
    assert logged_in(app).get("/api/flows").get_json()["refused"]["held_back"] == \
        ["receptionist"]

    edit(flows / "receptionist.yaml", "next: asist", "next: assist")
    assert watcher.check() is True
    assert not library.refused and library.held_back == []
    assert "refused" not in client.get("/readyz").get_json()


def test_a_broken_personality_holds_back_the_flows_that_use_it(
        bundled_copy: Project, make_app: Callable[..., Flask]) -> None:
    flows = bundled_copy.root / "flows"
    calm = (flows / "after_hours.yaml").read_text().replace("flow: after_hours", "flow: calm") \
        .replace("personality: professional", "personality: zen", 1) \
        .replace('numbers: ["+15550002000"]', 'numbers: ["+15550002999"]')
    (flows / "calm.yaml").write_text(calm)
    app = make_app(bundled_copy.root)
    library: FlowLibrary = app.extensions["phoney"].library
    assert "zen" in library.live.flows["calm"].personalities_used()
    watcher = FlowWatcher(library)
    for flow_id in ("calm", "after_hours"):
        redescribe(flows / f"{flow_id}.yaml", "Edited.")
    versions = dict(library.live.versions)
    zen = bundled_copy.root / "personalities" / "zen.yaml"
    zen.write_text(zen.read_text().replace("name:", "nam:", 1))
    assert watcher.check() is True
    assert library.refused and library.held_back == ["calm"]
    assert library.live.flows["after_hours"].description == "Edited."
    assert library.live.flows["calm"].description != "Edited."
    assert library.live.versions["calm"] == versions["calm"]
