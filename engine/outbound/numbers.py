"""Phone numbers as outbound calls take them: E.164, and the do-not-call list.

A number is written in any punctuation (`+1 (555) 000-1111`) and kept as E.164
(`+15550001111`); anything else (a national number without `+`, letters, a SIP address) is
refused with a message saying what to write. The do-not-call list is a text file of numbers,
one a line (`#` starts a comment), read from DO_NOT_CALL_FILE when a call is placed, so an
addition takes effect on the next call without a restart.
"""

from __future__ import annotations

import re
from pathlib import Path

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PUNCTUATION = re.compile(r"[\s().\-/]")


class BadNumber(ValueError):
    """A number that is not E.164 once its punctuation is removed."""


def e164(raw: object, what: str = "number") -> str:
    """`raw` as E.164, or BadNumber saying what was wrong and what to write."""
    text = raw.strip() if isinstance(raw, str) else ""
    number = _PUNCTUATION.sub("", text)
    if E164.fullmatch(number):
        return number
    shown = repr(text[:40]) if text else "nothing"
    if number.isdigit() and 10 <= len(number) <= 15:
        raise BadNumber(f"{what} {shown} has no country code: write it in E.164, such as "
                        f"+1{number[-10:]}")
    raise BadNumber(f"{what} {shown} is not a phone number: write it in E.164, a + and 7 to 15 "
                    f"digits, such as +15550001111")


class DoNotCall:
    """The numbers never to call: those of a file (none when `path` is None), read afresh
    when the file changes."""

    def __init__(self, path: Path | None = None, numbers: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.fixed = numbers
        self._seen: tuple[float, frozenset[str]] | None = None

    def numbers(self) -> frozenset[str]:
        """Every number on the list, as E.164; lines that are no number are skipped."""
        if self.path is None:
            return self.fixed
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self.fixed  # checked at start (settings_check); a file gone lists nobody
        if self._seen is None or self._seen[0] != mtime:
            found: set[str] = set()
            for line in self.path.read_text(encoding="utf-8").splitlines():
                entry = line.split("#", 1)[0].strip()
                if not entry:
                    continue
                try:
                    found.add(e164(entry))
                except BadNumber:
                    continue
            self._seen = (mtime, frozenset(found))
        return self.fixed | self._seen[1]

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and number in self.numbers()
