"""Load a set of flow and personality files into one `Registry`, or say everything wrong with it.

One loader per document type, each in the same steps: read (YAML with marks), check the schema,
compile, then the graph checks, which need the whole set (personalities, numbers of other flows).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.flows.blend import blend_of, blend_parents, compile_blends, compile_documents
from engine.flows.checks import (
    FlowContext,
    check_flow,
    duplicate_numbers,
    personality_fallbacks,
)
from engine.flows.compile import compile_flow, compile_personality
from engine.flows.language_checks import check_languages, personality_voices
from engine.flows.model import Flow, Personality, Registry, frozen_mapping
from engine.flows.problems import Problem, has_errors
from engine.flows.schema import check_schema
from engine.flows.yamlread import Document, read_file

SCENARIO_SUFFIX = ".test.yaml"


@dataclass
class LoadResult:
    """What loading a set of files gave: a registry when nothing is in error, and all problems."""

    registry: Registry | None
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    compiled: dict[str, Flow] = field(default_factory=dict)
    """Every flow that compiled with no error in its own file: what scenario files are
    checked against when the set as a whole does not load."""

    @property
    def ok(self) -> bool:
        """True when nothing was in error, so `registry` is set (warnings may remain)."""
        return self.registry is not None


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories to their *.yaml / *.yml files, sorted, scenario files excluded."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")
                            and not p.name.endswith(SCENARIO_SUFFIX) and p.is_file())
        else:
            found.append(path)
    return found


def _kind_of(path: Path, document: Document) -> str:
    data = document.data if isinstance(document.data, dict) else {}
    if "flow" in data:
        return "flow"
    if "personality" in data and "nodes" not in data:
        return "personality"
    return "personality" if path.parent.name == "personalities" else "flow"


def _declared_id(document: Document, kind: str) -> str | None:
    """The id the document declares; None when it declares none, or something that is not a
    string (`flow: []`), which its schema check reports."""
    found = document.data.get(kind) if isinstance(document.data, dict) else None
    return found if isinstance(found, str) else None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name


def _id_matches_file(document: Document, key: str, path: Path) -> list[Problem]:
    declared = document.data.get(key)
    if declared != _stem(path):
        return [document.problem((key,), f"{key}: id '{declared}' differs from the file name "
                                         f"'{path.name}'; rename one so they match")]
    return []


def _digest(*parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def load(paths: Iterable[Path], context_paths: Iterable[Path] = (),
         root: Path | None = None) -> LoadResult:
    """Load `paths` (files, or directories of them); files under `context_paths` are loaded too
    (to resolve references) unless `paths` already hold a document of that kind and id.

    Bad files do not raise: every problem found, in any file, is in `problems` (sorted, each
    once; a context file's only when it is used), and `registry` is set only when none is an
    error. `files` lists the given files, directories expanded. Messages name files relative to
    `root`.
    """
    files = yaml_files(paths)
    result = LoadResult(registry=None, files=[display_path(path, root) for path in files])
    documents: dict[str, list[tuple[Path, Document]]] = {"flow": [], "personality": []}
    for path in files:
        document, problems = read_file(path, display_path(path, root))
        result.problems += problems
        if document is not None:
            documents[_kind_of(path, document)].append((path, document))
    # A context file fills in what the given ones do not declare, so validating one changed
    # personality still sees the others its fallbacks and the flows refer to.
    ids_given = {(kind, _declared_id(document, kind))
                 for kind, found in documents.items() for _, document in found}
    given = {path.resolve() for path in files}
    for path in yaml_files(context_paths):
        if path.resolve() in given:
            continue
        document, problems = read_file(path, display_path(path, root))
        if document is None:
            continue
        kind = _kind_of(path, document)
        if (kind, _declared_id(document, kind)) not in ids_given:
            documents[kind].append((path, document))
            result.problems += problems

    personalities: dict[str, tuple[Personality, Document]] = {}
    blended: dict[str, Document] = {}  # compiled once the personalities they blend are
    for path, document in documents["personality"]:
        problems = check_schema(document, "personality")
        if not problems:
            problems = _id_matches_file(document, "personality", path)
            if blend_of(document.data) is not None:
                blended[document.data["personality"]] = document
            else:
                personality = compile_personality(document.data, document.path)
                personalities[personality.id] = (personality, document)
                problems += personality_voices(personality, document)
        result.problems += problems
    result.problems += compile_blends(blended, personalities)
    result.problems += personality_fallbacks(personalities)
    known_personalities = {name: item[0] for name, item in personalities.items()}

    flows: dict[str, tuple[Flow, Document]] = {}
    for path, document in documents["flow"]:
        problems = check_schema(document, "flow")
        if not problems:
            problems = _id_matches_file(document, "flow", path)
            compiled = compile_flow(document.data, document.path)
            problems += check_flow(FlowContext(compiled, document, known_personalities))
            problems += check_languages(compiled.flow, document, known_personalities)
            flows[compiled.flow.id] = (compiled.flow, document)
        result.problems += problems
    result.problems += duplicate_numbers(flows)
    in_error = {problem.path for problem in result.problems if problem.severity == "error"}
    result.compiled = {flow_id: flow for flow_id, (flow, document) in flows.items()
                       if document.path not in in_error}
    result.problems = sorted(set(result.problems))
    if not has_errors(result.problems):
        result.registry = _registry(flows, personalities)
    return result


def _registry(flows: dict[str, tuple[Flow, Document]],
              personalities: dict[str, tuple[Personality, Document]]) -> Registry:
    versions, snapshots = {}, {}
    for flow_id, (flow, document) in flows.items():
        used = sorted(flow.personalities_used())
        fallbacks = [personalities[name][0].fallback for name in used if name in personalities]
        direct = set(used) | {name for name in fallbacks if name}
        # A blended personality is compiled again from its parts: they go in the snapshot too.
        documents = {name: doc.data for name, (_, doc) in personalities.items()}
        names = sorted(direct | {parent for name in direct
                                 for parent in blend_parents(name, documents)})
        snapshot = {"flow": document.data, "source": document.path,
                    "personalities": {name: personalities[name][1].data for name in names}}
        versions[flow_id] = _digest(snapshot["flow"], snapshot["personalities"])
        snapshots[flow_id] = frozen_mapping(snapshot)
    return Registry(
        flows=frozen_mapping({flow_id: flow for flow_id, (flow, _) in flows.items()}),
        personalities=frozen_mapping({name: p for name, (p, _) in personalities.items()}),
        versions=frozen_mapping(versions),
        snapshots=frozen_mapping(snapshots),
    )


def registry_from_snapshot(snapshot: Mapping[str, Any]) -> Registry:
    """Compile one flow again from the documents a running call recorded (its version)."""
    flow = compile_flow(snapshot["flow"], snapshot.get("source", "")).flow
    personalities = compile_documents(snapshot["personalities"])
    version = _digest(snapshot["flow"], snapshot["personalities"])
    return Registry(flows=frozen_mapping({flow.id: flow}),
                    personalities=frozen_mapping(personalities),
                    versions=frozen_mapping({flow.id: version}),
                    snapshots=frozen_mapping({flow.id: frozen_mapping(snapshot)}))


def display_path(path: Path, root: Path | None) -> str:
    """`path` relative to `root` for messages, when it lies below it."""
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def load_project(root: Path) -> LoadResult:
    """The bundled layout: `flows/` and `personalities/` under `root`."""
    return load([root / "flows", root / "personalities"], root=root)
