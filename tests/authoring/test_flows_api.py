"""/api/flows and /api/flows/<id>/graph: the loaded set and each flow's graph, behind login."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask

from tests.authoring.conftest import ROOT, logged_in


@pytest.mark.parametrize("path", ["/api/flows", "/api/flows/receptionist/graph",
                                  "/api/flows/receptionist/graph?format=dot"])
def test_login_is_required(make_app: Callable[..., Flask], path: str) -> None:
    answer = make_app(ROOT).test_client().get(path)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "login required"}


def test_the_loaded_set(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    listing = logged_in(app).get("/api/flows").get_json()
    library = app.extensions["phoney"].library
    assert listing["loaded_at"] and listing["refused"] is None
    assert [flow["id"] for flow in listing["flows"]] == ["after_hours", "concierge",
                                                         "family_clinic", "receptionist",
                                                         "reminder", "support_triage"]
    receptionist = listing["flows"][3]
    assert receptionist == {
        "id": "receptionist", "description": library.live.flows["receptionist"].description,
        "version": library.live.versions["receptionist"], "numbers": ["+15550001000"],
        "nodes": 8, "edges": 19, "start": "greet", "personality": "friendly",
        "personalities": ["friendly", "professional"], "source": "flows/receptionist.yaml",
        "languages": [{"flow": "receptionist", "language": "en-US", "personality": "friendly",
                       "texts": 10, "total": 10, "twilio": "Polly.Joanna-Neural",
                       "openai": "coral", "relay": "Amazon Joanna-Neural",
                       "recognition": True, "gaps": []}]}
    clinic = listing["flows"][2]
    assert [(row["language"], row["twilio"], row["gaps"]) for row in clinic["languages"]] == [
        ("en-US", "Polly.Joanna-Neural", []), ("es-US", "Polly.Lupe-Neural", [])]
    assert {p["id"] for p in listing["personalities"]} == {"friendly", "host", "professional",
                                                          "witty", "zen"}


def test_graphs_in_every_format(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    client = logged_in(app)
    graph = client.get("/api/flows/receptionist/graph?format=json")
    assert graph.mimetype == "application/json"
    data = json.loads(graph.get_data(as_text=True))
    assert data["flow"] == "receptionist" and len(data["edges"]) == 19
    assert client.get("/api/flows/receptionist/graph").get_json() == data  # json by default
    mermaid = client.get("/api/flows/receptionist/graph?format=mermaid")
    assert mermaid.mimetype == "text/plain"
    assert mermaid.get_data(as_text=True).startswith("flowchart TD")
    dot = client.get("/api/flows/after_hours/graph?format=dot")
    assert dot.get_data(as_text=True).startswith('digraph "after_hours" {')
    version = app.extensions["phoney"].library.live.versions["receptionist"]
    pinned = client.get(f"/api/flows/receptionist/graph?version={version}")
    assert pinned.get_json() == data


def test_unknown_flows_formats_and_versions(make_app: Callable[..., Flask]) -> None:
    client = logged_in(make_app(ROOT))
    assert client.get("/api/flows/nope/graph").status_code == 404
    assert client.get("/api/flows/receptionist/graph?version=000000000000").status_code == 404
    bad = client.get("/api/flows/receptionist/graph?format=svg")
    assert bad.status_code == 400 and "mermaid, dot, json" in bad.get_json()["error"]
