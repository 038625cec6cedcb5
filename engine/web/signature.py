"""`X-Twilio-Signature` checks: the URL Twilio signed, and the check itself.

Twilio signs the URL it requested. Behind a TLS proxy the app sees `http://internal:8000/...`,
so the URL is rebuilt from `PUBLIC_BASE_URL` when configured, else from the forwarded scheme and
host the proxy passes on.
"""

from __future__ import annotations

from flask import Request
from twilio.request_validator import RequestValidator, get_signature_algorithm


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None


def signed_url(request: Request, public_base_url: str | None) -> str:
    """The URL Twilio signed for `request`: PUBLIC_BASE_URL plus path and query when given,
    else the forwarded scheme and host (first of each list) or the request's own.
    """
    query = request.query_string.decode("latin-1")
    path = request.path + (f"?{query}" if query else "")
    if public_base_url:
        return public_base_url.rstrip("/") + path
    scheme = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    return f"{scheme}://{host}{path}"


def is_signed(request: Request, auth_token: str, public_base_url: str | None) -> bool:
    """True when `request` carries an `X-Twilio-Signature` that `auth_token` makes for its
    signed URL and form (with the algorithm the signature settings header names). Always False
    without a signature or a token.
    """
    signature = request.headers.get("X-Twilio-Signature")
    if not signature or not auth_token:
        return False
    algorithm = get_signature_algorithm(
        request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    validator = RequestValidator(auth_token)
    return bool(validator.validate(signed_url(request, public_base_url), request.form,
                                   signature, algorithm))
