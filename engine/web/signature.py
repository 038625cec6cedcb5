"""`X-Twilio-Signature` checks: the URL Twilio signed, and the check itself.

Twilio signs the URL it requested. Behind a TLS proxy the app sees `http://internal:8000/...`,
so the URL is rebuilt from `PUBLIC_BASE_URL` when configured, else from the request's scheme and
host, which are the forwarded ones only when they came through the `TRUSTED_PROXIES` proxies
(werkzeug's ProxyFix, engine/web/proxy.py): a client's own X-Forwarded-Host is never read, or a
request signed for another deployment on the same Twilio account would validate here.

The check accepts and refuses exactly what the twilio SDK's `RequestValidator.validate` does
(a signature over the URL with its port, or without it), but costs one HMAC instead of two for a
genuine request: the URL as it was requested first, and the other form only when that fails.
The SDK's `compute_signature` also costs an exception per form field on werkzeug's MultiDict
(it tries `getall` first), so the string it signs is built here, once, the same way.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from functools import lru_cache
from typing import Final
from urllib.parse import urlparse

from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request

DIGESTS: Final = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
"""The algorithms checked here, by the name the signature settings header gives (upper case);
any other goes to the SDK's own `validate` (which refuses the ones it does not know)."""

URL_FORMS_CACHE = 512
"""Signed URLs whose two forms are kept (a few routes and step numbers in practice)."""


def signed_url(request: Request, public_base_url: str | None) -> str:
    """The URL Twilio signed for `request`: PUBLIC_BASE_URL plus path and query when given,
    else the request's own scheme and host (forwarded ones only through trusted proxies).
    """
    query = request.query_string.decode("latin-1")
    path = request.path + (f"?{query}" if query else "")
    if public_base_url:
        return public_base_url.rstrip("/") + path
    return f"{request.scheme}://{request.host}{path}"


@lru_cache(maxsize=URL_FORMS_CACHE)
def url_forms(url: str) -> tuple[str, str]:
    """The two URLs the SDK checks a signature over, as it writes them (`add_port`,
    `remove_port`): first the one `url` is (with its port when it names one, else without),
    then the other. Raises ValueError, as the SDK does, for a port that is not a number."""
    parsed = urlparse(url)
    with_port, without_port = add_port(parsed), remove_port(parsed)
    return (with_port, without_port) if parsed.port else (without_port, with_port)


def signed_text(form: MultiDict[str, str] | Sequence[tuple[str, str]]) -> str:
    """What follows the URL in the signed string: each field name (sorted) followed by each of
    its distinct values (sorted), as the SDK's `compute_signature` concatenates them. `form` is
    werkzeug's parse of a form, or its (name, value) pairs as sent."""
    if not isinstance(form, MultiDict):
        # Sorting the distinct pairs orders them by name, then value: the SDK's order.
        return "".join(part for pair in sorted(set(form)) for part in pair)
    parts: list[str] = []
    for name, values in sorted(form.lists()):  # names are distinct: lists never compared
        if len(values) == 1:
            parts += name, values[0]
        else:
            for value in sorted(set(values)):
                parts += name, value
    return "".join(parts)


@lru_cache(maxsize=16)
def _key(auth_token: str) -> bytes:
    return auth_token.encode("utf-8")


def _matches(key: bytes, digest: str, message: str, signature: bytes) -> bool:
    mac = hmac.digest(key, message.encode("utf-8"), digest)
    return hmac.compare_digest(base64.b64encode(mac), signature)


def is_signed(request: Request, auth_token: str, public_base_url: str | None,
              form: MultiDict[str, str] | Sequence[tuple[str, str]] | None = None) -> bool:
    """True when `request` carries an `X-Twilio-Signature` that `auth_token` makes for its
    signed URL and `form` (default: werkzeug's parse of the request's; every field, as Twilio
    signs them), with the algorithm the signature settings header names, over the URL with its
    port or without it. Always False without a signature or a token.
    """
    if form is None:
        form = request.form
    signature = request.headers.get("X-Twilio-Signature")
    if not signature or not auth_token:
        return False
    algorithm = get_signature_algorithm(
        request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    digest = DIGESTS.get(algorithm.upper())
    url = signed_url(request, public_base_url)
    if digest is None:  # the SDK's answer (and its warning) for an algorithm not checked here
        given = form if isinstance(form, MultiDict) else MultiDict(form)
        return bool(RequestValidator(auth_token).validate(url, given, signature, algorithm))
    first, other = url_forms(url)
    text = signed_text(form)
    key = _key(auth_token)
    # The SDK compares characters; bytes compare the same way (UTF-8 is one-to-one).
    expected = signature.encode("utf-8", "surrogatepass")
    return _matches(key, digest, first + text, expected) \
        or _matches(key, digest, other + text, expected)
