"""Hot reload: a daemon thread that polls flows/ and personalities/ and reloads the library.

No dependency: once a second it compares the names, sizes and modification times of the YAML
files (scenario files excluded: they do not change what calls run). On a change it calls
`FlowLibrary.reload()`, which puts a valid set live for new calls and refuses an invalid one
(logging its problems and keeping the last good set); calls in progress finish on the version
they started with either way, since each call is pinned to its version.

`create_app` starts one unless the config says `RELOAD=False`, or the app was made for a `flask`
command other than `flask run` (validate, export, test, call: short-lived, nothing to watch for).
The thread holds its watcher only weakly, so it ends by itself once its app is gone.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path

import click
from flask import Flask

from engine.calls.library import FlowLibrary
from engine.flows.loader import SCENARIO_SUFFIX

log = logging.getLogger(__name__)

WATCHED = ("flows", "personalities")
DEFAULT_INTERVAL = 1.0

Snapshot = frozenset[tuple[str, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Name, size and modification time (ns) of every flow and personality file."""
    found = set()
    for folder in WATCHED:
        try:
            entries = list((root / folder).iterdir())
        except OSError:
            continue
        for path in entries:
            if path.suffix not in (".yaml", ".yml") or path.name.endswith(SCENARIO_SUFFIX):
                continue
            try:
                stat = path.stat()
            except OSError:  # removed between listing and stat: the next poll sees it gone
                continue
            found.add((f"{folder}/{path.name}", stat.st_size, stat.st_mtime_ns))
    return frozenset(found)


def serving_requests() -> bool:
    """False when the app is being made for a short-lived `flask` command (not `flask run`)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return True  # a WSGI server (gunicorn), or a test making the app itself
    return context.command.name == "run"


class FlowWatcher:
    """Polls the library's flows/ and personalities/ every `interval` seconds and reloads
    the library when a file was added, removed or changed (`check`).

    `start` runs the polls in one daemon thread (a second `start` does nothing); the thread
    holds the watcher weakly and ends once it is stopped or garbage collected. `check` may
    also be called directly; it is not meant to run in two threads at once.
    """

    def __init__(self, library: FlowLibrary, interval: float = DEFAULT_INTERVAL) -> None:
        self.library = library
        self.interval = interval
        self.seen = snapshot(library.root)
        self.reloads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: reload when a file changed since the last one. True when it reloaded."""
        current = snapshot(self.library.root)
        if current == self.seen:
            return False
        self.seen = current
        self.reloads += 1
        result = self.library.reload()
        if result.registry is not None:
            log.info("flows reloaded: %s", ", ".join(
                f"{flow_id} {version}" for flow_id, version in result.registry.versions.items()))
        return True

    def start(self) -> None:
        """Start the polling thread, once; later calls do nothing (even after `stop`)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=_poll, args=(weakref.ref(self), self._stop,
                                                             self.interval),
                                        name="flow-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling, waiting up to `timeout` seconds for a reload in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __del__(self) -> None:
        self._stop.set()


def _poll(ref: weakref.ref[FlowWatcher], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        watcher = ref()
        if watcher is None:
            return
        try:
            watcher.check()
        except Exception:  # a reload must never kill the watcher: the next edit may fix it
            log.exception("flow watcher: reload failed")
        del watcher


def install_watcher(app: Flask, library: FlowLibrary) -> FlowWatcher | None:
    """Start hot reload for `app` unless its config says `RELOAD=False` or it is made for a
    short-lived command; `RELOAD_INTERVAL` (seconds) sets the poll. Kept on
    `app.extensions["phoney.watcher"]`."""
    if not app.config.get("RELOAD", True) or not serving_requests():
        return None
    watcher = FlowWatcher(library, float(app.config.get("RELOAD_INTERVAL", DEFAULT_INTERVAL)))
    watcher.start()
    app.extensions["phoney.watcher"] = watcher
    return watcher
