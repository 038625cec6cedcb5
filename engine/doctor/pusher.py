"""The doctor's Pusher check: one trigger to a test channel nobody listens to, read as the
event publisher reads a delivery (a soketi-style 200 with an `error` in the body is a failure).
"""

from __future__ import annotations

from collections.abc import Iterator

import pusher.errors
import requests

from engine.doctor.report import Finding
from engine.events.pusher_sink import refused_in_body
from engine.settings import Settings
from engine.web.live import pusher_sink

CHANNEL = "phoney-doctor"
EVENT = "phoney.doctor"


def check_pusher(settings: Settings) -> Iterator[Finding]:
    """Trigger `EVENT` on the test channel (private unless PUSHER_CHANNELS=public)."""
    given = [name for name, value in (("PUSHER_APP_ID", settings.pusher_app_id),
                                      ("PUSHER_KEY", settings.pusher_key),
                                      ("PUSHER_SECRET", settings.pusher_secret)) if value]
    if not given:
        yield Finding("pusher", "skip", "not set up: the dashboard reads the server's own "
                                        "event stream (/api/events)")
        return
    if len(given) < 3:
        yield Finding("pusher", "fail", f"only {', '.join(given)} set: Pusher needs "
                                        f"PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET")
        return
    try:
        sink = pusher_sink(settings)
    except ValueError:  # a setting reported above (PUSHER_APP_ID, PUSHER_CHANNELS ...)
        sink = None
    if sink is None:
        yield Finding("pusher", "skip", "not tried: fix the Pusher settings above first")
        return
    channel = CHANNEL if sink.channels.mode == "public" else f"private-{CHANNEL}"
    where = settings.pusher_host or (f"cluster {settings.pusher_cluster}"
                                     if settings.pusher_cluster else "Pusher's default cluster")
    try:
        answer = sink.client.trigger(channel, EVENT, {"check": True})
        refused_in_body(answer)
    except (pusher.errors.PusherBadAuth, pusher.errors.PusherForbidden) as error:
        yield Finding("pusher", "fail", f"{where} refused the keys ({error}): check PUSHER_KEY "
                                        f"and PUSHER_SECRET for app {settings.pusher_app_id}")
        return
    except requests.RequestException as error:
        yield Finding("pusher", "fail", f"{where} is unreachable ({type(error).__name__}): "
                                        f"check PUSHER_HOST or PUSHER_CLUSTER")
        return
    except Exception as error:
        yield Finding("pusher", "fail", f"{where}: {type(error).__name__}: {error}"[:300])
        return
    yield Finding("pusher", "ok", f"{where} accepted an event for app "
                                  f"{settings.pusher_app_id} ({sink.channels.mode} channels)")
