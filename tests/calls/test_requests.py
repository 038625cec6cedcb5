"""The requests kept past their webhook: read back by key, and not remembered forever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.actions.exchange import Exchange, HttpAnswer, HttpRequest
from engine.calls import requests as requests_module
from engine.calls.requests import REQUEST_BLOB, Requests
from engine.store import open_store


def until(condition: Callable[..., bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class Answering:
    """A port that answers every request with the URL it was sent to, once `go` is set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.go.set()

    def send(self, request: HttpRequest, deadline: float | None = None) -> HttpAnswer:
        assert self.go.wait(5)
        return HttpAnswer(200, {"url": request.url},
                          Exchange(request.method, request.url, 200, 0.1, 10))


def test_answers_nobody_came_back_for_are_forgotten_but_stay_in_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests_module, "MAX_KEPT", 4)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        port = Answering()
        requests = Requests(port, store)
        for number in range(6):
            # The answer comes after the webhook has answered, and nobody comes back for it.
            key = f"k{number}"
            port.go.clear()
            assert requests.start(key, HttpRequest("GET", f"https://x/{number}"), 0.0) is None
            port.go.set()
            until(lambda key=key: store.get_blob(REQUEST_BLOB.format(key=key)) is not None
                  and requests._done[key].is_set())
        assert 0 < len(requests._done) <= 4
        later = Requests(Answering(), store).wait("k0", 1.0)
        assert later is not None and later.ok and later.data == {"url": "https://x/0"}
    finally:
        store.close()
