"""Problems found in flow and personality files, in the `path:line:col: message` form."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# Control characters and line separators a file's keys or values may carry into a message:
# printed raw they would split a problem over lines, or drive the terminal (ESC sequences).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with control characters and line separators escaped, as `repr` shows them."""
    return _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)


@dataclass(frozen=True, order=True)
class Problem:
    """One finding at `path:line:col` (1-based); ordered by path, line, column, message, so
    sorted lists read file by file. `str()` gives the one-line, printable message.
    """

    path: str
    line: int
    column: int
    message: str
    severity: str = "error"  # "error" fails validation; "warning" is only reported

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return printable(f"{self.path}:{self.line}:{self.column}: {prefix}{self.message}")

    def as_json(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict of its five fields."""
        return asdict(self)


def has_errors(problems: list[Problem]) -> bool:
    """True when any of `problems` is an error (warnings do not fail validation)."""
    return any(problem.severity == "error" for problem in problems)
