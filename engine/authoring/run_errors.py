"""What failed at run time inside a flow's own texts and conditions, as lines for `flask call`
and `flask flows test`.

A condition that fails at run time (a name the call does not have, a value of the wrong kind)
counts as false, and a text that fails is not said: the call goes on, so nothing but the
`call.error` event (kind `condition` or `template`) would tell. These lines say it where the
author is looking.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.store import StoredEvent

OUTCOMES = {"condition": "condition failed at run time, counted as false",
            "template": "text failed at run time, not said"}
"""What each kind of `call.error` from a flow's templates means for the call."""


def template_failures(events: Iterable[StoredEvent]) -> list[str]:
    """`condition failed at run time, counted as false: nodes.x.routes[0].when: ...`, one line
    for each such `call.error` among `events`, in order."""
    return [f"{OUTCOMES[kind]}: {event.data.get('detail', '')}" for event in events
            if event.name == "call.error" and (kind := str(event.data.get("kind"))) in OUTCOMES]
