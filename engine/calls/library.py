"""The loaded flows: the live set for new calls, and every version a running call may still need.

A call records the version it started on; the documents of that version are kept in the store
(a blob under `flow:<version>`), so any server process, after any reload or restart, can compile
the same flow again and finish the call on it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.flows.loader import LoadResult, load_project, registry_from_snapshot
from engine.flows.model import Flow, Registry
from engine.flows.problems import Problem
from engine.store import CallStore

log = logging.getLogger(__name__)


class NoFlowsLoaded(RuntimeError):
    """No valid set of flows has been loaded yet: there is nothing to answer a new call with."""


@dataclass(frozen=True)
class Pinned:
    """A flow at one version, with the personalities it was compiled with."""

    flow: Flow
    registry: Registry
    version: str


class FlowLibrary:
    """The flows of the project at `root`: the live set new calls start on, and every version
    a running call may still need (kept in memory, and as snapshots in `store`).

    Thread-safe: a reload (the watcher's thread) swaps the live set while webhooks read it.
    """

    def __init__(self, root: Path, store: CallStore) -> None:
        self.root = root
        self.store = store
        self._lock = threading.Lock()
        self._live: Registry | None = None
        self._by_version: dict[str, Registry] = {}
        self.refused: list[Problem] = []  # problems of the last refused reload
        self.loaded_at: float | None = None  # when the live set was loaded (epoch seconds)
        self.refused_at: float | None = None

    @property
    def ok(self) -> bool:
        """A valid set is loaded."""
        return self._live is not None

    @property
    def live(self) -> Registry:
        """The live set; NoFlowsLoaded when no valid set has ever loaded."""
        if self._live is None:
            raise NoFlowsLoaded("no valid set of flows has been loaded")
        return self._live

    def reload(self) -> LoadResult:
        """Load the files again; a valid set replaces the live one, an invalid one is refused."""
        result = load_project(self.root)
        with self._lock:
            if result.registry is None:
                self.refused = [p for p in result.problems if p.severity == "error"]
                self.refused_at = time.time()
                log.error("flows refused: %d errors; keeping the last good set",
                          len(self.refused))
                for problem in self.refused:
                    log.error("%s", problem)
                return result
            self.refused, self.refused_at = [], None
            self._live, self.loaded_at = result.registry, time.time()
            for flow_id, version in result.registry.versions.items():
                self._remember(version, result.registry, flow_id)
        return result

    def _remember(self, version: str, registry: Registry, flow_id: str) -> None:
        if version in self._by_version:
            return
        self._by_version[version] = registry
        snapshot = dict(registry.snapshots[flow_id])
        key = f"flow:{version}"
        if self.store.get_blob(key) is None:
            self.store.put_blob(key, json.dumps(snapshot, default=str).encode())

    def choose(self, flow_id: str | None, called: str, default_flow: str) -> Pinned | None:
        """The flow a new call uses: `?flow=`, else the one owning the number, else default."""
        live = self.live
        flow = (live.flows.get(flow_id) if flow_id else None) \
            or (None if flow_id else live.flow_for_number(called)) \
            or (None if flow_id else live.flows.get(default_flow))
        if flow is None:
            return None
        return Pinned(flow, live, live.versions[flow.id])

    def pinned(self, flow_id: str, version: str) -> Pinned | None:
        """The exact flow a running call started on, from memory or the store."""
        registry = self._by_version.get(version)
        if registry is None:
            blob = self.store.get_blob(f"flow:{version}")
            if blob is None:
                return None
            registry = registry_from_snapshot(json.loads(blob))
            with self._lock:
                self._by_version[version] = registry
        flow = registry.flows.get(flow_id)
        return Pinned(flow, registry, version) if flow is not None else None
