"""Twilio's REST API client: one per app, made on first use, with a timeout.

`TWILIO_API_URL` sends the requests somewhere other than https://api.twilio.com (a local double
of the API in tests, a recording proxy): the HTTP client rewrites the scheme and host of every
Twilio API URL and keeps the path, query, body and Basic auth as they are.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from engine.settings import Settings

TIMEOUT_SECONDS = 10.0
"""Per request. The SDK has no default timeout: a stalled API must not hang a dashboard click."""

_TWILIO_API = re.compile(r"^https://api(?:\.[A-Za-z0-9-]+)*\.twilio\.com(?=[/?#]|$)")
"""https://api.twilio.com and its regional forms (https://api.dublin.ie1.twilio.com)."""


class NotConfigured(RuntimeError):
    """Call control needs an account SID and an auth token."""


class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """`TwilioHttpClient` that sends Twilio API requests to `base_url` when one is given."""

    def __init__(self, base_url: str = "", timeout: float = TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout)
        parts = urlsplit(base_url)
        if base_url and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(f"TWILIO_API_URL must be an http(s) URL, not {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}" if base_url else ""

    def rewrite(self, url: str) -> str:
        """`url` with an https://api...twilio.com scheme and host swapped for `base_url`; any
        other URL, or any URL without a `base_url`, unchanged.
        """
        if not self.base_url:
            return url
        return _TWILIO_API.sub(self.base_url, url, count=1)

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Any:
        """`TwilioHttpClient.request` to the rewritten URL, everything else passed as given."""
        return super().request(method, self.rewrite(url), params=params, data=data,
                               headers=headers, auth=auth, timeout=timeout,
                               allow_redirects=allow_redirects)


class TwilioRest:
    """The app's REST client, built lazily (and once) from the settings it was given."""

    def __init__(self, account_sid: str, auth_token: str, api_url: str = "",
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_url = api_url
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioRest:
        """A client for TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_API_URL (not built yet)."""
        return cls(settings.twilio_account_sid, settings.twilio_auth_token,
                   settings.twilio_api_url)

    @property
    def configured(self) -> bool:
        """True when both an account SID and an auth token are set."""
        return bool(self.account_sid and self.auth_token)

    def client(self) -> Any:
        """The `twilio.rest.Client`; raises NotConfigured without credentials."""
        if not self.configured:
            raise NotConfigured("call control needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        with self._lock:
            if self._client is None:
                self._client = Client(self.account_sid, self.auth_token,
                                      http_client=RedirectingHttpClient(self.api_url,
                                                                        self.timeout))
            return self._client
