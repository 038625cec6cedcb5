"""The URLs a Twilio number's voice configuration takes (README, "Pointing a Twilio number at
it"), as `make run` prints them before it serves.

They are only reachable by Twilio over `PUBLIC_BASE_URL`: a local address such as
http://127.0.0.1:5000 is never one to give Twilio, so without it the lines say how to expose the
server through a tunnel and set it instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

TWILIO_URLS = (
    ("A call comes in (webhook, HTTP POST)", "/api/incoming-call"),
    ("Primary handler fails (fallback URL)", "/api/incoming-call/fallback"),
    ("Call status changes (status callback)", "/api/call-status"),
)
"""The rows of the README's table: the console's setting and the path it takes."""


def twilio_urls(public_base_url: str) -> list[tuple[str, str]]:
    """Each Twilio setting with its URL over `public_base_url` (a trailing `/` ignored)."""
    base = public_base_url.strip().rstrip("/")
    return [(setting, base + path) for setting, path in TWILIO_URLS]


def startup_lines(public_base_url: str, host: str, port: int) -> list[str]:
    """What `make run` prints: the dashboard's local address, then Twilio's three URLs over
    `public_base_url`, or, when it is empty, one line on exposing the server and setting it."""
    lines = [f"Phoney on http://{host}:{port}/  (dashboard)"]
    if not public_base_url.strip():
        lines.append(f"Twilio cannot reach http://{host}:{port}: expose the server through a "
                     f"tunnel (e.g. `ngrok http {port}`) and set PUBLIC_BASE_URL to its https "
                     "address (in .env), then start again to see the URLs to give Twilio")
        return lines
    lines.append("Your Twilio number's Voice configuration (HTTP POST):")
    width = max(len(setting) for setting, _ in TWILIO_URLS)
    lines += [f"  {setting + ':':<{width + 1}} {url}"
              for setting, url in twilio_urls(public_base_url)]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.webhook_urls [--host H] [--port P]`: print `startup_lines` for
    PUBLIC_BASE_URL from the environment or `.env` (as `flask` reads it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    args = parser.parse_args(argv)
    public = os.environ.get("PUBLIC_BASE_URL")
    if public is None and args.env_file.is_file():
        from dotenv import dotenv_values  # the environment wins over .env, as under flask

        public = dotenv_values(args.env_file).get("PUBLIC_BASE_URL")
    for line in startup_lines(public or "", args.host, args.port):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
