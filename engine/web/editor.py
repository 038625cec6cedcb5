"""The flow editor's pages (login required): `GET /flows` lists the flows and makes new ones
from a template; `GET /flows/<id>` is the visual editor of one flow.

Like the dashboard's pages they are plain templates with plain JavaScript and CSS from
engine/web/static (editor.js, editor.css, and graph.js for the layout): no CDN, no build step.
The page reads its settings from a JSON data block and everything else from the JSON routes of
engine/web/editor_api.py and engine/web/editor_try.py.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from engine.editor import TEMPLATES, FlowFiles, valid_flow_id
from engine.web.auth import login_required
from engine.web.dashboard import page_config, refused_edit
from engine.web.roles import can
from engine.web.services import services

editor = Blueprint("editor", __name__)


def _flows() -> list[dict[str, Any]]:
    svc = services()
    live = svc.library.live if svc.library.ok else None
    found = []
    for flow_id in FlowFiles(svc.settings.project_root).ids():
        flow = live.flows.get(flow_id) if live is not None else None
        found.append({"id": flow_id, "live": flow is not None,
                      "description": flow.description if flow is not None else "",
                      "nodes": len(flow.nodes) if flow is not None else None,
                      "version": live.versions.get(flow_id) if live is not None else None})
    return found


@editor.get("/flows")
@login_required
def flows_page() -> str:
    """GET /flows: every flow file, live or not, and the form for a new one."""
    config = page_config() | {"templates": [{"id": key, "title": title}
                                            for key, (title, _) in TEMPLATES.items()],
                              "can_edit": can("editor")}
    return render_template("flows.html", config=config, flows=_flows(), pusher_js=None,
                           refused=refused_edit())


@editor.get("/flows/<flow_id>")
@login_required
def editor_page(flow_id: str) -> str:
    """GET /flows/<id>: the editor of one flow; 404 when there is no such flow file."""
    if not valid_flow_id(flow_id) or not FlowFiles(
            services().settings.project_root).path(flow_id).exists():
        abort(404)
    # What the page offers follows the role (engine/web/roles.py checks every request anyway).
    config = page_config() | {"flow": flow_id, "can_edit": can("editor"),
                              "can_call": can("operator")}
    return render_template("editor.html", config=config, flow_id=flow_id, pusher_js=None,
                           refused=refused_edit())
