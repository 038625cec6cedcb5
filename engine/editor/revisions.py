"""Flow files as the editor saves them: an atomic write, a check that nobody saved in between,
and a revision (who, when, the text, the diff) for every change.

Revisions are kept beside the flows, in `flows/.revisions/<id>.jsonl` (one JSON object a line,
appended), rather than in the call store, because they describe files on this disk: every
server process that serves these flows reads the same directory (that is how hot reload works),
while two hosts sharing a Redis store each have their own flows/ and must not share one
history of two different files. Kept with the files, the history travels with them (a backup or
a copy of the project has both), survives the store's retention pruning, and needs no new port
on the store. Writers serialise on an advisory lock (`flock`) on `flows/.revisions/.lock`, so
the check of the version a save was based on and the write are one step for every process.

Nothing is lost: a save based on an older version than the file's is refused (`Conflict`, with
the text it was based on and the one now on disk), and a file changed on disk since the last
revision (an edit in a text editor, a `git pull`) is first recorded as a revision of its own, so
restoring a revision never throws such a change away without a way back.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Conflict", "FlowExists", "FlowFiles", "Revision", "UnknownFlow", "etag", "unified",
           "valid_flow_id"]

REVISIONS = ".revisions"
FLOW_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""The schema's pattern for a flow id (`^[a-z][a-z0-9_]*$`), bounded: ids become file names,
so nothing else (no `/`, `..`, dots or upper case) gets near the file system."""


def valid_flow_id(flow_id: str) -> bool:
    """True when `flow_id` may name a flow file."""
    return bool(FLOW_ID.fullmatch(flow_id))


def etag(text: str) -> str:
    """The version of a file's text that a save must be based on (16 hex digits of SHA-256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class UnknownFlow(LookupError):
    """No such flow file (or revision)."""


class FlowExists(FileExistsError):
    """A new flow was asked for under an id a file already has."""


@dataclass(frozen=True)
class Revision:
    """One version of a flow file: its number (from 1), when and by whom it was made, what
    made it (`note`), its text and etag, and the unified diff from the version before."""

    number: int
    at: float  # epoch seconds
    who: str
    note: str
    etag: str
    text: str
    diff: str

    def as_json(self, text: bool = True) -> dict[str, Any]:
        """The revision as JSON; without its full text when `text` is False."""
        found = asdict(self)
        if not text:
            del found["text"]
        return found


class Conflict(Exception):
    """The file changed since the version a save was based on: nothing was written.

    `base` is the text the save was based on, when a revision of it is known, `current` the
    text on disk now; `since` the revisions made after the base.
    """

    def __init__(self, current: str, base: str | None, since: list[Revision]) -> None:
        super().__init__("the flow was changed since the version this edit was based on")
        self.current = current
        self.base = base
        self.since = since


def unified(before: str, after: str, name: str) -> str:
    """A unified diff of two texts of the file `name` (empty when they are equal)."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


class FlowFiles:
    """The flow files of the project at `root`, read and written with their revisions."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.flows = root / "flows"
        self.clock = clock

    def path(self, flow_id: str) -> Path:
        """`flows/<id>.yaml`; ValueError for an id that may not name a file."""
        if not valid_flow_id(flow_id):
            raise ValueError(f"{flow_id!r} is not a flow id (lower case letters, digits and _, "
                             "starting with a letter)")
        return self.flows / f"{flow_id}.yaml"

    def read(self, flow_id: str) -> str:
        """The flow's text on disk; UnknownFlow when there is no such file."""
        try:
            return self.path(flow_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UnknownFlow(f"no flow {flow_id!r}") from None

    def ids(self) -> list[str]:
        """The ids of the flow files on disk, sorted."""
        return sorted(path.stem for path in self.flows.glob("*.yaml")
                      if not path.name.endswith(".test.yaml") and valid_flow_id(path.stem))

    def _log(self, flow_id: str) -> Path:
        return self.flows / REVISIONS / f"{self.path(flow_id).stem}.jsonl"

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        folder = self.flows / REVISIONS
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_log(self, flow_id: str) -> list[Revision]:
        try:
            lines = self._log(flow_id).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(Revision(**json.loads(line)))
            except (ValueError, TypeError):  # a line cut short by a crash: skipped, not fatal
                continue
        return found

    def revisions(self, flow_id: str) -> list[Revision]:
        """The flow's revisions, oldest first (empty for a flow never saved by the editor)."""
        self.path(flow_id)
        if not self._log(flow_id).exists():  # a read makes no folder: a flow never saved here
            return []
        with self._locked(exclusive=False):
            return self._read_log(flow_id)

    def revision(self, flow_id: str, number: int) -> Revision:
        """One revision; UnknownFlow when the flow has none of that number."""
        for found in self.revisions(flow_id):
            if found.number == number:
                return found
        raise UnknownFlow(f"flow {flow_id!r} has no revision {number}")

    def _append(self, flow_id: str, history: list[Revision], text: str, who: str,
                note: str) -> Revision:
        previous = history[-1].text if history else ""
        revision = Revision(number=(history[-1].number + 1) if history else 1,
                            at=self.clock(), who=who, note=note, etag=etag(text), text=text,
                            diff=unified(previous, text, f"flows/{flow_id}.yaml"))
        log = self._log(flow_id)
        with open(log, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short by a crash stays on its own
                    handle.write(b"\n")
            handle.write(json.dumps(revision.as_json(), sort_keys=True).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        history.append(revision)
        return revision

    def _write(self, path: Path, text: str) -> None:
        # A temporary file in the same folder, then a rename: the watcher (and every process
        # reading the flows) sees the old file or the new one, never half of one. Its name ends
        # in .tmp, which the watcher and the loader do not read.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            if path.exists():
                os.chmod(temporary, path.stat().st_mode & 0o777)
            else:
                os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def save(self, flow_id: str, text: str, base: str | None, who: str,
             note: str = "saved") -> Revision:
        """Write `text` to `flows/<id>.yaml` if the file is still at version `base` (its etag;
        None: the file must not exist yet), and record it as a revision.

        Raises Conflict when the file is at another version, FlowExists when `base` is None and
        the file exists, UnknownFlow when `base` is given and there is no file. A file changed
        on disk since its last revision is recorded first (`note` "changed on disk").
        """
        path = self.path(flow_id)
        with self._locked(exclusive=True):
            history = self._read_log(flow_id)
            try:
                current: str | None = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                current = None
            if base is None and current is not None:
                raise FlowExists(f"flow {flow_id!r} already exists")
            if base is not None and current is None:
                raise UnknownFlow(f"no flow {flow_id!r}")
            if current is not None and etag(current) != base:
                raise Conflict(current, _text_of(history, base), _since(history, base))
            if current is not None and (not history or history[-1].etag != etag(current)):
                self._append(flow_id, history, current, "disk",
                             "as it was on disk" if not history else "changed on disk")
            self._write(path, text)
            return self._append(flow_id, history, text, who, note)


def _text_of(history: list[Revision], version: str | None) -> str | None:
    for revision in reversed(history):
        if revision.etag == version:
            return revision.text
    return None


def _since(history: list[Revision], version: str | None) -> list[Revision]:
    for index in range(len(history) - 1, -1, -1):
        if history[index].etag == version:
            return history[index + 1:]
    return list(history)
