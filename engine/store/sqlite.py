"""The SQLite `CallStore`: the default backend, one database file shared by every server process.

Each thread gets its own connection (sqlite3 connections must not be shared between threads), the
database runs in WAL mode so readers never block the writer, and every write is one
`BEGIN IMMEDIATE` transaction: the write lock is taken before the stored step is read, so the
check of `previous.step` and the write that follows are atomic across threads and processes.
Waiting for that lock is bounded by `busy_timeout`; writers of this store take turns before
they ask SQLite for it (see `_transaction`), so SQLite's own coarse wait is rarely used. The WAL
is checkpointed by a thread of its own (`_Checkpointer`), not by the commit that fills it.

Because writers are serialised, event ids become visible in increasing order: a reader that has
seen event N never sees an event with a smaller id appear later, so `events_after` can resume.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: processes there meet at SQLite's lock only
    fcntl = None  # type: ignore[assignment]

from engine.runtime.outcome import FACT_EVENTS, REFRESH_EVENTS, call_facts
from engine.runtime.state import FINAL_STATUSES, CallState, state_from_dict, state_to_dict
from engine.store.base import (
    ALL_CALLS,
    LIVE_AT_MOST,
    MAX_SEARCH,
    PRUNED_BLOB_PREFIXES,
    AuditEntry,
    CallQuery,
    CallSummary,
    LinesBusy,
    LiveCeiling,
    Lookup,
    NewEvent,
    Pruned,
    Quota,
    StepConflict,
    StoredEvent,
    check_same_call,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
COUNTER_PURGE_EVERY = 60.0
"""Seconds between a process's purges of expired counters (each counter's own expiry is checked
at every hit: the purge only keeps the table from growing)."""

# MIGRATIONS[n] takes the schema from version n to n + 1 (PRAGMA user_version). Only append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS calls (
            call_sid     TEXT PRIMARY KEY,
            state        TEXT NOT NULL,
            step         INTEGER NOT NULL,
            flow_id      TEXT NOT NULL,
            flow_version TEXT NOT NULL,
            caller       TEXT NOT NULL,
            called       TEXT NOT NULL,
            status       TEXT NOT NULL,
            node         TEXT NOT NULL,
            personality  TEXT NOT NULL,
            started_at   REAL NOT NULL,
            updated_at   REAL NOT NULL,
            ended_at     REAL,
            duration     INTEGER,
            closed       INTEGER NOT NULL DEFAULT 0  -- close_call gave a final status
        )""",
        "CREATE INDEX IF NOT EXISTS calls_by_update ON calls (updated_at DESC)",
        """CREATE TABLE IF NOT EXISTS events (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            call_sid TEXT NOT NULL,
            name     TEXT NOT NULL,
            data     TEXT NOT NULL,
            at       REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS events_by_call ON events (call_sid, id)",
        """CREATE TABLE IF NOT EXISTS responses (
            call_sid    TEXT NOT NULL,
            request_key TEXT NOT NULL,
            response    TEXT NOT NULL,
            at          REAL NOT NULL,
            PRIMARY KEY (call_sid, request_key)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS blobs (
            key   TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            at    REAL NOT NULL
        )""",
    ),
    (
        # incr_window: fixed-window counters (calls per caller), dropped once expired.
        """CREATE TABLE IF NOT EXISTS counters (
            key        TEXT PRIMARY KEY,
            count      INTEGER NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS counters_by_expiry ON counters (expires_at)",
    ),
    (
        # Fewer pages a write: events without AUTOINCREMENT (no sqlite_sequence row rewritten at
        # every commit), counters without their expiry index (expired ones are purged now and
        # then by a scan, see `_count_hit`). Without AUTOINCREMENT an event's id is the largest
        # id plus one: ids still only grow, as the newest event is never deleted (deleting it
        # would let its id be given again; `prune` keeps it). One copy of the events, once, on
        # upgrade.
        """CREATE TABLE events_new (
            id       INTEGER PRIMARY KEY,
            call_sid TEXT NOT NULL,
            name     TEXT NOT NULL,
            data     TEXT NOT NULL,
            at       REAL NOT NULL
        )""",
        "INSERT INTO events_new (id, call_sid, name, data, at)"
        " SELECT id, call_sid, name, data, at FROM events ORDER BY id",
        "DROP TABLE events",
        "ALTER TABLE events_new RENAME TO events",
        "CREATE INDEX events_by_call ON events (call_sid, id)",
        "DROP INDEX IF EXISTS counters_by_expiry",
    ),
    (
        # The calls MAX_LIVE_CALLS counts (`LiveCeiling`): a row from a new call's commit until
        # the call ends, so the count reads a few rows instead of the calls' (large) ones.
        """CREATE TABLE IF NOT EXISTS live_calls (
            call_sid TEXT PRIMARY KEY,
            at       REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    (
        # The audit log (`record_audit`): who did what on the dashboard, pruned by age.
        """CREATE TABLE IF NOT EXISTS audit (
            id      INTEGER PRIMARY KEY,
            at      REAL NOT NULL,
            who     TEXT NOT NULL,
            role    TEXT NOT NULL,
            address TEXT NOT NULL,
            action  TEXT NOT NULL,
            outcome TEXT NOT NULL,
            what    TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at)",
    ),
    (
        # The calls list's facts (`engine.runtime.outcome.call_facts`), kept in the row when
        # the call ends, is analysed or is marked a test call, so a filtered list is one query.
        "ALTER TABLE calls ADD COLUMN outcome TEXT",
        "ALTER TABLE calls ADD COLUMN mood REAL",
        "ALTER TABLE calls ADD COLUMN summary TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE calls ADD COLUMN test TEXT",
        "CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at)",
    ),
)

