"""What `make run` prints for Twilio: the README's three URLs over PUBLIC_BASE_URL, or how to
get one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from engine.webhook_urls import TWILIO_URLS, startup_lines, twilio_urls

ROOT = Path(__file__).resolve().parents[1]


def test_the_urls_are_the_readmes_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (.+?) \| `https://YOUR-HOST(/\S*)` \|$", readme, re.M)
    assert rows == list(TWILIO_URLS)


def test_all_three_urls_over_the_public_base_url() -> None:
    lines = startup_lines("https://abc.ngrok.app/", "127.0.0.1", 5000)
    assert lines == [
        "Phoney on http://127.0.0.1:5000/  (dashboard)",
        "Your Twilio number's Voice configuration (HTTP POST):",
        "  A call comes in (webhook, HTTP POST):  https://abc.ngrok.app/api/incoming-call",
        "  Primary handler fails (fallback URL):  https://abc.ngrok.app/api/incoming-call/fallback",
        "  Call status changes (status callback): https://abc.ngrok.app/api/call-status",
    ]
    assert [url for _, url in twilio_urls("https://x.example")] == [
        "https://x.example/api/incoming-call", "https://x.example/api/incoming-call/fallback",
        "https://x.example/api/call-status"]


def test_without_a_public_base_url_one_line_says_how_to_get_one() -> None:
    lines = startup_lines("", "127.0.0.1", 8000)
    assert len(lines) == 2
    assert "127.0.0.1:8000/api" not in "\n".join(lines)  # no local address offered to Twilio
    assert lines[1] == ("Twilio cannot reach http://127.0.0.1:8000: expose the server through a "
                        "tunnel (e.g. `ngrok http 8000`) and set PUBLIC_BASE_URL to its https "
                        "address (in .env), then start again to see the URLs to give Twilio")


def _run(cwd: Path, **env: str) -> list[str]:
    clean = {key: value for key, value in os.environ.items() if key != "PUBLIC_BASE_URL"}
    done = subprocess.run([sys.executable, "-m", "engine.webhook_urls", "--port", "5001"],
                          cwd=cwd, env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_the_module_reads_the_environment_then_dot_env(tmp_path: Path) -> None:
    assert "ngrok http 5001" in _run(tmp_path)[1]
    (tmp_path / ".env").write_text("PUBLIC_BASE_URL=https://from-dotenv.example\n")
    assert _run(tmp_path)[2].endswith(" https://from-dotenv.example/api/incoming-call")
    assert _run(tmp_path, PUBLIC_BASE_URL="https://env.example")[2].endswith(
        " https://env.example/api/incoming-call")


def test_make_run_prints_them_with_the_module() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "-m engine.webhook_urls --host $(HOST) --port $(PORT)" in run
    assert "voice webhook" not in run
