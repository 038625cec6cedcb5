"""`/api/flows`: the loaded set of flows (and any refused edit), and each flow's graph.

`GET /api/flows/<id>/graph?format=mermaid|dot|json` draws the live flow, or with `&version=`
the version a call ran on.

For the dashboard and for people editing flows with hot reload on: after saving a file, this
says whether the edit went live (a new `loaded_at`, new versions) or was refused, and why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from engine.flows.export import FORMATS, render
from engine.flows.matrix import flow_support
from engine.flows.model import Registry
from engine.web.auth import login_required
from engine.web.services import services

flows_api = Blueprint("flows_api", __name__)

_MIMETYPES = {"mermaid": "text/plain", "dot": "text/vnd.graphviz", "json": "application/json"}


def _iso(moment: float | None) -> str | None:
    return datetime.fromtimestamp(moment, UTC).isoformat() if moment is not None else None


def _flows(registry: Registry) -> list[dict[str, Any]]:
    return [{"id": flow.id, "description": flow.description,
             "version": registry.versions.get(flow.id), "numbers": list(flow.numbers),
             "nodes": len(flow.nodes), "edges": len(flow.edges), "start": flow.start,
             "personality": flow.personality,
             "personalities": list(flow.personalities_used()), "source": flow.source,
             "languages": [row.as_json() for row in flow_support(flow, registry)]}
            for flow in sorted(registry.flows.values(), key=lambda flow: flow.id)]


@flows_api.get("/api/flows")
@login_required
def list_flows() -> Response:
    """GET /api/flows: the live flows and personalities, when they loaded, and any refused edit."""
    library = services().library
    registry = library.live if library.ok else None
    refused = None
    if library.refused:
        refused = {"at": _iso(library.refused_at),
                   "problems": [problem.as_json() | {"text": str(problem)}
                                for problem in library.refused],
                   "held_back": list(library.held_back)}
    return jsonify(
        loaded_at=_iso(library.loaded_at),
        flows=_flows(registry) if registry else [],
        personalities=[{"id": p.id, "name": p.name, "description": p.description,
                        "blend": dict(p.blend)}
                       for p in sorted(registry.personalities.values(), key=lambda p: p.id)]
        if registry else [],
        refused=refused,
    )


@flows_api.get("/api/flows/<flow_id>/graph")
@login_required
def flow_graph(flow_id: str) -> Response | tuple[Response, int]:
    """GET /api/flows/<flow_id>/graph: the flow drawn as mermaid, dot or json (`?version=`)."""
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        return jsonify(error=f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}"), 400
    library, version = services().library, request.args.get("version")
    personalities = None
    if version:  # the version a call ran on, across reloads
        pinned = library.pinned(flow_id, version)
        flow = pinned.flow if pinned else None
        personalities = pinned.registry.personalities if pinned else None
    else:
        flow = library.live.flows.get(flow_id) if library.ok else None
        personalities = library.live.personalities if library.ok else None
    if flow is None:
        known = f" at version {version!r}" if version else ""
        return jsonify(error=f"unknown flow {flow_id!r}{known}"), 404
    return Response(render(flow, fmt, personalities), mimetype=_MIMETYPES[fmt])
