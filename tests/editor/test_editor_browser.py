"""The flow editor in Debian's Chromium: a flow built from a template, a node added from the
palette and connected by dragging, a route broken and its problem seen on the node and its line,
fixed and saved (the file on disk keeps its comments), called in the page through the webhooks,
and the previous revision restored.

`PHONEY_UPDATE_SCREENSHOT=1` also writes the editor to docs/flow-editor.png; otherwise the
screenshot goes to the test's tmp_path only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from engine.editor import template_text
from engine.flows.schema import load_schema
from tests.dashboard.conftest import (  # noqa: F401  (fixtures used by name)
    LiveServer,
    _clean_environment,
    make_dashboard_app,
    twilio_api,
)
from tests.dashboard.test_dashboard_browser import ROOT, browser_page, sign_in

SCREENSHOT = ROOT / "docs" / "flow-editor.png"
FLOW = "pizza_line"


def _center(page: Any, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _drag_connect(page: Any, source: str, target: str, kind: str) -> None:
    """Drag from node `source` to node `target` and choose `kind` in the menu that opens."""
    x, y = _center(page, f"g[data-node={source}] rect")
    to_x, to_y = _center(page, f"g[data-node={target}] rect")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move((x + to_x) / 2, (y + to_y) / 2, steps=5)
    page.mouse.move(to_x, to_y, steps=5)
    page.mouse.up()
    page.click(f"#connect-menu button[data-kind='{kind}']")


def _click_edge(page: Any, edge_id: str) -> None:
    """Click on the drawn line of an edge, a third of the way along (its label sits midway)."""
    point = page.evaluate("""(id) => {
        const path = document.querySelector(`path[data-edge-id="${id}"]`);
        const at = path.getPointAtLength(path.getTotalLength() / 3);
        const screen = new DOMPoint(at.x, at.y).matrixTransform(path.getScreenCTM());
        return {x: screen.x, y: screen.y};
    }""", edge_id)
    page.mouse.click(point["x"], point["y"])


def _wait_state(page: Any, condition: str) -> None:
    """Wait until `condition` (JavaScript over `s`, the editor's state) holds."""
    page.wait_for_function(f"() => {{ const s = window.PhoneyEditor.state; return {condition}; }}")


def _idle(page: Any) -> None:
    page.wait_for_selector("#editor-status:not([data-state=busy])")


def test_build_break_fix_save_call_and_restore_a_flow(
        chromium: Any, make_dashboard_app: Callable[..., Flask],  # noqa: F811
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, project / folder)
    app = make_dashboard_app(PROJECT_ROOT=str(project), SPEECH_WARMUP=False)
    path = project / "flows" / f"{FLOW}.yaml"
    with LiveServer(app) as server, browser_page(chromium, server) as page:
        sign_in(page, server)

        # A new flow from a template.
        page.goto(f"{server.url}/flows")
        page.fill("#new-flow-id", FLOW)
        page.select_option("#new-flow-template", "greeting")
        page.click("#new-flow-create")
        page.wait_for_url(f"{server.url}/flows/{FLOW}")
        page.wait_for_selector("#editor-status[data-state=ok]")
        page.wait_for_selector("g[data-node=greet]")
        assert path.read_text() == template_text("greeting", FLOW)

        # A gather node from the palette, connected by dragging: greet -> menu -> goodbye.
        page.once("dialog", lambda dialog: dialog.accept("menu"))
        page.click("#palette button[data-type=gather]")
        page.wait_for_selector("g[data-node=menu]")
        _idle(page)
        _drag_connect(page, "greet", "menu", "next")
        _wait_state(page, "s.data.nodes.greet.next === 'menu'")
        _idle(page)
        _drag_connect(page, "menu", "goodbye", "route")
        _wait_state(page, "(s.data.nodes.menu.routes || []).length === 1")
        _idle(page)
        _drag_connect(page, "menu", "goodbye", "next")
        _wait_state(page, "s.data.nodes.menu.next === 'goodbye'")
        _idle(page)
        # Still a dead end for a caller who says nothing: shown on the node.
        page.wait_for_selector("g[data-node=menu].has-error")
        _drag_connect(page, "menu", "goodbye", "no_input")
        _wait_state(page, "s.problems.length === 0 && !!s.data.nodes.menu.no_input")
        page.wait_for_selector("#editor-status[data-state=dirty]")
        assert page.locator("g.has-error").count() == 0
        assert "when: said_any('goodbye')" in page.input_value("#yaml")

        # Break the route in the inspector: the problem shows on the node and on its line.
        page.click("g[data-node=menu] rect")
        page.wait_for_selector("#inspector-title:has-text('Node menu')")
        routes = json.loads(page.input_value("#inspector [data-field=routes]"))
        routes[0]["to"] = "nowhere"
        page.fill("#inspector [data-field=routes]", json.dumps(routes))
        page.press("#inspector [data-field=routes]", "Tab")
        page.wait_for_selector("g[data-node=menu].has-error")
        problem = page.text_content("#problems li.problem.error") or ""
        assert "unknown node 'nowhere'" in problem and "[menu]" in problem
        broken_line = page.input_value("#yaml").splitlines().index("        to: nowhere") + 1
        page.wait_for_selector(f"#yaml-gutter .line.error[data-line='{broken_line}']")
        assert page.is_disabled("#save")

        # Fixed with Undo, then saved.
        page.click("#undo")
        page.wait_for_selector("g[data-node=menu]:not(.has-error)")
        _wait_state(page, "s.problems.length === 0")
        page.click("#save")
        page.wait_for_selector("#editor-status:has-text('saved: revision 2')")
        saved = path.read_text()
        assert "# A greeting, then goodbye. Add nodes from the palette and connect them." in saved
        assert "text: Thanks for calling.   # what the caller hears first" in saved
        assert "# the personalities say this name" in saved
        assert "      - when: said_any('goodbye')\n        to: goodbye" in saved
        assert saved == page.input_value("#yaml")

        # Call it in the page: through the webhooks, on the version just saved.
        page.click(".tab[data-tab=call]")
        page.click("#call-ring")
        page.wait_for_selector("#call-log:has-text('waiting for gather')")
        assert "agent: Thanks for calling." in (page.text_content("#call-log") or "")
        page.fill("#call-input", "goodbye")
        page.press("#call-input", "Enter")
        page.wait_for_selector("#call-log:has-text('the call ended')")
        log = page.text_content("#call-log") or ""
        assert "caller: goodbye" in log and "agent: Goodbye!" in log
        page.wait_for_selector("g[data-node=goodbye].current")

        # The call's traffic on the graph: counts on the edges it took, none on the others.
        page.check("#traffic-tests")
        page.select_option("#traffic-period", "1h")
        page.wait_for_selector("#traffic-summary:has-text('1 call')")
        assert page.text_content("text[data-edge-count='menu/route/0']") == "1"
        assert page.text_content("text[data-edge-count='greet/next']") == "1"
        assert page.text_content("text[data-edge-count='menu/next']") == "0"
        _screenshot(page, tmp_path)

        # Restore the revision before the save: the template's text, on disk and in the page.
        page.click(".tab[data-tab=revisions]")
        page.wait_for_selector("#revisions li[data-revision='2']")
        page.click("#revisions li[data-revision='1'] button[data-restore='1']")
        page.wait_for_selector("#editor-status:has-text('restored revision 1 as revision 3')")
        assert path.read_text() == template_text("greeting", FLOW)
        assert page.input_value("#yaml") == template_text("greeting", FLOW)
        page.wait_for_selector("#revisions li[data-revision='3']")
        assert page.locator("g[data-node=menu]").count() == 0


def _screenshot(page: Any, tmp_path: Path) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "flow-editor.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"editor screenshot: {shot}")
    if os.environ.get("PHONEY_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT)
        print(f"updated {SCREENSHOT.relative_to(ROOT)}")


def test_edit_an_edge_rename_a_node_undo_and_run_the_scenarios(
        chromium: Any, make_dashboard_app: Callable[..., Flask],  # noqa: F811
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, project / folder)
    original = (project / "flows" / "after_hours.yaml").read_text()
    app = make_dashboard_app(PROJECT_ROOT=str(project), SPEECH_WARMUP=False)
    with LiveServer(app) as server, browser_page(chromium, server) as page:
        sign_in(page, server)
        page.goto(f"{server.url}/flows/after_hours")
        page.wait_for_selector("#editor-status[data-state=ok]")

        # An edge's own fields: the first route's condition.
        _click_edge(page, "check_hours/route/0")
        page.wait_for_selector("#inspector-title:has-text('Edge')")
        page.fill("#inspector [data-field=edge-when]", "vars.closed_today == true")
        page.press("#inspector [data-field=edge-when]", "Tab")
        _wait_state(page, "s.data.nodes.check_hours.routes[0].when === "
                          "'vars.closed_today == true'")
        assert "      - when: vars.closed_today == true\n" in page.input_value("#yaml")

        # A renamed node is renamed wherever the flow names it, in its place in the file.
        page.click("g[data-node=office_busy] rect")
        page.fill("#inspector [data-field=id]", "office_engaged")
        page.press("#inspector [data-field=id]", "Tab")
        _wait_state(page, "!!s.data.nodes.office_engaged && !s.data.nodes.office_busy")
        page.wait_for_selector("g[data-node=office_engaged]")
        text = page.input_value("#yaml")
        assert "    on_fail: office_engaged\n" in text and "  office_engaged:\n" in text
        assert text.index("  office_engaged:") < text.index("  closed:")
        _wait_state(page, "s.problems.length === 0")

        # The palette holds every node type of the schema; a new node of a type without a
        # starting text gets the required fields, and the inspector the type's own fields.
        types = load_schema("flow")["$defs"]["node"]["properties"]["type"]["enum"]
        assert [page.get_attribute(f"#palette button >> nth={index}", "data-type")
                for index in range(page.locator("#palette button").count())] == types
        page.once("dialog", lambda dialog: dialog.accept("lookup"))
        page.click("#palette button[data-type=http]")
        page.wait_for_selector("g[data-node=lookup]")
        _wait_state(page, "s.data.nodes.lookup && s.data.nodes.lookup.request && "
                          "s.data.nodes.lookup.request.url === 'https://example.com/'")
        page.wait_for_selector("#inspector [data-field=say_while_waiting]")
        page.click("#undo")
        page.wait_for_selector("g[data-node=lookup]", state="detached")

        # Delete with the keyboard: the node goes, and the edges that led to it are problems
        # on the nodes they leave from.
        page.click("g[data-node=voicemail] rect")
        page.wait_for_selector("#inspector-title:has-text('Node voicemail')")
        page.keyboard.press("Delete")
        page.wait_for_selector("g[data-node=voicemail]", state="detached")
        page.wait_for_selector("g[data-node=closed].has-error")
        assert "unknown node 'voicemail'" in (page.text_content("#problems") or "")
        page.click("#undo")
        page.wait_for_selector("g[data-node=voicemail]")
        _wait_state(page, "s.problems.length === 0")

        # Undo, twice: the text as it was; nothing was saved.
        page.click("#undo")
        page.wait_for_selector("g[data-node=office_busy]")
        page.click("#undo")
        _wait_state(page, "s.data.nodes.check_hours.routes[0].when === 'vars.closed_today'")
        assert page.input_value("#yaml") == original
        page.wait_for_selector("#editor-status[data-state=ok]")
        assert (project / "flows" / "after_hours.yaml").read_text() == original

        # Saved meanwhile by someone else (here: on disk): the save is refused and says what
        # changed; kept on top of their version, it saves, and theirs stays a revision.
        path = project / "flows" / "after_hours.yaml"
        theirs = original.replace("Goodbye.", "Bye now.")
        assert theirs != original
        path.write_text(theirs)
        page.fill("#yaml", original + "# checked by the night shift\n")
        page.wait_for_selector("#editor-status[data-state=dirty]")
        page.keyboard.press("Control+s")
        page.wait_for_selector("#conflict:not([hidden])")
        assert "+    text: Thank you for calling {{ vars.business }}. Bye now." in (
            page.text_content("#conflict-diff") or "")
        assert path.read_text() == theirs
        page.click("#conflict-rebase")
        page.click("#save")
        page.wait_for_selector("#editor-status:has-text('saved: revision')")
        assert path.read_text() == original + "# checked by the night shift\n"
        page.click(".tab[data-tab=revisions]")
        page.wait_for_selector("#revisions li[data-revision='2']")
        assert "as it was on disk" in (page.text_content("#revisions li[data-revision='1']") or "")
        page.click("#revisions li[data-revision='1'] button.link")  # its diff: their version
        assert "+    text: Thank you for calling {{ vars.business }}. Bye now." in (
            page.text_content("#revisions li[data-revision='1'] pre.diff") or "")
        page.fill("#yaml", original)
        page.click("#save")
        page.wait_for_selector("#editor-status:has-text('saved: revision 3')")

        # The flow's scenarios, run from the page, with their coverage on the graph.
        page.click(".tab[data-tab=scenarios]")
        page.click("#scenarios-run")
        page.wait_for_selector("#scenarios-summary:has-text('edge coverage 100%')",
                               timeout=120_000)
        assert "0 failed" in (page.text_content("#scenarios-summary") or "")
        assert "PASS after_hours:" in (page.text_content("#scenarios-log") or "")
        page.wait_for_selector("path[data-edge-id='office/transfer_failed'].visited")
