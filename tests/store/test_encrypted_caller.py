"""ENCRYPTION_KEY seals the whole caller: every field Twilio tells about them, not only the
number and name (city, state, zip and country locate a caller as well as a number does)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from engine.runtime.state import Caller
from engine.store import CallStore, NewEvent
from tests.store.test_encrypted import a_call, backend

__all__ = ["backend"]  # the fixture, used below by name

CALLER = Caller(number="+15557654321", city="Kalamazoo", state="MI", country="NZ",
                zip="49007", name="Dolores Umbridge")


def test_every_field_of_the_caller_is_sealed_at_rest(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, dump = backend
    store = open_("a long random passphrase for the tests")
    state = dataclasses.replace(a_call(), caller=CALLER)
    store.commit_step(None, state, [NewEvent("call.start", {"caller": CALLER.number})],
                      "start", "<Response/>", at=state.started_at)

    raw = dump()
    assert state.call_sid in raw  # the dump does see the call
    for value in ("Kalamazoo", "49007", "'MI'", '"MI"', '"NZ"', "Umbridge", "5557654321"):
        assert value not in raw, value

    assert store.get_state(state.call_sid) == state  # and it reads back in the clear
    summary = store.get_call(state.call_sid)
    assert summary is not None and summary.caller == CALLER.number
