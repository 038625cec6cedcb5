"""Health checks for load balancers and orchestrators; open, and they tell nothing secret.

- `GET /healthz`: the process is up and serving (liveness): always 200 `{"status": "ok"}`.
- `GET /readyz`: this process can take calls (readiness): the store answers `ping()` and a
  valid set of flows is loaded. 200 `{"status": "ready", ...}`, else 503
  `{"status": "unavailable", "reasons": [...]}`. A refused edit of the flows (hot reload) is
  in the detail either way: `"refused": ["flows/x.yaml:12:5: ...", ...]` and `"held_back"`, the
  flows kept at their last good version (the other flows reloaded).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from engine.web.services import services

log = logging.getLogger(__name__)

health = Blueprint("health", __name__)


def _answer(body: dict[str, object], status: int) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status


@health.get("/healthz")
def healthz() -> tuple[Response, int]:
    """GET /healthz: liveness; always 200 `{"status": "ok"}`, uncached."""
    return _answer({"status": "ok"}, 200)


@health.get("/readyz")
def readyz() -> tuple[Response, int]:
    """GET /readyz: readiness; 200 when the store pings and flows are loaded, else 503 and why."""
    found = services()
    reasons: list[str] = []
    try:
        store_ok = found.store.ping()
    except Exception as error:  # a backend whose ping raises is just as unreachable
        store_ok = False
        log.warning("readyz: the store's ping failed: %s: %s", type(error).__name__, error)
    if not store_ok:
        reasons.append("store unreachable")
    if not found.library.ok:
        problems = len(found.library.refused)
        reasons.append("no valid set of flows loaded"
                       + (f" ({problems} errors; see the log)" if problems else ""))
    checks = {"store": "ok" if store_ok else "unreachable",
              "flows": "ok" if found.library.ok else "not loaded"}
    detail: dict[str, object] = {}
    if found.library.refused:
        detail = {"refused": [str(problem) for problem in found.library.refused],
                  "held_back": list(found.library.held_back)}
    if reasons:
        return _answer({"status": "unavailable", "reasons": reasons, "checks": checks,
                        **detail}, 503)
    return _answer({"status": "ready", "checks": checks, **detail}, 200)
