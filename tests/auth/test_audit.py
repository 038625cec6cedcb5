"""The audit log as the app writes it: who, role, the client's address as the app derives it
behind TRUSTED_PROXIES, what was acted on and how it ended; never a secret, whoever passes one;
encrypted at rest with ENCRYPTION_KEY; `GET /api/audit` pages back through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from engine.store import AuditEntry, EncryptedStore, Keyring, SQLiteStore
from engine.web.app import create_app
from engine.web.audit import clean
from engine.web.roles import Role
from tests.auth.conftest import PASSWORD, ROOT
from tests.auth.test_roles import CSRF, signed_in

PROXY, CLIENT = "10.0.0.5", "203.0.113.9"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    made = create_app({"PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'a.db'}",
                       "DASHBOARD_PASSWORD": PASSWORD, "SECRET_KEY": "audit-tests",
                       "TESTING": True, "TRUSTED_PROXIES": "1", "API_RATE_LIMIT": "off"})
    yield made
    made.extensions["phoney"].store.close()


def entries(app: Flask) -> list[AuditEntry]:
    return list(app.extensions["phoney"].store.audit_entries(100))


def test_secrets_never_reach_an_entry() -> None:
    kept = clean({"password": "hunter2", "id_token": "eyJ...", "code": "abc", "state": "xyz",
                  "client_secret": "s", "nonce": "n", "Authorization": "Bearer t",
                  "CallSid": "CA1", "flow_id": "receptionist", "number": 3,
                  "note": "x" * 500})
    assert kept == {"CallSid": "CA1", "flow_id": "receptionist", "number": 3, "note": "x" * 200}


def test_a_transfer_is_recorded_with_who_from_where_and_how_it_ended(app: Flask) -> None:
    client = signed_in(app, Role.OPERATOR)
    answer = client.post("/api/transfer-call", data={"CallSid": "CA1", "To": "+15550001111"},
                         headers={"X-CSRF-Token": CSRF, "X-Forwarded-For": CLIENT},
                         environ_base={"REMOTE_ADDR": PROXY})
    assert answer.status_code == 503  # no Twilio credentials here: it failed, and says so
    (entry,) = entries(app)
    assert (entry.action, entry.outcome, entry.who, entry.role, entry.where) == (
        "call.transfer", "failed", "operator@example.com", "operator", CLIENT)
    assert entry.what == {"CallSid": "CA1", "To": "+15550001111", "status": 503}


def test_a_request_without_its_csrf_token_is_recorded_as_refused(app: Flask) -> None:
    client = signed_in(app, Role.OPERATOR)
    assert client.post("/api/end-call", data={"CallSid": "CA1"}).status_code == 403
    (entry,) = entries(app)
    assert (entry.action, entry.outcome) == ("call.end", "refused")
    assert entry.what == {"CallSid": "CA1", "status": 403}
    client.get("/api/audit")  # an operator's look at the audit log: refused and recorded
    refused = entries(app)[0]
    assert (refused.action, refused.what["path"], refused.what["reason"]) == (
        "request.refused", "/api/audit", "needs admin")


def test_the_api_pages_back_newest_first(app: Flask) -> None:
    admin = signed_in(app, Role.ADMIN)
    for _ in range(5):
        admin.get("/api/settings")
    first = admin.get("/api/audit?limit=3").json
    assert [entry["action"] for entry in first["entries"]] == ["settings.view"] * 3
    rest = admin.get(f"/api/audit?limit=3&before={first['older']}").json
    assert len(rest["entries"]) == 2 and rest["older"] is None
    ids = [entry["id"] for entry in first["entries"] + rest["entries"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert admin.get("/api/audit?limit=many").status_code == 400


def test_with_encryption_what_an_entry_acted_on_is_sealed_at_rest() -> None:
    inner = SQLiteStore(":memory:")
    store = EncryptedStore(inner, Keyring.from_setting("an audit passphrase"))
    store.record_audit(AuditEntry(at=1.0, who="ada", role="admin", where="127.0.0.1",
                                  action="call.transfer", outcome="ok",
                                  what={"To": "+15550001111"}))
    (raw,) = inner.audit_entries()
    assert set(raw.what) == {"sealed"} and "+15550001111" not in str(raw.what)
    (opened,) = store.audit_entries()
    assert opened.what == {"To": "+15550001111"} and opened.who == "ada"
    inner.close()