_SUMMARY_COLUMNS = ("call_sid, flow_id, flow_version, caller, called, status, node, personality,"
                    " started_at, updated_at, ended_at, duration, outcome, mood, summary, test")
_FACT_NAMES = ", ".join(f"'{name}'" for name in FACT_EVENTS)
_TRANSCRIPT_NAMES = "'call.transcript', 'call.say', 'call.response'"


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced, so `close` can reach every thread's, and
    that is held while in use, so `close` never pulls it from under a statement (closing a
    connection another thread is reading crashes the process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_use = threading.RLock()


CLOSE_WAIT = 5.0
"""Seconds `close` waits for a thread to finish with its connection."""

LOCK_SUFFIX = "-writer.lock"
"""Beside the database file: the lock its writers take turns on across processes."""
LOCK_POLL = (0.00005, 0.001)
"""Seconds between tries for another process's writer lock: the first wait, and the longest."""

CHECKPOINT_EVERY = 32
"""A process's commits after which its checkpointer thread checkpoints the WAL at once."""
CHECKPOINT_DELAY = 1.0
"""Seconds after a commit by which the checkpointer gets to it when fewer commits follow."""
RESTART_PAGES = 1000
"""A WAL this long is copied to its end in the writers' turn, for the next writer to start it over
(the frames written during the copy: a ms or two of waiting for them, every ~90 new calls)."""
AUTOCHECKPOINT_PAGES = 4000
"""SQLite's own checkpoint at a commit, kept only for a WAL the checkpointer let grow this far
(SQLite's default is 1000 pages: about 80 new calls, each then paying for it in turn)."""


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""One encoder for every write: json.dumps with options builds a new one at every call."""


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _summary(row: sqlite3.Row) -> CallSummary:
    return CallSummary(
        call_sid=row["call_sid"], flow_id=row["flow_id"], flow_version=row["flow_version"],
        caller=row["caller"], called=row["called"], status=row["status"], node=row["node"],
        personality=row["personality"], started_at=row["started_at"],
        updated_at=row["updated_at"], ended_at=row["ended_at"], duration=row["duration"],
        outcome=row["outcome"], mood=row["mood"], summary=row["summary"], test=row["test"])


def _like_pattern(text: str) -> str:
    """A LIKE pattern (escape `\\`) finding `text` anywhere in a value."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _list_sql(query: CallQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of `list_calls` for `query`, and its parameters."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if query.since is not None:
        where.append("started_at >= :since")
        params["since"] = query.since
    if query.until is not None:
        where.append("started_at < :until")
        params["until"] = query.until
    if query.flow is not None:
        where.append("flow_id = :flow")
        params["flow"] = query.flow
    if query.outcome is not None:
        where.append("outcome = :outcome")
        params["outcome"] = query.outcome
    if not query.include_test:
        where.append("test IS NULL")
    if query.before is not None:
        where.append("(updated_at, started_at, call_sid) < (:b_updated, :b_started, :b_sid)")
        params.update(b_updated=query.before.updated_at, b_started=query.before.started_at,
                      b_sid=query.before.call_sid)
    if query.text:
        # A scan of the events of the calls the other filters leave (events_by_call).
        where.append("EXISTS (SELECT 1 FROM events WHERE events.call_sid = calls.call_sid"
                     f" AND events.name IN ({_TRANSCRIPT_NAMES})"
                     " AND coalesce(json_extract(events.data, '$.speech'),"
                     " json_extract(events.data, '$.text'), '') LIKE :text ESCAPE '\\')")
        params["text"] = _like_pattern(query.text[:MAX_SEARCH])
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _refresh_facts(db: sqlite3.Connection, call_sid: str) -> None:
    """Compute the call's facts again from its events, in the write transaction that changed
    them (so two refreshes cannot cross), and keep them in its row."""
    row = db.execute("SELECT ended_at, closed, status FROM calls WHERE call_sid = ?",
                     (call_sid,)).fetchone()
    if row is None:
        return
    events = db.execute(f"SELECT name, data FROM events WHERE call_sid = ? AND name IN"
                        f" ({_FACT_NAMES}) ORDER BY id", (call_sid,)).fetchall()
    final = row["status"] if row["status"] in FINAL_STATUSES else ""
    facts = call_facts(((event["name"], json.loads(event["data"])) for event in events),
                       ended=row["ended_at"] is not None or bool(row["closed"]), status=final)
    db.execute("UPDATE calls SET outcome = ?, mood = ?, summary = ?, test = ?"
               " WHERE call_sid = ?",
               (facts.outcome, facts.mood, facts.summary, facts.test, call_sid))


def _refreshes(events: Sequence[NewEvent]) -> bool:
    return any(event.name in REFRESH_EVENTS for event in events)


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode, once for all connections.

    The switch needs an exclusive lock and SQLite does not wait for it with the busy handler,
    so processes opening a new file at the same moment retry here instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


EVENTS_A_STATEMENT = 100
"""Events one INSERT writes at most (4 parameters each: under SQLite's oldest limit of 999)."""


@functools.cache
def _insert_events_sql(count: int) -> str:
    return ("INSERT INTO events (call_sid, name, data, at) VALUES "
            + ", ".join(("(?, ?, ?, ?)",) * count))


def _event_rows(call_sid: str, events: Sequence[NewEvent], at: float) -> list[list[Any]]:
    """The parameters of the INSERTs that write `events` in id order, EVENTS_A_STATEMENT rows
    an INSERT (for a step's few, one statement is cheaper than executemany's row at a time).
    Made before the write lock is taken: serialising is not done while other writers wait."""
    chunks: list[list[Any]] = []
    for start in range(0, len(events), EVENTS_A_STATEMENT):
        values: list[Any] = []
        for event in events[start:start + EVENTS_A_STATEMENT]:
            values += (call_sid, event.name, _dumps(dict(event.data)), at)
        chunks.append(values)
    return chunks


def _insert_events(db: sqlite3.Connection, rows: list[list[Any]]) -> None:
    """Write the events `_event_rows` prepared."""
    for values in rows:
        db.execute(_insert_events_sql(len(values) // 4), values)


def _call_values(state: CallState, at: float) -> dict[str, Any]:
    """The parameters of the calls row's INSERT or UPDATE for `state` at `at`."""
    return {
        "call_sid": state.call_sid, "state": _dumps(state_to_dict(state)), "step": state.step,
        "flow_id": state.flow_id, "flow_version": state.flow_version,
        "caller": state.caller.number, "called": state.called, "status": state.status,
        "node": state.node, "personality": state.personality,
        "started_at": state.started_at, "updated_at": at, "over": _is_over(state),
        "at": at,
    }


FILE_MODE = 0o600
"""The database, its -wal and -shm (SQLite gives them the database's mode) and the lock file:
they hold callers' words and, without ENCRYPTION_KEY, whatever else the store keeps."""
DIRECTORY_MODE = 0o700
"""The directory, when the store makes it."""
FILE_SUFFIXES = ("", "-wal", "-shm", LOCK_SUFFIX)


def _prepare_files(path: str) -> None:
    """Make the database's directory (0700) and file (0600) before SQLite opens it, and take
    group and others' access away from its files made before (by an older version, under a
    loose umask). Files of another owner are left as they are: we could not change them."""
    directory = Path(path).parent
    if not directory.exists():
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for suffix in FILE_SUFFIXES:
        name = path + suffix
        try:
            found = os.stat(name)
            if found.st_mode & 0o077 and found.st_uid == os.geteuid():
                os.chmod(name, stat.S_IMODE(found.st_mode) & 0o700)
        except FileNotFoundError:
            continue
        except OSError as error:
            log.warning("%s: could not make it private (%s)", name, error)


PRUNE_BATCH = 100
"""Calls (or orphaned rows, times ten) one write transaction of `prune` removes."""
_PRUNABLE_CALL = ("updated_at < :before AND (ended_at IS NOT NULL OR closed"
                  " OR updated_at < :stale)")
_PRUNED_BLOB = " OR ".join(f"substr(key, 1, {len(prefix)}) = '{prefix}'"
                           for prefix in PRUNED_BLOB_PREFIXES)
# (select the keys of a batch, on a read connection; delete them again checked; what they are)
_PRUNE_ORPHANS: tuple[tuple[str, str, str], ...] = (
    ("SELECT id FROM events WHERE at < :before AND call_sid NOT IN (SELECT call_sid FROM calls)"
     f" AND id < (SELECT max(id) FROM events) ORDER BY id LIMIT {PRUNE_BATCH * 10}",
     "DELETE FROM events WHERE id = ? AND at < ? AND call_sid NOT IN"
     " (SELECT call_sid FROM calls) AND id < (SELECT max(id) FROM events)", "events"),
    ("SELECT call_sid, request_key FROM responses WHERE at < :before AND call_sid NOT IN"
     f" (SELECT call_sid FROM calls) LIMIT {PRUNE_BATCH * 10}",
     "DELETE FROM responses WHERE call_sid = ? AND request_key = ? AND at < ? AND call_sid"
     " NOT IN (SELECT call_sid FROM calls)", "responses"),
    (f"SELECT key FROM blobs WHERE at < :before AND ({_PRUNED_BLOB}) LIMIT {PRUNE_BATCH * 10}",
     "DELETE FROM blobs WHERE key = ? AND at < ?", "blobs"),
)


def _is_over(state: CallState) -> bool:
    return state.ended or state.status in FINAL_STATUSES


def _check_lines(db: sqlite3.Connection, live: LiveCeiling, at: float) -> None:
    """LinesBusy when `live.limit` calls or more are live, in a write transaction (so no other
    new call is counted meanwhile); calls counted over `live.stale_seconds` ago are dropped."""
    db.execute("DELETE FROM live_calls WHERE at <= ?", (at - live.stale_seconds,))
    count = int(db.execute("SELECT count(*) FROM live_calls").fetchone()[0])
    if count >= live.limit:
        raise LinesBusy(count, live.limit)


class _Checkpointer:
    """The process's one daemon thread that checkpoints the stores' WAL files.

    SQLite checkpoints at the commit that takes the WAL past `wal_autocheckpoint` pages, in the
    committing thread: that webhook waited for the copy and its fsyncs, and, as the writer locks
    are held until COMMIT returns, so did every other writer. Here a store asks after its first
    commit since a checkpoint (done within CHECKPOINT_DELAY) and after CHECKPOINT_EVERY of them
    (done at once); the thread runs a passive checkpoint on its own connection, which waits for
    no reader or writer (WAL lets them go on). It holds stores only weakly.
    """

    def __init__(self) -> None:
        self._after_fork()
        self._held_for_fork = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_parent,
                                after_in_child=self._after_fork)

    def _before_fork(self) -> None:
        # Not in the middle of a checkpoint, which holds a store's locks: a child would find
        # them held for good. (Bounded: a fork by a thread holding a store's write turn.)
        self._held_for_fork = self._working.acquire(timeout=CLOSE_WAIT)

    def _after_fork_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._working.release()

    def _after_fork(self) -> None:  # the thread did not cross the fork, and its locks may have
        self._held_for_fork = False
        self._working = threading.Lock()  # held while the thread checkpoints
        self._ready = threading.Condition()
        self._due: dict[weakref.ref[SQLiteStore], tuple[float, int]] = {}
        self._thread: threading.Thread | None = None

    def ask(self, store: SQLiteStore, generation: int, soon: bool) -> None:
        when = time.monotonic() + (0.0 if soon else CHECKPOINT_DELAY)
        with self._ready:
            ref = store._ref
            due = self._due.get(ref)
            if due is not None and due[0] <= when and due[1] == generation:
                return
            self._due[ref] = (when, generation)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                                daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while True:
                    now = time.monotonic()
                    ready = [(ref, due[1]) for ref, due in self._due.items() if due[0] <= now]
                    if ready:
                        break
                    self._ready.wait(min(due[0] for due in self._due.values()) - now
                                     if self._due else None)
                for ref, _ in ready:
                    del self._due[ref]
            with self._working:
                for ref, generation in ready:
                    store = ref()
                    if store is not None:
                        try:
                            store._checkpoint(generation)
                        except Exception:  # the next one, or SQLite's own, will do
                            log.exception("%s: checkpoint failed", store.path)
                    del store


_CHECKPOINTER = _Checkpointer()


class SQLiteStore:
    """`CallStore` on one SQLite file; `":memory:"` gives a private database for tests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:" or path == ""
        self._local = threading.local()
        self._pid = os.getpid()
        self._lock = threading.RLock()  # guards the fields below, and the one :memory: connection
        self._writing = threading.Lock()  # this process's writers take turns here first
        self._writer_file: int | None = None  # then every process's, on LOCK_SUFFIX (flock)
        self._schema_ready = False
        self._files_ready = False  # the directory made and the files' modes checked
        self._next_purge = 0.0  # when _count_hit next deletes expired counters
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._inherited: list[_Connection] = []
        self._shared: _Connection | None = None
        self._ref = weakref.ref(self)
        self._unchecked = 0  # commits since the checkpointer last started (under _writing)
        self._checkpoint_db: _Connection | None = None  # the checkpointer thread's
        self._generation = 0  # one more at each close: checkpoints asked for before are off

    # Connections

    def _open(self) -> _Connection:
        if not self._memory and not self._files_ready:
            _prepare_files(self.path)
            self._files_ready = True
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=False, factory=_Connection)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self._memory:
                _use_wal(db)
                db.execute("PRAGMA synchronous = NORMAL")  # WAL: an app crash loses nothing
                db.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            with self._lock:
                if not self._schema_ready:
                    self._migrate(db)
                    self._schema_ready = True
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")  # several processes may open a fresh file at once
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{self.path}: schema version {version} is newer than this "
                                   f"code knows ({len(MIGRATIONS)}); upgrade Phoney")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        if self._memory:
            return self._memory_connection()
        if os.getpid() != self._pid:
            # Forked (gunicorn --preload): connections must not cross a fork. Keep the parent's
            # objects alive rather than closing them here, which could disturb the parent's.
            with self._lock:
                if os.getpid() != self._pid:
                    self._inherited.extend(self._connections)
                    self._connections = weakref.WeakSet()
                    self._local = threading.local()
                    self._writing = threading.Lock()  # a copy taken mid-write stays held
                    # An inherited descriptor shares its lock with the parent: open our own.
                    self._writer_file = None
                    if self._checkpoint_db is not None:
                        self._inherited.append(self._checkpoint_db)
                        self._checkpoint_db = None
                    self._unchecked = 0
                    self._pid = os.getpid()
        db: _Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
            self._local.db = db
            with self._lock:
                self._connections.add(db)
        return self._held(db)

    @staticmethod
    @contextmanager
    def _held(db: _Connection) -> Iterator[sqlite3.Connection]:
        with db.in_use:
            yield db

    @contextmanager
    def _memory_connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._shared is None:
                self._shared = self._open()
            yield self._shared

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the database's write lock from its first statement.

        The threads of one process queue on `_writing` before asking SQLite: its own wait for a
        busy lock polls with sleeps that grow to 100 ms, so a thread that found the lock taken
        could sleep long after it was free again (under a load of webhooks, a fifth of the
        workers' time went there). A Python lock hands over at once. Processes then take turns
        on a lock file beside the database (`_writer_lock`), polled every 50 µs to 1 ms: with
        two gunicorn workers, SQLite's first sleep of 1 ms for a lock held ~0.3 ms had held
        Phoney's new calls to one worker's worth of throughput (bench/webhook_floor.py).
        """
        with self._connection() as db, self._writing, self._writer_lock():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._unchecked += 1
            unchecked, generation = self._unchecked, self._generation
        if (unchecked == 1 or unchecked == CHECKPOINT_EVERY) and not self._memory:
            _CHECKPOINTER.ask(self, generation, soon=unchecked == CHECKPOINT_EVERY)

    def _checkpoint(self, generation: int) -> None:
        """A passive checkpoint, on the checkpointer thread's connection (see `_Checkpointer`)."""
        self._unchecked = 0  # commits from now on ask again (a count off by one does no harm)
        with self._lock:
            if generation != self._generation or os.getpid() != self._pid:
                return  # closed (or forked) since it was asked for
            db = self._checkpoint_db
            if db is None:
                if not os.path.exists(self.path):
                    return  # removed meanwhile (a test's, a benchmark's): not to be made again
                db = self._checkpoint_db = self._open()
                self._connections.add(db)  # for close
        with db.in_use, suppress(sqlite3.ProgrammingError):  # ProgrammingError: closed meanwhile
            _, pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if pages >= RESTART_PAGES:
                # While writes keep coming the WAL is never all copied, so no writer starts it
                # over and it only grows. The frames written during the copy, in the writers'
                # turn: then it is, and the next writer starts it over.
                with self._writing, self._writer_lock():
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """The processes' turn to write (held with `_writing`, so one thread a process asks).

        A bounded wait, as SQLite's busy_timeout is: a process that hangs holding it leaves the
        others with "database is locked" after BUSY_TIMEOUT_MS, not hanging with it. Without
        fcntl (Windows) or for a private in-memory database, SQLite's own lock alone serves.
        """
        if fcntl is None or self._memory:
            yield
            return
        if self._writer_file is None:
            self._writer_file = os.open(self.path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, FILE_MODE)
        descriptor = self._writer_file
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = LOCK_POLL[0]
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another process kept {self.path + LOCK_SUFFIX} "
                        f"for over {BUSY_TIMEOUT_MS} ms") from None
                time.sleep(delay)
                delay = min(delay * 2, LOCK_POLL[1])
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)

    # CallStore

    def commit_step(self, previous: CallState | None, state: CallState,
                    events: Sequence[NewEvent], request_key: str, response: str,
                    at: float) -> None:
        check_same_call(previous, state)
        values, rows = _call_values(state, at), _event_rows(state.call_sid, events, at)
        with self._transaction() as db:
            row, checked = self._check_step(db, previous, state, request_key)
            if checked is not state:  # closed meanwhile: the rare state made in the lock
                values = _call_values(checked, at)
            self._write_step(db, row, values, rows, request_key, response, at)
            if values["over"]:  # its line is free (a no-op for calls never counted live)
                db.execute("DELETE FROM live_calls WHERE call_sid = ?", (state.call_sid,))
            if values["over"] or _refreshes(events):
                _refresh_facts(db, state.call_sid)

    def commit_new_call(self, state: CallState, events: Sequence[NewEvent], request_key: str,
                        response: str, at: float, quota: Quota | None,
                        live: LiveCeiling | None = None) -> int:
        values, rows = _call_values(state, at), _event_rows(state.call_sid, events, at)
        with self._transaction() as db:
            # A stored call or answer conflicts before any ceiling: the keys check that at the
            # INSERT, and the checks below only read again on the (rare) way to a refusal.
            try:
                if live is not None:
                    _check_lines(db, live, at)
            except LinesBusy:
                self._check_step(db, None, state, request_key)
                raise
            count = 0 if quota is None else self._count_hit(db, quota.key, quota.window_seconds)
            if quota is not None and count > quota.limit:
                self._check_step(db, None, state, request_key)
                return count
            try:
                self._write_step(db, None, values, rows, request_key, response, at)
            except sqlite3.IntegrityError as error:
                if "UNIQUE" not in str(error):
                    raise
                # Raised inside the transaction: the count and the lines' clean-up roll back
                # with it, as when the check came first.
                raise StepConflict(f"call {state.call_sid} already exists or request "
                                   f"{request_key!r} was already answered") from None
            if live is not None and not values["over"]:
                db.execute("INSERT OR REPLACE INTO live_calls (call_sid, at) VALUES (?, ?)",
                           (state.call_sid, at))
            return count

    @staticmethod
    def _check_step(db: sqlite3.Connection, previous: CallState | None, state: CallState,
                    request_key: str) -> tuple[sqlite3.Row | None, CallState]:
        """commit_step's checks, in its transaction: the stored call's row, and the state to
        write (ended, if the status callback closed the call meanwhile)."""
        sid = state.call_sid
        # One statement for both reads: the call's row (NULLs when not stored) and the answer.
        found = db.execute(
            "SELECT calls.step, calls.closed, calls.status, EXISTS (SELECT 1 FROM responses"
            "  WHERE call_sid = :sid AND request_key = :key) AS answered"
            " FROM (SELECT 1) LEFT JOIN calls ON calls.call_sid = :sid",
            {"sid": sid, "key": request_key}).fetchone()
        row = None if found["step"] is None else found
        if previous is None and row is not None:
            raise StepConflict(f"call {sid} already exists")
        if previous is not None:
            if row is None:
                raise StepConflict(f"call {sid} is not stored")
            if row["step"] != previous.step:
                raise StepConflict(f"call {sid} is at step {row['step']}, "
                                   f"not {previous.step}")
            if row["closed"]:
                # The status callback had the final word: a step racing it cannot reopen.
                state = dataclasses.replace(state, status=row["status"], ended=True)
        if found["answered"]:
            raise StepConflict(f"call {sid}: request {request_key!r} was already answered")
        return row, state

    @staticmethod
    def _write_step(db: sqlite3.Connection, row: sqlite3.Row | None, values: dict[str, Any],
                    event_rows: list[list[Any]], request_key: str, response: str,
                    at: float) -> None:
        if row is None:
            db.execute(
                "INSERT INTO calls (call_sid, state, step, flow_id, flow_version, caller,"
                " called, status, node, personality, started_at, updated_at, ended_at)"
                " VALUES (:call_sid, :state, :step, :flow_id, :flow_version, :caller,"
                " :called, :status, :node, :personality, :started_at, :updated_at,"
                " CASE WHEN :over THEN :at END)", values)
        else:
            db.execute(
                "UPDATE calls SET state = :state, step = :step, flow_id = :flow_id,"
                " flow_version = :flow_version, caller = :caller, called = :called,"
                " status = :status, node = :node, personality = :personality,"
                " started_at = :started_at, updated_at = :updated_at,"
                " ended_at = CASE WHEN :over THEN coalesce(ended_at, :at) END"
                " WHERE call_sid = :call_sid", values)
        _insert_events(db, event_rows)
        db.execute("INSERT INTO responses (call_sid, request_key, response, at)"
                   " VALUES (?, ?, ?, ?)", (values["call_sid"], request_key, response, at))

    def get_state(self, call_sid: str) -> CallState | None:
        with self._connection() as db:
            row = db.execute("SELECT state FROM calls WHERE call_sid = ?",
                             (call_sid,)).fetchone()
        return None if row is None else state_from_dict(json.loads(row["state"]))

    def lookup(self, call_sid: str, request_key: str, counter: str | None = None) -> Lookup:
        # One statement is one read transaction: the three values are of one moment.
        with self._connection() as db:
            row = db.execute(
                "SELECT response, CASE WHEN response IS NULL THEN"
                "  (SELECT state FROM calls WHERE call_sid = :sid) END AS state,"
                " (SELECT count FROM counters WHERE key = :counter"
                "  AND expires_at > :now) AS count"
                " FROM (SELECT (SELECT response FROM responses WHERE call_sid = :sid"
                "  AND request_key = :key) AS response)",
                {"sid": call_sid, "key": request_key, "counter": counter,
                 "now": time.time()}).fetchone()
        return Lookup(
            response=None if row["response"] is None else str(row["response"]),
            state=None if row["state"] is None else state_from_dict(json.loads(row["state"])),
            count=int(row["count"] or 0))

    def stored_response(self, call_sid: str, request_key: str) -> str | None:
        with self._connection() as db:
            row = db.execute("SELECT response FROM responses WHERE call_sid = ? AND"
                             " request_key = ?", (call_sid, request_key)).fetchone()
        return None if row is None else str(row["response"])

    def record_events(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        if not events:
            return
        rows = _event_rows(call_sid, events, at)
        with self._transaction() as db:
            _insert_events(db, rows)
            if _refreshes(events):
                _refresh_facts(db, call_sid)

    def close_call(self, call_sid: str, status: str, duration: int | None, at: float) -> None:
        """Final statuses end the call for good; any other status only updates the status."""
        final = status in FINAL_STATUSES
        with self._transaction() as db:
            row = db.execute("SELECT state, closed FROM calls WHERE call_sid = ?",
                             (call_sid,)).fetchone()
            if row is None or (row["closed"] and not final):
                return  # a late "ringing" or "in-progress" must not undo "completed"
            state: dict[str, Any] = json.loads(row["state"])
            state["status"] = status
            if final:
                state["ended"] = True
            db.execute(
                "UPDATE calls SET state = :state, status = :status,"
                " duration = coalesce(:duration, duration), updated_at = :at,"
                " ended_at = CASE WHEN closed THEN ended_at WHEN :final THEN :at"
                " ELSE ended_at END,"
                " closed = closed OR :final"
                " WHERE call_sid = :call_sid",
                {"state": _dumps(state), "status": status, "duration": duration, "at": at,
                 "final": final, "call_sid": call_sid})
            if final:
                db.execute("DELETE FROM live_calls WHERE call_sid = ?", (call_sid,))
                _refresh_facts(db, call_sid)

    def list_calls(self, limit: int = 50, query: CallQuery = ALL_CALLS) -> list[CallSummary]:
        where, params = _list_sql(query)
        params["limit"] = max(limit, 0)
        with self._connection() as db:
            rows = db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM calls{where}"
                              " ORDER BY updated_at DESC, started_at DESC, call_sid DESC"
                              " LIMIT :limit", params).fetchall()
        return [_summary(row) for row in rows]

    def get_call(self, call_sid: str) -> CallSummary | None:
        with self._connection() as db:
            row = db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM calls WHERE call_sid = ?",
                             (call_sid,)).fetchone()
        return None if row is None else _summary(row)

    def events_after(self, after_id: int, call_sid: str | None = None,
                     limit: int = 500) -> list[StoredEvent]:
        query = "SELECT id, call_sid, name, data, at FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if call_sid is not None:
            query += " AND call_sid = ?"
            params.append(call_sid)
        query += " ORDER BY id LIMIT ?"
        params.append(max(limit, 0))
        with self._connection() as db:
            rows = db.execute(query, params).fetchall()
        return [StoredEvent(id=row["id"], call_sid=row["call_sid"], name=row["name"],
                            data=json.loads(row["data"]), at=row["at"]) for row in rows]

    def put_blob(self, key: str, value: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO blobs (key, value, at) VALUES (?, ?, ?)",
                       (key, bytes(value), time.time()))

    def get_blob(self, key: str) -> bytes | None:
        with self._connection() as db:
            row = db.execute("SELECT value FROM blobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row["value"])

    def has_blob(self, key: str) -> bool:
        with self._connection() as db:
            return db.execute("SELECT 1 FROM blobs WHERE key = ?", (key,)).fetchone() is not None

    def compare_and_set_blob(self, key: str, expected: bytes | None, new: bytes) -> bool:
        with self._transaction() as db:  # the write lock is held from the read to the write
            row = db.execute("SELECT value FROM blobs WHERE key = ?", (key,)).fetchone()
            current = None if row is None else bytes(row["value"])
            if current != (None if expected is None else bytes(expected)):
                return False
            db.execute("INSERT OR REPLACE INTO blobs (key, value, at) VALUES (?, ?, ?)",
                       (key, bytes(new), time.time()))
            return True

    def last_event_id(self) -> int:
        with self._connection() as db:
            row = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(row[0])

    def incr_window(self, key: str, window_seconds: float) -> int:
        with self._transaction() as db:  # the write lock is held from the read to the write
            return self._count_hit(db, key, window_seconds)

    def _count_hit(self, db: sqlite3.Connection, key: str, window_seconds: float) -> int:
        """incr_window's work, inside a write transaction."""
        now = time.time()
        if now >= self._next_purge:  # others' expired counters: a scan, once in a while
            db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
            self._next_purge = now + COUNTER_PURGE_EVERY
        expires = now + max(float(window_seconds), 0.001)
        # One statement: a new key starts at 1, a closed window opens the next one at 1.
        row = db.execute(
            "INSERT INTO counters (key, count, expires_at) VALUES (:key, 1, :expires)"
            " ON CONFLICT (key) DO UPDATE SET"
            "  count = CASE WHEN expires_at <= :now THEN 1 ELSE count + 1 END,"
            "  expires_at = CASE WHEN expires_at <= :now THEN :expires ELSE expires_at END"
            " RETURNING count", {"key": key, "expires": expires, "now": now}).fetchone()
        return int(row["count"])

    # Retention (`prune`): found on a read connection, deleted in small write transactions
    # that check again what they delete, so the writers' lock is held a few ms at a time.

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        params = {"before": before, "stale": time.time() - LIVE_AT_MOST}
        if dry_run:
            return self._count_prunable(params)
        pruned = Pruned()
        while True:
            with self._connection() as db:
                sids = [row[0] for row in db.execute(
                    f"SELECT call_sid FROM calls WHERE {_PRUNABLE_CALL} LIMIT {PRUNE_BATCH}",
                    params)]
            if not sids:
                break
            pruned += self._prune_calls(sids, params)
        for select, delete, count in _PRUNE_ORPHANS:
            while True:
                with self._connection() as db:
                    keys = [tuple(row) for row in db.execute(select, params)]
                if not keys:
                    break
                with self._transaction() as db:
                    removed = sum(db.execute(delete, (*key, before)).rowcount for key in keys)
                pruned += Pruned(**{count: removed})
        return pruned

    def _prune_calls(self, sids: Sequence[str], params: dict[str, float]) -> Pruned:
        named = {f"s{index}": sid for index, sid in enumerate(sids)}
        with self._transaction() as db:
            # Again under the lock: a step since the read may have made one live again.
            sids = [row[0] for row in db.execute(
                f"SELECT call_sid FROM calls WHERE call_sid IN"
                f" ({', '.join(':' + name for name in named)}) AND {_PRUNABLE_CALL}",
                {**named, **params})]
            if not sids:
                return Pruned()
            marks = ", ".join("?" * len(sids))
            events = db.execute(f"DELETE FROM events WHERE call_sid IN ({marks}) AND"
                                f" id < (SELECT max(id) FROM events)", sids).rowcount
            responses = db.execute(f"DELETE FROM responses WHERE call_sid IN ({marks})",
                                   sids).rowcount
            calls = db.execute(f"DELETE FROM calls WHERE call_sid IN ({marks})", sids).rowcount
        return Pruned(calls=calls, events=events, responses=responses)

    def _count_prunable(self, params: dict[str, float]) -> Pruned:
        prunable = f"SELECT call_sid FROM calls WHERE {_PRUNABLE_CALL}"
        orphan = "at < :before AND call_sid NOT IN (SELECT call_sid FROM calls)"
        with self._connection() as db:  # one statement: counts of one moment
            row = db.execute(
                f"SELECT (SELECT count(*) FROM calls WHERE {_PRUNABLE_CALL}),"
                f" (SELECT count(*) FROM events WHERE id < (SELECT max(id) FROM events)"
                f"  AND (call_sid IN ({prunable}) OR ({orphan}))),"
                f" (SELECT count(*) FROM responses WHERE call_sid IN ({prunable})"
                f"  OR ({orphan})),"
                f" (SELECT count(*) FROM blobs WHERE at < :before AND ({_PRUNED_BLOB}))",
                params).fetchone()
        return Pruned(calls=row[0], events=row[1], responses=row[2], blobs=row[3])

    # The audit log: ids as events' are (the largest plus one; the newest row never pruned).

    def record_audit(self, entry: AuditEntry) -> int:
        what = json.dumps(dict(entry.what), sort_keys=True)
        with self._transaction() as db:
            row = db.execute(
                "INSERT INTO audit (at, who, role, address, action, outcome, what)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (entry.at, entry.who, entry.role, entry.where, entry.action, entry.outcome,
                 what)).fetchone()
        return int(row[0])

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        query = "SELECT id, at, who, role, address, action, outcome, what FROM audit"
        params: list[Any] = []
        if before_id is not None:
            query += " WHERE id < ?"
            params.append(before_id)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(max(limit, 0))
        with self._connection() as db:
            rows = db.execute(query, params).fetchall()
        return [AuditEntry(id=row["id"], at=row["at"], who=row["who"], role=row["role"],
                           where=row["address"], action=row["action"], outcome=row["outcome"],
                           what=json.loads(row["what"])) for row in rows]

    def prune_audit(self, before: float, dry_run: bool = False) -> int:
        where = "at < ? AND id < (SELECT max(id) FROM audit)"
        if dry_run:
            with self._connection() as db:
                return int(db.execute(f"SELECT count(*) FROM audit WHERE {where}",
                                      (before,)).fetchone()[0])
        removed = 0
        while True:
            with self._transaction() as db:
                count = db.execute(f"DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE"
                                   f" {where} LIMIT {PRUNE_BATCH})", (before,)).rowcount
            removed += count
            if count < PRUNE_BATCH:
                return removed

    def ping(self) -> bool:
        try:
            with self._connection() as db:
                return bool(db.execute("SELECT 1").fetchone()[0] == 1)
        except sqlite3.Error:
            return False

    def close(self) -> None:
        """Close every thread's connection; a later call opens new ones."""
        with self._lock:
            self._generation += 1
            self._checkpoint_db = None  # among _connections
            connections = list(self._connections)
            if self._shared is not None:
                connections.append(self._shared)
                self._shared = None
            self._connections = weakref.WeakSet()
            self._local = threading.local()
        for db in connections:
            in_use = getattr(db, "in_use", None)
            if in_use is None:
                db.close()
            elif in_use.acquire(timeout=CLOSE_WAIT):
                try:
                    db.close()
                finally:
                    in_use.release()
            else:  # still busy: leave it to be closed when its thread lets go of it
                log.warning("%s: a connection still in use was left open at close", self.path)
        if self._writing.acquire(timeout=CLOSE_WAIT):  # no writer is using the lock file
            try:
                if self._writer_file is not None:
                    os.close(self._writer_file)
                    self._writer_file = None
            finally:
                self._writing.release()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

