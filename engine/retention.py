"""Retention: finished calls, their events and stored answers, cached speech and audit log entries
are removed once older than RETENTION_DAYS (default 30; `0` or `off` keeps everything).

`prune_older_than(store, days, now)` does it once (`flask calls prune`); a `Retention` job does it
on its own, off the request path: every server process registers one (`start`), one daemon
thread a process checks the jobs now and then, and a job prunes only after it has claimed the
run in the store (`claim_run`: a compare-and-set of the last run's time), so of all the gunicorn
workers and servers on one store one prunes per `every` seconds, and the others skip. What a
prune removes, and what it never does (a live call), is the store's `prune` (engine/store).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable

from engine.store import CallStore, Pruned

log = logging.getLogger(__name__)

DAY = 86400.0
DEFAULT_DAYS = 30.0
OFF = ("0", "off", "none", "no", "false")
RETENTION = "phoney.retention"
"""Where `create_app` keeps a server's `Retention` job, on `app.extensions`."""
LAST_RUN_BLOB = "retention:last-run"
"""JSON {"at": epoch seconds, "by": "host:pid"} of the last claimed run, shared by every process."""
EVERY = 3600.0
"""Seconds between runs, across all processes on the store."""
FIRST_CHECK = 600.0
"""Seconds after a process starts before its first check: a start (or a test's app) stays light,
and a prune is never urgent."""


def retention_days(value: str | float | None) -> float | None:
    """RETENTION_DAYS as days (a positive number, fractions allowed), or None to keep
    everything (`0`, `off`); empty means DEFAULT_DAYS. ValueError for anything else."""
    text = "" if value is None else str(value).strip().lower()
    if text == "":
        return DEFAULT_DAYS
    if text in OFF:
        return None
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days > 0 or days == float("inf"):
        raise ValueError(f"RETENTION_DAYS={value!r}: write how many days calls are kept (a "
                         f"number such as 30), or 0 or off to keep everything")
    return days


def prune_older_than(store: CallStore, days: float, now: float,
                     dry_run: bool = False) -> Pruned:
    """Prune what is older than `days` before `now` (see `CallStore.prune`), the audit log's
    entries included (`CallStore.prune_audit`): it is kept as long as the calls it is about."""
    before = now - days * DAY
    pruned = store.prune(before, dry_run=dry_run)
    return pruned + Pruned(audit=store.prune_audit(before, dry_run=dry_run))


def claim_run(store: CallStore, now: float, every: float, owner: str) -> bool:
    """True when this process may run the prune now: the last run (by anyone) is at least
    `every` seconds old, and this call recorded `now` as the last run before anyone else did."""
    raw = store.get_blob(LAST_RUN_BLOB)
    if raw is not None:
        try:
            last = float(json.loads(raw)["at"])
        except (ValueError, KeyError, TypeError):
            last = None  # damaged: whoever writes first takes it over
        if last is not None and 0 <= now - last < every:
            return False
    claim = json.dumps({"at": now, "by": owner}, sort_keys=True).encode()
    return store.compare_and_set_blob(LAST_RUN_BLOB, raw, claim)


class Retention:
    """One process's retention job on `store`: `check` prunes when the run is due and claimed.

    `clock` is the calls' clock (what they were stamped with). `every` is the time between runs
    across processes, `first_check` the wait after `start` before this process first checks."""

    def __init__(self, store: CallStore, days: float, clock: Callable[[], float] = time.time,
                 every: float = EVERY, first_check: float = FIRST_CHECK,
                 after: Callable[[Pruned], None] | None = None) -> None:
        self.store = store
        self.after = after  # called with what a run removed (the server re-warms its speech)
        self.days = days
        self.clock = clock
        self.every = every
        self.first_check = first_check
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.last: Pruned | None = None  # what this process's last run removed
        self.checks = 0  # times this process asked
        self.runs = 0  # and pruned

    def check(self) -> bool:
        """Prune if due and claimed by this process; True when it pruned."""
        self.checks += 1
        now = self.clock()
        if not claim_run(self.store, now, self.every, self.owner):
            return False
        started = time.monotonic()
        self.last = prune_older_than(self.store, self.days, now)
        self.runs += 1
        log.info("retention: removed %s older than %g days (%.1f s)", self.last.describe(),
                 self.days, time.monotonic() - started)
        if self.after is not None:
            try:
                self.after(self.last)
            except Exception:  # the prune is done; what follows it must not undo the job
                log.warning("retention: the follow-up of a prune failed", exc_info=True)
        return True

    def start(self) -> None:
        """Have the process's retention thread check this job from `first_check` seconds on,
        then every `every` seconds (with some jitter, so processes do not all ask at once)."""
        _SCHEDULER.add(self, self.first_check)


class _Scheduler:
    """The process's one daemon thread for retention jobs, holding them weakly (a job whose
    app is gone is dropped), checking each when due."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._due: dict[weakref.ref[Retention], float] = {}
        self._thread: threading.Thread | None = None

    def add(self, job: Retention, delay: float) -> None:
        with self._ready:
            self._due[weakref.ref(job)] = time.monotonic() + max(delay, 0.0)
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(target=self._run, name="retention",
                                                daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while True:
                    self._due = {ref: due for ref, due in self._due.items()
                                 if ref() is not None}
                    now = time.monotonic()
                    ready = [ref for ref, due in self._due.items() if due <= now]
                    if ready:
                        break
                    self._ready.wait(min(self._due.values()) - now if self._due else None)
                for ref in ready:
                    job = ref()
                    if job is not None:
                        self._due[ref] = now + job.every * random.uniform(0.9, 1.1)
            for ref in ready:
                job = ref()
                if job is None:
                    continue
                try:
                    job.check()
                except Exception:  # the store is down, say: the next check tries again
                    log.exception("retention: the prune failed")
                del job


_SCHEDULER = _Scheduler()


def start_retention(store: CallStore, setting: str, clock: Callable[[], float] = time.time,
                    options: dict[str, float] | None = None,
                    after: Callable[[Pruned], None] | None = None) -> Retention | None:
    """A server process's job for RETENTION_DAYS=`setting`, started; None when it is off.
    `options`: `every` and `first_check` seconds (the app's RETENTION_OPTIONS, for tests);
    `after` is called with what each run removed. ValueError for a setting `retention_days`
    refuses."""
    days = retention_days(setting)
    if days is None:
        return None
    job = Retention(store, days, clock, after=after, **(options or {}))
    job.start()
    return job
