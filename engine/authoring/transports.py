"""Transports for `engine.simulator.SimulatedCall`: an app in process, or a server over HTTP.

Both send exactly what Twilio would (a signed, form-encoded POST) and time the round trip, so a
call in the terminal or in a scenario goes through the same signature check and webhooks as a
real one.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from engine.simulator import HttpAnswer, Transport

HTTP_TIMEOUT = 20.0
"""Seconds to wait for a webhook answer: more than Twilio's 15, so a slow answer still shows."""


def app_transport(app: Flask) -> Transport:
    """Post through the app's test client: no sockets, the same app and signatures."""
    return client_transport(app.test_client())


def client_transport(client: FlaskClient) -> Transport:
    """Post through a Flask test client (keeping its cookies), timed."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        started = time.perf_counter()
        answer = client.post(parts.path + (f"?{parts.query}" if parts.query else ""),
                             data=dict(params), headers=dict(headers),
                             base_url=f"{parts.scheme}://{parts.netloc}")
        return HttpAnswer(answer.status_code, answer.get_data(as_text=True),
                          answer.content_type or "", time.perf_counter() - started)

    return post


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Twilio does not follow HTTP redirects on a webhook's POST; neither do we."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class Unreachable(ConnectionError):
    """The server could not be reached at all."""


def http_transport(url: str, params: Mapping[str, str],
                   headers: Mapping[str, str]) -> HttpAnswer:
    """Post over real HTTP (the standard library's client: no dependency to add)."""
    request = urllib.request.Request(
        url, data=urlencode(dict(params)).encode(), method="POST",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    started = time.perf_counter()
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT) as response:
            status, body = response.status, response.read()
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
        content_type = error.headers.get("Content-Type", "") if error.headers else ""
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"cannot reach {url}: {reason}") from error
    return HttpAnswer(status, body.decode("utf-8", "replace"), content_type,
                      time.perf_counter() - started)
