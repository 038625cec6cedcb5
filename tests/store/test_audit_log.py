"""The audit log's part of the `CallStore` contract, on every backend, plain and encrypted:
entries come back newest first with growing ids, page by id, are shared by every handle on the
storage, and are pruned by age with the calls (`prune_older_than`, `flask calls prune`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.retention import prune_older_than
from engine.store import AuditEntry, CallStore
from tests.store.test_contract import open_again, store

__all__ = ["open_again", "store"]  # the contract's fixtures

DAY = 86400.0


def entry(action: str, at: float, **what: object) -> AuditEntry:
    return AuditEntry(at=at, who="ada@example.com", role="admin", where="203.0.113.7",
                      action=action, outcome="ok", what=what)


def test_entries_come_back_newest_first_with_growing_ids(store: CallStore) -> None:
    assert store.audit_entries() == []
    at = 1_700_000_000.123456
    first = store.record_audit(entry("sign-in", at, method="password"))
    second = store.record_audit(entry("call.end", at + 1, call_sid="CA1"))
    assert 0 < first < second
    found = store.audit_entries()
    assert [item.id for item in found] == [second, first]
    assert found[0] == AuditEntry(at=at + 1, who="ada@example.com", role="admin",
                                  where="203.0.113.7", action="call.end", outcome="ok",
                                  what={"call_sid": "CA1"}, id=second)
    assert found[1].at == at  # not rounded on the way
    assert found[1].as_json()["what"] == {"method": "password"}


def test_entries_page_by_id(store: CallStore) -> None:
    ids = [store.record_audit(entry("flow.save", 1_700_000_000.0 + n, n=n)) for n in range(7)]
    page = store.audit_entries(limit=3)
    assert [item.id for item in page] == ids[:-4:-1]
    following = store.audit_entries(limit=3, before_id=page[-1].id)
    assert [item.id for item in following] == ids[-4:-7:-1]
    assert store.audit_entries(limit=0) == []


def test_every_handle_reads_the_one_log(open_again: Callable[[], CallStore]) -> None:
    one, other = open_again(), open_again()
    written: list[int] = []

    def write(store: CallStore, n: int) -> None:
        for index in range(10):
            written.append(store.record_audit(entry("call.transfer", time.time(), n=n, i=index)))

    threads = [threading.Thread(target=write, args=(store, n))
               for n, store in enumerate((one, other, one, other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(written)) == 40
    assert [item.id for item in other.audit_entries(limit=100)] == sorted(written, reverse=True)


def test_old_entries_are_pruned_with_the_calls(store: CallStore) -> None:
    now = time.time()
    old = [store.record_audit(entry("sign-in", now - 40 * DAY, n=n)) for n in range(3)]
    recent = store.record_audit(entry("sign-in", now - 2 * DAY))
    would = prune_older_than(store, 30, now, dry_run=True)
    assert would.audit == 3 and "3 audit entries" in would.describe()
    assert [item.id for item in store.audit_entries()] == [recent, *old[::-1]]  # dry: kept
    assert prune_older_than(store, 30, now).audit == 3
    assert [item.id for item in store.audit_entries()] == [recent]
    assert store.prune_audit(now + DAY) == 0  # the newest entry stays: ids never go back
    assert store.record_audit(entry("sign-in", now)) > recent
