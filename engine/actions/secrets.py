"""`${NAME}` in a request: read from the environment as it is sent, and nowhere else.

A flow writes `Authorization: "Bearer ${CLINIC_API_TOKEN}"`. The text that is stored, logged,
published, shown to the model and recorded on the call keeps `${CLINIC_API_TOKEN}` as written;
only the bytes sent over the connection hold the value. `Secrets.redact` takes the values back
out of anything that came back (an error message, an API echoing a header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}`: an environment variable's name, as a shell would spell it."""

MIN_REDACTED = 4
"""Values shorter than this are not searched for in answers: they would match ordinary text."""


class MissingSecret(LookupError):
    """A `${NAME}` whose variable is not set (or empty)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"${{{name}}} is not set: set {name} in the environment (or .env)")
        self.name = name


def references(text: str) -> list[str]:
    """The variable names `text` refers to, in order of appearance (for validation)."""
    return REFERENCE.findall(text)


@dataclass(frozen=True)
class Secrets:
    """The environment `${NAME}` reads, and what was put in, to take out again."""

    environ: Mapping[str, str]

    def expand(self, text: str) -> str:
        """`text` with each `${NAME}` replaced by its value; MissingSecret when one is unset."""
        def value(match: re.Match[str]) -> str:
            found = self.environ.get(match.group(1), "")
            if not found:
                raise MissingSecret(match.group(1))
            return found
        return REFERENCE.sub(value, text)

    def redact(self, text: str, used: Iterable[str]) -> str:
        """`text` with the values of the variables named in `used` written as `${NAME}` again."""
        for name in sorted(set(used), key=lambda n: -len(self.environ.get(n, ""))):
            found = self.environ.get(name, "")
            if len(found) >= MIN_REDACTED:
                text = text.replace(found, f"${{{name}}}")
        return text
