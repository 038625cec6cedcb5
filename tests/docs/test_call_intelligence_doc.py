"""docs/call-intelligence.md: its receiver's `verify` example accepts what the engine signs and
refuses a changed body, another secret and an old timestamp."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from engine.events.webhooks import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "call-intelligence.md"
SECRET = "whsec-docs-0123456789abcdef"


def example() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    [code] = [block for block in blocks if "def verify" in block]
    scope: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), scope)  # the documented code, as a reader copies it
    return scope["verify"]


def test_the_documented_verify_accepts_the_engines_signature_and_nothing_else() -> None:
    verify = example()
    body = b'{"id":"CA1-7","event":"call.end"}'
    now = str(int(time.time()))
    assert verify(SECRET, now, body, sign(SECRET, now, body))
    assert not verify(SECRET, now, body + b" ", sign(SECRET, now, body))
    assert not verify("another-secret-0123456789", now, body, sign(SECRET, now, body))
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, old, body, sign(SECRET, old, body))
    assert not verify(SECRET, "soon", body, sign(SECRET, "soon", body))


def test_the_readme_links_the_page() -> None:
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "(docs/call-intelligence.md)" in readme
