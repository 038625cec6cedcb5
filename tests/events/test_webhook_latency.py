"""A slow sink does not slow webhooks: they only write to the store; the publisher does the rest.

The same calls are made through the webhooks with and without a sink that takes a second per
event, side by side, and the webhooks' times compared as a ratio (not against a clock).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from flask import Flask

from engine.simulator import SimulatedCall
from tests.events.conftest import FakeSink, live_of, simulated_call, store_of, wait_until

SLOW = 1.0


def webhook_seconds(app: Flask) -> list[float]:
    call: SimulatedCall = simulated_call(app).start()
    call.say("Do you take walk-ins?")
    call.silence()
    call.say("What time do you open?")
    call.say("Nothing else, goodbye")
    call.hang_up()
    return [exchange.answer.seconds for exchange in call.exchanges]


def test_a_sink_taking_a_second_per_event_does_not_delay_webhooks(
        new_app: Callable[..., Flask]) -> None:
    slow = FakeSink(name="slow", max_batch=1, delay=SLOW)
    with_slow = new_app(EVENT_SINKS=[slow])
    without = new_app(PUBLISHER=False)  # the same store: the same writes, no publisher
    publisher = live_of(with_slow).publisher
    assert publisher is not None and publisher.running

    webhook_seconds(without)  # warm up both (templates, flow compilation, connections)
    webhook_seconds(with_slow)
    assert wait_until(lambda: len(slow.attempts) > 0)  # the slow sink is busy from here on
    plain, slowed = [], []
    for _ in range(2):  # interleaved, so load on the machine hits both alike
        plain += webhook_seconds(without)
        slowed += webhook_seconds(with_slow)

    backlog = store_of(with_slow).last_event_id() - (publisher.cursor("slow") or 0)
    assert backlog > 10  # the sink really was behind all along
    # Waiting for the sink would make each webhook take about a second per event it wrote.
    # A webhook that waited would be ~50 times slower; 3 leaves room for a noisy machine.
    ratio = statistics.median(slowed) / statistics.median(plain)
    assert ratio < 3.0, (statistics.median(slowed), statistics.median(plain))
    assert sum(slowed) / sum(plain) < 3.0
