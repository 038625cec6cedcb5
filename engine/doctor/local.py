"""The doctor's checks that need no other service: the flows, the store, Twilio's credentials."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

from engine.doctor.report import Finding
from engine.flows.loader import load_project
from engine.flows.problems import has_errors
from engine.settings import Settings
from engine.store import open_store

ACCOUNT_SID = re.compile(r"\AAC[0-9a-fA-F]{32}\Z")
AUTH_TOKEN = re.compile(r"\A[0-9a-fA-F]{32}\Z")
PROBE_KEY = "doctor:probe"


def shown_url(url: str) -> str:
    """A URL without its password (a Redis URL may hold one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def check_flows(settings: Settings) -> Iterator[Finding]:
    """The flows and personalities validate, and DEFAULT_FLOW is one of them."""
    result = load_project(settings.project_root)
    errors = [problem for problem in result.problems if problem.severity == "error"]
    if result.registry is None or has_errors(result.problems):
        first = str(errors[0]) if errors else "they do not load"
        yield Finding("flows", "fail", f"{len(errors)} errors; run `flask flows validate` "
                                       f"(first: {first})"[:300])
        return
    flows = result.registry.flows
    if settings.default_flow not in flows:
        yield Finding("flows", "fail", f"DEFAULT_FLOW={settings.default_flow!r} is not a flow; "
                                       f"write one of {', '.join(sorted(flows))}")
        return
    yield Finding("flows", "ok", f"{len(flows)} flows validate; calls no flow claims go to "
                                 f"{settings.default_flow}")


def check_store(settings: Settings) -> Iterator[Finding]:
    """The store opens, answers, and reads back what was just written to it."""
    where = shown_url(settings.store_url)
    try:
        store = open_store(settings.store_url, encryption_key=settings.encryption_key)
    except Exception as error:
        yield Finding("store", "fail", f"{where} does not open: {type(error).__name__}: "
                                       f"{error}"[:300])
        return
    try:
        token = secrets.token_hex(8).encode()
        if not store.ping():
            yield Finding("store", "fail", f"{where} does not answer")
            return
        store.put_blob(PROBE_KEY, token)
        if store.get_blob(PROBE_KEY) != token:
            yield Finding("store", "fail", f"{where} did not read back what was written")
            return
        yield Finding("store", "ok", f"{where} opens, writes and reads back")
    except Exception as error:
        yield Finding("store", "fail", f"{where}: {type(error).__name__}: {error}"[:300])
    finally:
        store.close()


def check_twilio(settings: Settings) -> Iterator[Finding]:
    """TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN have the shape Twilio gives them."""
    sid, token = settings.twilio_account_sid.strip(), settings.twilio_auth_token.strip()
    if not token:
        yield Finding("twilio", "fail", "TWILIO_AUTH_TOKEN is not set: every webhook is "
                                        "refused (403); write the auth token of the account "
                                        "that owns your number (Twilio Console, Account Info)")
    elif not AUTH_TOKEN.match(token):
        yield Finding("twilio", "fail", f"TWILIO_AUTH_TOKEN is {len(token)} characters, not "
                                        f"the 32 hex digits of an auth token: webhooks will "
                                        f"fail their signature check; copy it again")
    if not sid:
        yield Finding("twilio", "warn", "TWILIO_ACCOUNT_SID is not set: the dashboard cannot "
                                        "transfer or end calls; write it (AC and 32 hex digits)")
    elif not ACCOUNT_SID.match(sid):
        yield Finding("twilio", "fail", f"TWILIO_ACCOUNT_SID={sid[:6]}...: write the account "
                                        f"SID, AC and 32 hex digits (Twilio Console)")
    if sid and token and ACCOUNT_SID.match(sid) and AUTH_TOKEN.match(token):
        yield Finding("twilio", "ok", f"account {sid[:6]}... and its auth token look right")
