"""Synthesised audio for Twilio's <Play>, with headers its media cache honours.

The URL is a hash of the text and the voice, so the content under a URL never changes: it can be
cached for a year, and a change of text or voice is a new URL.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, request

from engine.speech.cache import CONTENT_TYPE, AudioCache
from engine.web.services import services

media = Blueprint("media", __name__)

KEY = re.compile(r"^[0-9a-f]{40}$")


@media.get("/audio/<key>.mp3")
def audio(key: str) -> Response:
    """GET /audio/<key>.mp3: cached speech for <Play>, immutable with an ETag; 404 when absent."""
    if not KEY.fullmatch(key):
        abort(404)
    etag = f'"{key}"'
    if etag in request.headers.get("If-None-Match", ""):
        return Response(status=304, headers={"ETag": etag})
    body = AudioCache(services().store).get(key)
    if body is None:
        abort(404)
    return Response(body, mimetype=CONTENT_TYPE, headers={
        "Cache-Control": "public, max-age=31536000, immutable", "ETag": etag})
