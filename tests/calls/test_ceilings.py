"""The server-wide ceilings of denial of wallet, through the call service: MAX_LIVE_CALLS and
MODEL_CALLS_PER_HOUR (the per-caller limit and per-call ceilings are in test_service.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from engine.calls.limits import LINES_BUSY, MODEL_COUNTER, call_limits, parse_ceiling
from engine.runtime.state import Heard
from engine.settings import Settings
from engine.store import SQLiteStore
from engine.web.settings_check import check_settings
from tests.calls.conftest import Desk, call_sid, ringing
from tests.calls.fakes import elements, reply, spoken


def answered(desk: Desk, sid: str, caller: str = "+15557654321") -> str:
    return desk.service.incoming(ringing(sid, caller), None, desk.key())


def say(desk: Desk, sid: str, text: str) -> str:
    state = desk.store.get_state(sid)
    assert state is not None
    return desk.service.advance(sid, Heard(desk.clock(), text, 0.9, ""), state.step,
                                desk.key())


def errors(desk: Desk, sid: str) -> list[dict[str, object]]:
    return [dict(event.data) for event in desk.events(sid, "call.error")]


# -- MAX_LIVE_CALLS ------------------------------------------------------------------------------

def test_a_call_over_the_live_ceiling_hears_the_lines_are_busy(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="2")
    answered(desk, call_sid(1))
    answered(desk, call_sid(2), caller="+15550000002")

    twiml = answered(desk, call_sid(3), caller="+15550000003")

    assert spoken(twiml) == [LINES_BUSY]
    assert "Hangup" in elements(twiml)
    assert desk.store.get_state(call_sid(3)) is None
    [refusal] = errors(desk, call_sid(3))
    assert (refusal["kind"], refusal["live"], refusal["limit"]) == \
        ("rate_limit_live_calls", 2, 2)
    assert "call.error" in [event.name for event in desk.observed]


def test_a_call_that_ends_frees_a_line_for_the_next(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="1")
    answered(desk, call_sid(4))
    assert spoken(answered(desk, call_sid(5))) == [LINES_BUSY]

    desk.service.status_changed(call_sid(4), "completed", 20, desk.key())

    assert spoken(answered(desk, call_sid(6))) != [LINES_BUSY]
    assert desk.store.get_state(call_sid(6)) is not None


def test_a_call_hung_up_by_its_flow_frees_its_line(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="1")
    answered(desk, call_sid(7))
    desk.responder.script.append(reply("Bye now.", exit="bye"))
    assert "Hangup" in elements(say(desk, call_sid(7), "that's all"))

    assert spoken(answered(desk, call_sid(8))) != [LINES_BUSY]


def test_a_line_whose_end_never_came_is_free_after_max_call_seconds(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="1", max_call_seconds=600)
    answered(desk, call_sid(9))  # no status callback will come
    desk.clock.advance(599)
    assert spoken(answered(desk, call_sid(10))) == [LINES_BUSY]
    desk.clock.advance(2)
    assert spoken(answered(desk, call_sid(11))) != [LINES_BUSY]


def test_a_repeated_first_webhook_is_not_a_second_line(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="1")
    first = answered(desk, call_sid(12))
    # Twilio asking again for the call it rang (a new request key): the call carries on.
    assert spoken(answered(desk, call_sid(12))) != [LINES_BUSY]
    assert desk.service.incoming(ringing(call_sid(12)), None, "request-1") == first


def test_calls_ringing_at_once_never_take_more_lines_than_the_ceiling(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="3")
    racers = 10
    barrier = threading.Barrier(racers)
    heard: dict[int, list[str]] = {}

    def ring(i: int) -> None:
        barrier.wait()
        heard[i] = spoken(desk.service.incoming(ringing(call_sid(100 + i), f"+1555000{i:04d}"),
                                                None, f"ring-{i}"))

    threads = [threading.Thread(target=ring, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    busy = [i for i, words in heard.items() if words == [LINES_BUSY]]
    assert len(heard) == racers and len(busy) == racers - 3
    assert len(desk.store.list_calls()) == 3


def test_off_takes_every_call(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_live_calls="off")
    for i in range(5):
        assert spoken(answered(desk, call_sid(20 + i))) != [LINES_BUSY]


# -- MODEL_CALLS_PER_HOUR ------------------------------------------------------------------------

def test_a_turn_over_the_model_budget_takes_the_model_failure_edge(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(model_calls_per_hour="2")
    sid = call_sid(30)
    answered(desk, sid)
    desk.responder.script.extend([reply("One."), reply("Two."), reply("Never asked.")])
    assert spoken(say(desk, sid, "first")) == ["One."]
    assert spoken(say(desk, sid, "second")) == ["Two."]

    twiml = say(desk, sid, "third")

    assert spoken(twiml) == ["Sorry about that.", "Goodbye."]  # ai_failure: {then: sorry}
    assert len(desk.responder.asked) == 2  # the model was not asked
    kinds = [error["kind"] for error in errors(desk, sid)]
    assert kinds == ["model_budget", "ai_failure"]
    budget = errors(desk, sid)[0]
    assert (budget["limit"], budget["requests"], budget["node"]) == (2, 3, "talk")


def test_the_model_budget_is_shared_by_every_call_and_process(
        make_desk: Callable[..., Desk]) -> None:
    one = make_desk(model_calls_per_hour="1")
    assert isinstance(one.store, SQLiteStore)
    store_url = f"sqlite:///{one.store.path}"
    two = make_desk(model_calls_per_hour="1", store_url=store_url)
    answered(one, call_sid(31))
    answered(two, call_sid(32), caller="+15550000032")
    one.responder.script.append(reply("Hello."))
    two.responder.script.append(reply("Never asked."))
    assert spoken(say(one, call_sid(31), "hi")) == ["Hello."]
    assert spoken(say(two, call_sid(32), "hi"))[0] == "Sorry about that."
    assert two.responder.asked == []


def test_a_store_that_cannot_count_lets_the_model_be_asked(
        make_desk: Callable[..., Desk], monkeypatch: pytest.MonkeyPatch) -> None:
    desk = make_desk(model_calls_per_hour="1")
    sid = call_sid(33)
    answered(desk, sid)

    def broken(key: str, window_seconds: float) -> int:
        raise OSError("disk gone")

    monkeypatch.setattr(desk.store, "incr_window", broken)
    desk.responder.script.extend([reply("One."), reply("Two.")])
    assert spoken(say(desk, sid, "first")) == ["One."]
    assert spoken(say(desk, sid, "second")) == ["Two."]


def test_the_offline_responder_spends_no_budget(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(model_calls_per_hour="1")
    desk.responder.offline = True
    sid = call_sid(34)
    answered(desk, sid)
    desk.responder.script.extend([reply("One."), reply("Two.")])
    say(desk, sid, "first")
    assert spoken(say(desk, sid, "second")) == ["Two."]
    assert desk.store.lookup(sid, "-", counter=MODEL_COUNTER).count == 0


# -- settings ------------------------------------------------------------------------------------

def test_the_ceilings_are_on_by_default_and_off_turns_them_off() -> None:
    settings = Settings.load(environ={})
    limits = call_limits(settings.caller_call_limit, settings.max_call_turns,
                         settings.max_call_seconds, settings.max_live_calls,
                         settings.model_calls_per_hour)
    assert (limits.live_calls, limits.model_calls) == (100, 2000)
    off = Settings.load(environ={"MAX_LIVE_CALLS": "off", "MODEL_CALLS_PER_HOUR": "0"})
    assert (parse_ceiling(off.max_live_calls, "MAX_LIVE_CALLS"),
            parse_ceiling(off.model_calls_per_hour, "MODEL_CALLS_PER_HOUR")) == (None, None)
    empty = Settings.load(environ={"MAX_LIVE_CALLS": ""})
    assert empty.max_live_calls == "100"


@pytest.mark.parametrize("text", ["lots", "-1", "1.5", "10/hour"])
def test_a_ceiling_that_is_not_a_number_names_its_setting(text: str) -> None:
    with pytest.raises(ValueError, match="MAX_LIVE_CALLS"):
        parse_ceiling(text, "MAX_LIVE_CALLS")


def test_the_settings_check_at_start_names_a_bad_ceiling() -> None:
    settings = Settings.load(environ={"MAX_LIVE_CALLS": "lots", "MODEL_CALLS_PER_HOUR": "-5"})
    problems = check_settings(settings)
    assert any(line.startswith("MAX_LIVE_CALLS='lots'") for line in problems)
    assert any(line.startswith("MODEL_CALLS_PER_HOUR='-5'") for line in problems)
