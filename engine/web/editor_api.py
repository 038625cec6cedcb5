"""The flow editor's JSON routes (login required; every POST and PUT also its CSRF token).

- `POST /api/flows/validate` `{yaml, flow?}`: the checks of `flask flows validate` on the text,
  every problem with line, column and node (engine/editor/validation.py), the flow as data
  and its graph.
- `POST /api/flows/apply` `{yaml, data, flow?, renames?}`: the text changed to hold `data` (the
  page's graph and inspector edits; `renames` maps renamed nodes' old ids to new ones), comments
  and untouched entries kept as written, then validated.
- `GET /api/flows/<id>/source`: the file's text and its `etag`, the version a save is based on.
- `PUT /api/flows/<id>` `{yaml, base, base_yaml?}` (or `If-Match: <etag>`; `base_yaml`, the text
  of that version, lets a conflict say what changed when no revision holds it): validate (422),
  write `flows/<id>.yaml` and record a revision, then reload the flows: new calls start on the
  new version, calls in progress finish on the one they started on. 409 when the file changed
  since `base`: nothing written, the answer holds the text on disk, the text the edit was based
  on and the diff between them, and the saves made meanwhile; the edit itself stays in the page.
- `POST /api/flows` `{flow, template}`: a new flow from a template (409 when the id is taken).
- `GET /api/flows/<id>/revisions`: every revision with its diff (`?text=1`: and its text).
- `POST /api/flows/<id>/revisions/<n>/restore` `{base?}`: revision n's text saved as a new
  revision (validated like a save, and refused with 409 when `base` is given and stale).
- `GET /api/flows/<id>/traffic?since=…&tests=1`: per-edge counts and per-node drop-offs of the
  calls since then (an ISO time, epoch seconds, or a period back from now: `1h`, `24h`, `7d`).
- `GET /api/flows/schema`, `GET /api/flows/templates`: what the inspector and the new-flow form
  are built from.

Every body is JSON of at most MAX_BODY bytes (413 above); a flow id that may not name a file
(`..`, `a/b`, upper case) is 400, a flow with no file 404.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request, session

from engine.editor import (
    TEMPLATES,
    Conflict,
    FlowExists,
    FlowFiles,
    RoundTripError,
    UnknownFlow,
    apply_data,
    check_text,
    etag,
    template_text,
    traffic,
    unified,
    valid_flow_id,
)
from engine.flows.schema import load_schema
from engine.web.auth import csrf_protected, login_required
from engine.web.services import services

editor_api = Blueprint("editor_api", __name__)

MAX_BODY = 256 * 1024
"""A flow is a few kilobytes; a body this size is a mistake (or worse)."""

_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400}
DEFAULT_PERIOD = 7 * 86400.0


class BadRequest(ValueError):
    """The request cannot be taken: the message says why (answered 400, or its status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _files() -> FlowFiles:
    return FlowFiles(services().settings.project_root)


def json_body() -> dict[str, Any]:
    """The request's JSON object; BadRequest (413) over MAX_BODY, (400) for anything else."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(f"the body is over {MAX_BODY // 1024} kB", 413)
    data = request.get_data(cache=True)
    if len(data) > MAX_BODY:
        raise BadRequest(f"the body is over {MAX_BODY // 1024} kB", 413)
    found = request.get_json(silent=True)
    if not isinstance(found, dict):
        raise BadRequest("send a JSON object")
    return found


def _text(body: dict[str, Any]) -> str:
    text = body.get("yaml")
    if not isinstance(text, str):
        raise BadRequest("'yaml' must be the flow's YAML text")
    return text


def checked_id(flow_id: str) -> str:
    """`flow_id` when it may name a flow file; BadRequest (400) otherwise."""
    if not valid_flow_id(flow_id):
        raise BadRequest(f"{flow_id[:80]!r} is not a flow id (lower case letters, digits and "
                         "_, starting with a letter)")
    return flow_id


def _draft_id(body: dict[str, Any], data: Any = None) -> str:
    named = body.get("flow")
    if isinstance(named, str) and named:
        return checked_id(named)
    declared = data.get("flow") if isinstance(data, dict) else None
    return declared if isinstance(declared, str) and valid_flow_id(declared) else "draft"


def _who() -> str:
    return str(session.get("user") or "unknown")


def _error(error: BadRequest) -> tuple[Response, int]:
    return jsonify(error=str(error)), error.status


@editor_api.app_errorhandler(BadRequest)  # editor_try.py raises it too
def _bad_request(error: BadRequest) -> tuple[Response, int]:
    return _error(error)


@editor_api.post("/api/flows/validate")
@login_required
@csrf_protected
def validate() -> Response:
    """POST /api/flows/validate: the problems of a flow's text, with lines, columns, nodes."""
    body = json_body()
    text = _text(body)
    checked = check_text(services().settings.project_root, _draft_id(body), text)
    if not body.get("flow") and isinstance(checked.data, dict):
        declared = _draft_id(body, checked.data)
        if declared != "draft":  # checked again under its own name: its id must match
            checked = check_text(services().settings.project_root, declared, text)
    return jsonify(checked.as_json())


@editor_api.post("/api/flows/apply")
@login_required
@csrf_protected
def apply() -> tuple[Response, int] | Response:
    """POST /api/flows/apply: the text changed to hold `data`, comments kept; and its check."""
    body = json_body()
    text, data = _text(body), body.get("data")
    if not isinstance(data, dict):
        raise BadRequest("'data' must be the flow as a JSON object")
    renames = body.get("renames") or {}
    if not isinstance(renames, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in renames.items()):
        raise BadRequest("'renames' must map old node ids to new ones")
    try:
        changed = apply_data(text, data, renames)
    except RoundTripError as error:
        return jsonify(error=f"{error}; fix the YAML first"), 422
    checked = check_text(services().settings.project_root, _draft_id(body, data), changed)
    return jsonify(checked.as_json() | {"yaml": changed})


@editor_api.get("/api/flows/<flow_id>/source")
@login_required
def source(flow_id: str) -> Response:
    """GET /api/flows/<id>/source: the flow file's text and etag."""
    files = _files()
    try:
        text = files.read(checked_id(flow_id))
    except UnknownFlow as error:
        raise BadRequest(str(error), 404) from None
    return jsonify(flow=flow_id, path=f"flows/{flow_id}.yaml", yaml=text, etag=etag(text),
                   revisions=len(files.revisions(flow_id)))


def _conflict(flow_id: str, conflict: Conflict, text: str,
              base_text: str | None = None) -> tuple[Response, int]:
    base = conflict.base if conflict.base is not None else base_text
    name = f"flows/{flow_id}.yaml"
    return jsonify(
        error="the flow was saved by someone else since you opened it; nothing was written. "
              "Your text is unchanged in the editor: compare, then save again on the new "
              "version.",
        current={"yaml": conflict.current, "etag": etag(conflict.current)},
        base_yaml=base,
        changes=unified(base, conflict.current, name) if base is not None else None,
        yours=unified(conflict.current, text, name),
        since=[revision.as_json(text=False) for revision in conflict.since]), 409


def _saved(flow_id: str, revision: Any) -> Response:
    library = services().library
    library.reload()  # now, not at the watcher's next poll: the answer says what is live
    live = library.live.versions.get(flow_id) if library.ok else None
    refused = [problem.as_json() for problem in library.refused]
    return jsonify(flow=flow_id, etag=revision.etag, revision=revision.as_json(text=False),
                   live_version=live, held_back=flow_id in library.held_back,
                   refused=refused)


def _write(flow_id: str, text: str, base: str | None, note: str,
           base_text: str | None = None) -> tuple[Response, int]:
    if len(text.encode("utf-8")) > MAX_BODY:
        raise BadRequest(f"the flow is over {MAX_BODY // 1024} kB", 413)
    checked = check_text(services().settings.project_root, flow_id, text)
    if not checked.ok:
        return jsonify(checked.as_json() | {
            "error": "the flow has errors; nothing was written"}), 422
    try:
        revision = _files().save(flow_id, text, base, _who(), note)
    except Conflict as conflict:
        return _conflict(flow_id, conflict, text, base_text)
    except UnknownFlow as error:
        raise BadRequest(f"{error}; make a new flow with POST /api/flows", 404) from None
    except FlowExists as error:
        raise BadRequest(str(error), 409) from None
    return _saved(flow_id, revision), 200 if base is not None else 201


@editor_api.put("/api/flows/<flow_id>")
@login_required
@csrf_protected
def save(flow_id: str) -> tuple[Response, int]:
    """PUT /api/flows/<id>: validate, write with a revision, reload; 409 on a stale base."""
    checked_id(flow_id)
    body = json_body()
    text = _text(body)
    base = body.get("base") or request.headers.get("If-Match", "").strip('"') or None
    if not isinstance(base, str):
        raise BadRequest("'base' must be the etag the edit was based on (GET .../source)")
    if not _files().path(flow_id).exists():
        raise BadRequest(f"no flow {flow_id!r}; make a new flow with POST /api/flows", 404)
    # The text the edit started from, which the page holds: what a conflict's `changes` are
    # measured from when no revision has it (a file never saved from the editor before).
    base_text = body.get("base_yaml")
    known = base_text if isinstance(base_text, str) and etag(base_text) == base else None
    return _write(flow_id, text, base, "saved", known)


@editor_api.post("/api/flows")
@login_required
@csrf_protected
def create() -> tuple[Response, int]:
    """POST /api/flows: a new flow `{flow, template}` from one of the templates."""
    body = json_body()
    flow_id = body.get("flow")
    if not isinstance(flow_id, str):
        raise BadRequest("'flow' must be the new flow's id")
    checked_id(flow_id)
    template = body.get("template", "greeting")
    if template not in TEMPLATES:
        raise BadRequest(f"unknown template {template!r}; use one of: {', '.join(TEMPLATES)}")
    if _files().path(flow_id).exists():
        raise BadRequest(f"flow {flow_id!r} already exists", 409)
    return _write(flow_id, template_text(template, flow_id), None,
                  f"made from the {template} template")


@editor_api.get("/api/flows/<flow_id>/revisions")
@login_required
def revisions(flow_id: str) -> Response:
    """GET /api/flows/<id>/revisions: newest first, each with who, when, note and diff."""
    files = _files()
    try:
        current = files.read(checked_id(flow_id))
    except UnknownFlow as error:
        raise BadRequest(str(error), 404) from None
    with_text = request.args.get("text") in ("1", "true")
    found = [revision.as_json(text=with_text) for revision in reversed(files.revisions(flow_id))]
    return jsonify(flow=flow_id, etag=etag(current), revisions=found)


@editor_api.post("/api/flows/<flow_id>/revisions/<int:number>/restore")
@login_required
@csrf_protected
def restore(flow_id: str, number: int) -> tuple[Response, int]:
    """POST /api/flows/<id>/revisions/<n>/restore: revision n's text, saved as a new one."""
    files = _files()
    checked_id(flow_id)
    body = json_body() if request.get_data(cache=True) else {}
    try:
        current = files.read(flow_id)
        revision = files.revision(flow_id, number)
    except UnknownFlow as error:
        raise BadRequest(str(error), 404) from None
    base = body.get("base") or etag(current)
    if not isinstance(base, str):
        raise BadRequest("'base' must be the etag the restore was based on")
    return _write(flow_id, revision.text, base, f"restored revision {number}")


def parse_since(value: str | None, now: float) -> float:
    """`since` as epoch seconds: an ISO 8601 time, epoch seconds, or `30m`/`24h`/`7d` back from
    `now`; a week back when not given. ValueError for anything else."""
    if not value:
        return now - DEFAULT_PERIOD
    period = _PERIOD.match(value)
    if period:
        return now - float(period.group(1)) * _SECONDS[period.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("give the time with its offset (Z or +hh:mm)")
    return moment.timestamp()


@editor_api.get("/api/flows/<flow_id>/traffic")
@login_required
def flow_traffic(flow_id: str) -> Response:
    """GET /api/flows/<id>/traffic: per-edge counts and per-node drop-offs since `since`."""
    checked_id(flow_id)
    svc = services()
    flow = svc.library.live.flows.get(flow_id) if svc.library.ok else None
    if flow is None:
        raise BadRequest(f"no live flow {flow_id!r}", 404)
    try:
        since = parse_since(request.args.get("since"), svc.call_service.clock())
    except ValueError as error:
        raise BadRequest(f"since: {error}; write an ISO time, epoch seconds, or 1h, 24h, 7d"
                         ) from None
    return jsonify(traffic(svc.store, flow, since,
                           include_tests=request.args.get("tests") in ("1", "true")))


@editor_api.get("/api/flows/schema")
@login_required
def schema() -> Response:
    """GET /api/flows/schema: the flow JSON Schema the inspector builds its fields from."""
    return jsonify(load_schema("flow"))


@editor_api.get("/api/flows/templates")
@login_required
def templates() -> Response:
    """GET /api/flows/templates: the templates a new flow can start from."""
    return jsonify(templates=[{"id": key, "title": title}
                              for key, (title, _) in TEMPLATES.items()])
