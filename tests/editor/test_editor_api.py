"""The flow editor's JSON routes: validation with lines and nodes, saving with comments kept,
revisions and restore, the conflict of two editors, new flows from templates, traffic, a call
from the page, scenarios from the page, and the requests they must refuse."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.editor import TEMPLATES, etag, template_text
from engine.editor.validation import check_text
from tests.editor.conftest import signed_in

Send = Callable[..., Any]


def _line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def _source(editor: Send, flow_id: str) -> dict[str, Any]:
    answer = editor("GET", f"/api/flows/{flow_id}/source")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.get_json()
    return found


def _live_version(app: Flask, flow_id: str) -> str | None:
    version: str | None = app.extensions["phoney"].library.live.versions.get(flow_id)
    return version


def test_validate_gives_each_problem_with_its_line_column_and_node(editor: Send,
                                                                    project: Path) -> None:
    text = (project / "flows" / "receptionist.yaml").read_text()
    broken = text.replace("next: assist", "next: asist", 1)
    answer = editor("POST", "/api/flows/validate", json={"yaml": broken})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["ok"] is False and body["errors"] == 1
    [problem] = body["problems"]
    assert problem["line"] == _line_of(broken, "next: asist")
    assert problem["column"] == 11
    assert problem["node"] == "greet"
    assert "unknown node 'asist'" in problem["message"]
    assert problem["path"] == "flows/receptionist.yaml"
    # The graph is still drawn from the draft, the edge to nowhere included.
    assert {"greet", "assist"} <= {node["id"] for node in body["graph"]["nodes"]}
    clean = editor("POST", "/api/flows/validate", json={"yaml": text}).get_json()
    assert clean["ok"] is True and clean["problems"] == [] and clean["data"]["flow"] == \
        "receptionist"


def test_validate_reports_a_yaml_syntax_error_where_it_is(editor: Send) -> None:
    body = editor("POST", "/api/flows/validate",
                  json={"yaml": "flow: x\nnodes:\n  a: [1,\n", "flow": "x"}).get_json()
    assert body["ok"] is False
    assert body["problems"][0]["line"] >= 3 and "YAML" in body["problems"][0]["message"]
    assert body["data"] is None and body["graph"] is None


def test_validate_finds_a_number_another_flow_already_has(editor: Send) -> None:
    text = template_text("greeting", "side_line").replace(
        "language: en-US", 'language: en-US\nnumbers: ["+15550001000"]')
    body = editor("POST", "/api/flows/validate", json={"yaml": text}).get_json()
    assert not body["ok"]
    assert any("+15550001000" in problem["message"] for problem in body["problems"])


def test_every_template_is_a_valid_flow(project: Path) -> None:
    for template in TEMPLATES:
        checked = check_text(project, "fresh", template_text(template, "fresh"))
        assert checked.ok, [item.as_json() for item in checked.problems]


def test_a_save_keeps_comments_records_a_revision_and_goes_live(app: Flask, editor: Send,
                                                                 project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    before = _live_version(app, "receptionist")
    source = _source(editor, "receptionist")
    assert source["yaml"] == original and source["etag"] == etag(original)
    data = editor("POST", "/api/flows/validate", json={"yaml": original}).get_json()["data"]
    changed = copy.deepcopy(data)
    changed["nodes"]["greet"]["text"] = "Hello from the editor."
    applied = editor("POST", "/api/flows/apply",
                     json={"yaml": original, "data": changed}).get_json()
    assert applied["ok"] is True
    answer = editor("PUT", "/api/flows/receptionist",
                    json={"yaml": applied["yaml"], "base": source["etag"]})
    assert answer.status_code == 200, answer.get_json()
    saved = path.read_text()
    assert "Hello from the editor." in saved
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in saved.splitlines() for line in comments)
    # Only the changed line differs: key order, spacing and the other nodes as written.
    assert [line for line in saved.splitlines() if line not in original.splitlines()] == \
        ["    text: Hello from the editor."]
    assert answer.get_json()["etag"] == etag(saved)
    assert _live_version(app, "receptionist") not in (None, before)
    assert answer.get_json()["live_version"] == _live_version(app, "receptionist")

    history = editor("GET", "/api/flows/receptionist/revisions").get_json()["revisions"]
    assert [item["number"] for item in history] == [2, 1]
    assert history[0]["who"] == "admin" and history[0]["note"] == "saved"
    assert "+    text: Hello from the editor." in history[0]["diff"]
    assert history[1]["who"] == "disk" and "text" not in history[1]


def test_restore_puts_a_revision_back_as_a_new_one(app: Flask, editor: Send,
                                                   project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    first = _live_version(app, "receptionist")
    edited = original.replace("Goodbye!", "See you soon!")
    assert editor("PUT", "/api/flows/receptionist",
                  json={"yaml": edited, "base": etag(original)}).status_code == 200
    assert _live_version(app, "receptionist") != first
    answer = editor("POST", "/api/flows/receptionist/revisions/1/restore", json={})
    assert answer.status_code == 200, answer.get_json()
    assert path.read_text() == original
    assert _live_version(app, "receptionist") == first
    history = editor("GET", "/api/flows/receptionist/revisions?text=1").get_json()["revisions"]
    assert history[0]["note"] == "restored revision 1" and history[0]["text"] == original
    assert "-    text: Thanks for calling {{ vars.business }}. See you soon!" in \
        history[0]["diff"]
    missing = editor("POST", "/api/flows/receptionist/revisions/99/restore", json={})
    assert missing.status_code == 404


def test_the_second_of_two_editors_gets_409_with_what_changed_and_loses_nothing(
        app: Flask, editor: Send, project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    other = app.test_client()
    other_token = signed_in(other)
    base = etag(original)
    mine = original.replace("Goodbye!", "Bye for now!")
    theirs = original.replace("Connecting you to the front desk now.", "Putting you through.")
    assert editor("PUT", "/api/flows/receptionist",
                  json={"yaml": mine, "base": base}).status_code == 200
    late = other.put("/api/flows/receptionist", json={"yaml": theirs, "base": base},
                     headers={"X-CSRF-Token": other_token})
    assert late.status_code == 409
    body = late.get_json()
    assert path.read_text() == mine  # the first save stands, the second wrote nothing
    assert body["current"] == {"yaml": mine, "etag": etag(mine)}
    assert body["base_yaml"] == original
    assert "+    text: Thanks for calling {{ vars.business }}. Bye for now!" in body["changes"]
    assert [item["note"] for item in body["since"]] == ["saved"]
    assert "Putting you through." in body["yours"]
    # Saved again on the new version, both changes are kept.
    merged = mine.replace("Connecting you to the front desk now.", "Putting you through.")
    again = other.put("/api/flows/receptionist", json={"yaml": merged},
                      headers={"X-CSRF-Token": other_token, "If-Match": f'"{etag(mine)}"'})
    assert again.status_code == 200
    assert path.read_text() == merged


def test_a_file_changed_on_disk_is_kept_as_a_revision_before_the_next_save(
        editor: Send, project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    first = original.replace("Goodbye!", "Bye!")
    assert editor("PUT", "/api/flows/receptionist",
                  json={"yaml": first, "base": etag(original)}).status_code == 200
    by_hand = first + "# edited in a text editor\n"
    path.write_text(by_hand)
    second = by_hand.replace("Bye!", "Farewell!")
    assert editor("PUT", "/api/flows/receptionist",
                  json={"yaml": second, "base": etag(by_hand)}).status_code == 200
    history = editor("GET", "/api/flows/receptionist/revisions?text=1").get_json()["revisions"]
    assert [item["note"] for item in history] == ["saved", "changed on disk", "saved",
                                                  "as it was on disk"]
    assert history[1]["text"] == by_hand


def test_a_flow_with_errors_or_bad_yaml_is_not_written(editor: Send, project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    for text in (original.replace("next: assist", "next: nowhere", 1), "flow: [\n"):
        answer = editor("PUT", "/api/flows/receptionist",
                        json={"yaml": text, "base": etag(original)})
        assert answer.status_code == 422
        assert answer.get_json()["problems"]
        assert path.read_text() == original
    assert editor("GET", "/api/flows/receptionist/revisions").get_json()["revisions"] == []


def test_a_new_flow_from_a_template(app: Flask, editor: Send, project: Path) -> None:
    templates = editor("GET", "/api/flows/templates").get_json()["templates"]
    assert {item["id"] for item in templates} == set(TEMPLATES)
    answer = editor("POST", "/api/flows", json={"flow": "side_line", "template": "menu"})
    assert answer.status_code == 201, answer.get_json()
    text = (project / "flows" / "side_line.yaml").read_text()
    assert text == template_text("menu", "side_line") and "# anything else" in text
    assert _live_version(app, "side_line") is not None
    again = editor("POST", "/api/flows", json={"flow": "side_line", "template": "menu"})
    assert again.status_code == 409
    unknown = editor("POST", "/api/flows", json={"flow": "other_line", "template": "nope"})
    assert unknown.status_code == 400 and not (project / "flows" / "other_line.yaml").exists()
    history = editor("GET", "/api/flows/side_line/revisions").get_json()["revisions"]
    assert [item["note"] for item in history] == ["made from the menu template"]


@pytest.mark.parametrize("flow_id", ["..%2F..%2Fetc%2Fpasswd", "Receptionist", "a.b", ".revisions",
                                     "x" * 80, "..", "%2e%2e"])
def test_ids_that_are_not_flow_ids_are_refused(editor: Send, project: Path,
                                               flow_id: str) -> None:
    before = sorted(path.name for path in (project).rglob("*"))
    for method, url in (("GET", f"/api/flows/{flow_id}/source"),
                        ("PUT", f"/api/flows/{flow_id}"),
                        ("GET", f"/api/flows/{flow_id}/revisions"),
                        ("POST", f"/api/flows/{flow_id}/revisions/1/restore"),
                        ("GET", f"/api/flows/{flow_id}/traffic")):
        answer = editor(method, url, json={"yaml": "flow: x\n", "base": "0"})
        assert answer.status_code in (400, 404), (method, url, answer.status_code)
    made = editor("POST", "/api/flows", json={"flow": flow_id.replace("%2F", "/")})
    assert made.status_code == 400
    assert sorted(path.name for path in (project).rglob("*")) == before


def test_an_unknown_flow_is_404(editor: Send) -> None:
    assert editor("GET", "/api/flows/nowhere/source").status_code == 404
    assert editor("PUT", "/api/flows/nowhere",
                  json={"yaml": template_text("greeting", "nowhere"),
                        "base": "0"}).status_code == 404
    assert editor("GET", "/api/flows/nowhere/revisions").status_code == 404
    assert editor("GET", "/api/flows/nowhere/traffic").status_code == 404
    assert editor("GET", "/flows/nowhere").status_code == 404


def test_bodies_that_are_too_big_or_not_json_are_refused(editor: Send, project: Path) -> None:
    original = (project / "flows" / "receptionist.yaml").read_text()
    huge = original + "#" * (300 * 1024) + "\n"
    answer = editor("PUT", "/api/flows/receptionist", json={"yaml": huge, "base": etag(original)})
    assert answer.status_code == 413
    assert editor("POST", "/api/flows/validate", json={"yaml": huge}).status_code == 413
    assert editor("POST", "/api/flows/validate", data="yaml", content_type="text/plain"
                  ).status_code == 400
    assert editor("POST", "/api/flows/validate", json={"yaml": 3}).status_code == 400
    assert editor("PUT", "/api/flows/receptionist", json={"yaml": original}).status_code == 400
    assert (project / "flows" / "receptionist.yaml").read_text() == original


STATE_CHANGING = [("POST", "/api/flows/validate"), ("POST", "/api/flows/apply"),
                  ("PUT", "/api/flows/receptionist"), ("POST", "/api/flows"),
                  ("POST", "/api/flows/receptionist/revisions/1/restore"),
                  ("POST", "/api/flows/receptionist/calls"),
                  ("POST", "/api/flows/receptionist/scenarios")]
READS = ["/api/flows/receptionist/source", "/api/flows/receptionist/revisions",
         "/api/flows/receptionist/traffic", "/api/flows/schema", "/api/flows/templates"]


def test_requests_without_a_session_or_without_the_csrf_token_are_refused(
        app: Flask, project: Path) -> None:
    original = (project / "flows" / "receptionist.yaml").read_text()
    body = {"yaml": original.replace("Goodbye!", "Nope!"), "base": etag(original),
            "flow": "intruder", "data": {}}
    anonymous = app.test_client()
    for method, url in STATE_CHANGING:
        assert anonymous.open(url, method=method, json=body).status_code == 401, url
    for url in READS:
        assert anonymous.get(url).status_code == 401, url
    assert anonymous.get("/flows").status_code == 302
    assert anonymous.get("/flows/receptionist").status_code == 302
    member = app.test_client()
    signed_in(member)
    for method, url in STATE_CHANGING:
        assert member.open(url, method=method, json=body).status_code == 403, url
        assert member.open(url, method=method, json=body,
                           headers={"X-CSRF-Token": "forged"}).status_code == 403, url
    assert (project / "flows" / "receptionist.yaml").read_text() == original
    assert not (project / "flows" / "intruder.yaml").exists()


def test_a_call_from_the_page_runs_through_the_webhooks_and_keeps_its_version(
        app: Flask, editor: Send, project: Path) -> None:
    assert editor("POST", "/api/flows",
                  json={"flow": "side_line", "template": "menu"}).status_code == 201
    rung = editor("POST", "/api/flows/side_line/calls", json={})
    assert rung.status_code == 201, rung.get_json()
    call = rung.get_json()
    assert call["waiting"] == "gather" and "speech" in call["listens"]
    assert call["node"] == "menu" and "Say sales or support" in " ".join(call["heard"])
    # A save while the call is in progress: the call finishes on the version it started on.
    text = (project / "flows" / "side_line.yaml").read_text()
    changed = text.replace("Our sales team will call you back today.", "Sales moved.")
    assert editor("PUT", "/api/flows/side_line",
                  json={"yaml": changed, "base": etag(text)}).status_code == 200
    moved = editor("POST", f"/api/flows/side_line/calls/{call['call_sid']}",
                   json={"action": "say", "text": "sales please"}).get_json()
    assert "Our sales team will call you back today." in moved["heard"]
    assert moved["ended"] is True and moved["path"][:2] == ["menu", "sales"]
    summary = app.extensions["phoney"].store.get_call(call["call_sid"])
    assert summary is not None and summary.ended_at is not None
    fresh = editor("POST", "/api/flows/side_line/calls", json={}).get_json()
    during = editor("GET", "/api/flows/side_line/traffic?since=1h&tests=1").get_json()
    assert during["nodes"]["menu"]["live"] == 1  # where the call is now
    assert during["nodes"]["menu"]["dropped"] == 0
    pressed = editor("POST", f"/api/flows/side_line/calls/{fresh['call_sid']}",
                     json={"action": "press", "digits": "1"}).get_json()
    assert "Sales moved." in pressed["heard"]
    wrong = editor("POST", f"/api/flows/side_line/calls/{fresh['call_sid']}",
                   json={"action": "press", "digits": "1"})
    assert wrong.status_code == 409  # it ended: nothing waits for digits
    unknown = editor("POST", "/api/flows/side_line/calls/CA" + "0" * 32,
                     json={"action": "silence"})
    assert unknown.status_code == 404

    traffic = editor("GET", "/api/flows/side_line/traffic?since=1h&tests=1").get_json()
    assert traffic["calls"] == 2
    assert traffic["edges"]["menu/route/0"] == 2
    assert traffic["edges"]["sales/next"] == 2
    assert traffic["edges"]["menu/next"] == 0
    assert traffic["nodes"]["goodbye"]["ended"] == 2
    assert traffic["nodes"]["menu"]["entered"] == 2
    real = editor("GET", "/api/flows/side_line/traffic?since=1h").get_json()
    assert real["calls"] == 0  # the page's calls are test calls


def test_traffic_counts_drop_offs_where_callers_hung_up(app: Flask, editor: Send) -> None:
    assert editor("POST", "/api/flows",
                  json={"flow": "side_line", "template": "menu"}).status_code == 201
    call = editor("POST", "/api/flows/side_line/calls", json={}).get_json()
    hung = editor("POST", f"/api/flows/side_line/calls/{call['call_sid']}",
                  json={"action": "hangup"}).get_json()
    assert hung["ended"] is True
    traffic = editor("GET", "/api/flows/side_line/traffic?tests=true&since=2000-01-01T00:00:00Z"
                     ).get_json()
    assert traffic["nodes"]["menu"]["dropped"] == 1 and traffic["nodes"]["menu"]["ended"] == 1
    assert traffic["nodes"]["goodbye"]["ended"] == 0
    assert editor("GET", "/api/flows/side_line/traffic?since=yesterday").status_code == 400


def test_the_flows_scenarios_run_from_the_page_with_coverage(editor: Send) -> None:
    answer = editor("POST", "/api/flows/after_hours/scenarios", json={})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["results"] and body["failed"] == 0
    assert all(result["passed"] for result in body["results"])
    assert body["coverage"]["text"] == "100%" and body["coverage"]["never"] == []
    none = editor("POST", "/api/flows", json={"flow": "side_line", "template": "greeting"})
    assert none.status_code == 201
    empty = editor("POST", "/api/flows/side_line/scenarios", json={}).get_json()
    assert empty["results"] == [] and empty["coverage"]["percent"] == 0.0


def test_the_pages_and_the_schema(editor: Send) -> None:
    listing = editor("GET", "/flows").get_data(as_text=True)
    assert "receptionist" in listing and "after_hours" in listing
    page = editor("GET", "/flows/receptionist").get_data(as_text=True)
    assert "editor.js" in page and '"flow": "receptionist"' in page
    assert '"can_edit": true' in page and '"can_call": true' in page
    schema = editor("GET", "/api/flows/schema").get_json()
    assert "say_node" in schema["$defs"]


def test_a_conflict_on_a_file_never_saved_here_says_what_changed_from_the_text_sent(
        editor: Send, project: Path) -> None:
    path = project / "flows" / "receptionist.yaml"
    original = path.read_text()
    theirs = original.replace("Goodbye!", "So long!")
    path.write_text(theirs)  # changed on disk: no revision holds the text the page started from
    mine = original.replace("Connecting you to the front desk now.", "One moment.")
    late = editor("PUT", "/api/flows/receptionist",
                  json={"yaml": mine, "base": etag(original), "base_yaml": original})
    assert late.status_code == 409
    body = late.get_json()
    assert body["base_yaml"] == original and "+    text: Thanks for calling {{ vars.business }}. " \
        "So long!" in body["changes"]
    # A base_yaml that is not the text of `base` is not taken for it.
    forged = editor("PUT", "/api/flows/receptionist",
                    json={"yaml": mine, "base": etag(original), "base_yaml": "flow: x\n"})
    assert forged.status_code == 409 and forged.get_json()["changes"] is None
    assert path.read_text() == theirs


def test_a_call_from_the_page_can_be_moved_by_another_server_process(
        app: Flask, make_app: Callable[..., Flask], editor: Send) -> None:
    assert editor("POST", "/api/flows",
                  json={"flow": "side_line", "template": "menu"}).status_code == 201
    call = editor("POST", "/api/flows/side_line/calls", json={}).get_json()
    other = make_app()  # a second process on the same store and project
    client = other.test_client()
    token = signed_in(client)
    moved = client.post(f"/api/flows/side_line/calls/{call['call_sid']}",
                        json={"action": "press", "digits": "1"},
                        headers={"X-CSRF-Token": token})
    assert moved.status_code == 200, moved.get_json()
    body = moved.get_json()
    assert "Our sales team will call you back today." in body["heard"] and body["ended"]
    # The first process sees the call where the second one left it: over.
    again = editor("POST", f"/api/flows/side_line/calls/{call['call_sid']}",
                   json={"action": "silence"})
    assert again.status_code == 409
    assert app.extensions["phoney"].store.get_call(call["call_sid"]).ended_at is not None


def test_a_viewer_reads_and_checks_flows_but_saves_nothing(app: Flask, project: Path) -> None:
    client = app.test_client()
    token = signed_in(client)
    with client.session_transaction() as state:
        state["role"] = "viewer"
    headers = {"X-CSRF-Token": token}
    original = (project / "flows" / "receptionist.yaml").read_text()
    page = client.get("/flows/receptionist").get_data(as_text=True)
    assert '"can_edit": false' in page and '"can_call": false' in page
    assert 'id="new-flow"' not in client.get("/flows").get_data(as_text=True)
    assert client.post("/api/flows/validate", json={"yaml": original},
                       headers=headers).status_code == 200
    changed = original.replace("Goodbye!", "Bye!")
    for method, url, body in (
            ("PUT", "/api/flows/receptionist", {"yaml": changed, "base": etag(original)}),
            ("POST", "/api/flows", {"flow": "side_line", "template": "menu"}),
            ("POST", "/api/flows/receptionist/revisions/1/restore", {}),
            ("POST", "/api/flows/receptionist/calls", {})):
        assert client.open(url, method=method, json=body, headers=headers).status_code == 403
    assert (project / "flows" / "receptionist.yaml").read_text() == original
    assert not (project / "flows" / "side_line.yaml").exists()


def test_a_problem_is_on_the_node_it_lies_in_and_on_no_node_outside_them(project: Path) -> None:
    doubled = template_text("menu", "shop").replace("  sales:\n    type: say\n",
                                                    "  sales:\n    type: say\n    type: say\n")
    [problem] = check_text(project, "shop", doubled).problems
    assert problem.node == "sales" and "duplicate key 'type'" in problem.problem.message
    assert problem.problem.line == _line_of(doubled, "  sales:") + 2
    misnamed = template_text("menu", "shop").replace("start: menu", "start: menuu")
    [problem] = check_text(project, "shop", misnamed).problems
    assert problem.node is None and problem.problem.line == _line_of(misnamed, "start: menuu")
