"""The doctor's findings, how they are printed, and the order the checks run in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from engine.settings import Settings

Status = Literal["ok", "warn", "fail", "skip"]
"""ok: works; warn: works, but less than it could; fail: broken (exit 1); skip: not set up."""
LABELS: dict[Status, str] = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "--"}


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked (`part`: settings, store, model ...), how it
    went, and what was found or what to do about it."""

    part: str
    status: Status
    detail: str

    def line(self) -> str:
        """The finding as the doctor prints it."""
        return f"{LABELS[self.status]:<5} {self.part:<9} {self.detail}"


Check = Callable[[Settings], Iterable[Finding]]


def diagnose(settings: Settings, problems: Sequence[str],
             checks: Sequence[Check]) -> list[Finding]:
    """The settings' `problems` as findings, then each check's findings in order. A check that
    raises is reported as broken, never as a traceback."""
    findings = [Finding("settings", "fail", problem) for problem in problems] or \
        [Finding("settings", "ok", "every setting reads")]
    for check in checks:
        try:
            findings.extend(check(settings))
        except Exception as error:  # a doctor reports; it does not crash
            name = getattr(check, "__name__", "check").removeprefix("check_")
            findings.append(Finding(name, "fail", f"{type(error).__name__}: {error}"[:300]))
    return findings


def summary(findings: Sequence[Finding]) -> str:
    """The last line: how many things to fix, or that everything works."""
    broken = sum(finding.status == "fail" for finding in findings)
    if broken:
        return f"{broken} {'thing' if broken == 1 else 'things'} to fix (FAIL above)."
    return "Nothing is broken."
