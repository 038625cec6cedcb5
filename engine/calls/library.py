"""The loaded flows: the live set for new calls, and every version a running call may still need.

A call records the version it started on; the documents of that version are kept in the store
(a blob under `flow:<version>`), so any server process, after any reload or restart, can compile
the same flow again and finish the call on it.

A reload is flow by flow: when the set does not load, every flow whose own file is clean and
whose personalities load goes live on its own, while a refused flow (its file, or a personality
it uses, in error) stays at its last good version; the refused edit's problems are kept to show.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.flows.loader import (
    LoadResult,
    display_path,
    load,
    load_project,
    registry_from_snapshot,
    yaml_files,
)
from engine.flows.model import Flow, Registry, frozen_mapping
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
        self.held_back: list[str] = []  # flows kept at their last good version by the refusal

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
                previous = self._live
                partial = self._flow_by_flow(self.refused) if previous is not None else None
                if partial is None or previous is None:
                    log.error("flows refused: %d errors; keeping the last good set",
                              len(self.refused))
                else:
                    registry, self.held_back = partial
                    if dict(registry.versions) != dict(previous.versions):  # a flow changed
                        self._live, self.loaded_at = registry, time.time()
                    for flow_id, version in registry.versions.items():
                        self._remember(version, registry, flow_id)
                    log.error("flows refused: %d errors; %s kept at the last good version, "
                              "the other flows reloaded", len(self.refused),
                              ", ".join(self.held_back) or "no flow")
                for problem in self.refused:
                    log.error("%s", problem)
                return result
            self.refused, self.refused_at, self.held_back = [], None, []
            self._live, self.loaded_at = result.registry, time.time()
            for flow_id, version in result.registry.versions.items():
                self._remember(version, result.registry, flow_id)
        return result

    def _flow_by_flow(self, errors: list[Problem]) -> tuple[Registry, list[str]]:
        """The live set after a refused reload: each flow file with no error of its own, loaded
        alone with the personalities it uses, and the last good version of every other flow
        still on disk; with the flows held back."""
        assert self._live is not None
        broken = {problem.path for problem in errors}
        personalities = [path for path in yaml_files([self.root / "personalities"])
                         if display_path(path, self.root) not in broken]
        flows, personas = dict(self._live.flows), dict(self._live.personalities)
        versions, snapshots = dict(self._live.versions), dict(self._live.snapshots)
        on_disk, held_back = set(), []
        for path in yaml_files([self.root / "flows"]):
            flow_id = path.stem
            on_disk.add(flow_id)
            alone = None if display_path(path, self.root) in broken else \
                load([path], context_paths=personalities, root=self.root).registry
            if alone is None or flow_id not in alone.flows:
                if flow_id in flows:
                    held_back.append(flow_id)
                continue
            flows[flow_id] = alone.flows[flow_id]
            versions[flow_id], snapshots[flow_id] = alone.versions[flow_id], \
                alone.snapshots[flow_id]
            personas.update(alone.personalities)
        for gone in set(flows) - on_disk:
            del flows[gone], versions[gone], snapshots[gone]
        return Registry(flows=frozen_mapping(flows), personalities=frozen_mapping(personas),
                        versions=frozen_mapping(versions),
                        snapshots=frozen_mapping(snapshots)), sorted(held_back)

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
