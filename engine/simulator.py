"""A phone call as Twilio would make it: signed webhooks out, TwiML read and followed.

Used by `flask call` and by the end-to-end tests. It sends what Twilio sends (CallSid,
AccountSid, From, To, CallStatus, Direction, ApiVersion, caller location, SpeechResult and
Confidence, Digits, DialCallStatus, Recording*), signs every request with the auth token, and
follows the answer verb by verb: `<Say>`/`<Play>` are heard, `<Gather>` waits for the caller,
`<Redirect>` is followed, `<Dial>` and `<Record>` wait for their outcome, `<Hangup>` ends.
`<Connect><ConversationRelay>` waits for a relay session: `relay()` opens it over a real
WebSocket (engine/relay/simulator.py) and, when the session ends, posts the `<Connect action>`
with its `HandoffData`, as Twilio does; a hang-up closes a session still open.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

from twilio.request_validator import RequestValidator

from engine.relay.simulator import RelayLine

MAX_REDIRECTS = 20
DEFAULT_DURATION = 60
"""CallDuration of a simulated call that has no clock (seconds)."""


@dataclass(frozen=True)
class HttpAnswer:
    """One HTTP answer as a transport got it: status, body as text, content type, and the
    round trip in seconds (0 when not timed).
    """

    status: int
    body: str
    content_type: str = "text/xml"
    seconds: float = 0.0


Transport = Callable[[str, Mapping[str, str], Mapping[str, str]], HttpAnswer]
"""POST (url, form, headers) -> answer."""


@dataclass(frozen=True)
class Heard:
    """Something the caller heard: spoken text (with its voice) or played audio."""

    text: str
    voice: str = ""
    audio_url: str = ""
    streamed: bool = False  # a relay reply, sent as text tokens over the session's socket


@dataclass
class Exchange:
    """One webhook the call sent: the absolute URL, the form as sent, and the answer."""

    url: str
    params: dict[str, str]
    answer: HttpAnswer


@dataclass
class Waiting:
    """What the call waits for after the last answer."""

    kind: str  # gather, dial, record, relay, ended
    action: str = ""
    verb: ElementTree.Element | None = None
    rest: list[ElementTree.Element] = field(default_factory=list)
    base_url: str = ""


class CallError(AssertionError):
    """The server answered something Twilio would not accept."""


def new_call_sid() -> str:
    """A fresh random `CA...` CallSid (34 characters, like Twilio's)."""
    return "CA" + secrets.token_hex(16)


class SimulatedCall:
    """One inbound call driven as Twilio drives it, through `transport`.

    Every request carries the call's standard form fields and, unless told otherwise, an
    `X-Twilio-Signature` made with `auth_token` over the absolute URL. The caller's actions
    (`start`, `say`, `press`, `silence`, `dial_ends`, `record`) follow the answer, redirects
    included, until the call waits again. They raise `CallError` when the server answers what
    Twilio would reject (not HTTP 200, not XML, over 64 kB, an unknown verb, more than
    `MAX_REDIRECTS` redirects in a row) and, all but `start`, when the call is not waiting for
    that action. What was heard, dialed and sent accumulates in `heard`, `dialed` and
    `exchanges`. Not thread-safe: one caller.
    """

    def __init__(self, transport: Transport, base_url: str, auth_token: str, *,
                 to: str = "+15550001000", from_: str = "+15551230000",
                 call_sid: str | None = None, account_sid: str | None = None,
                 extra: Mapping[str, str] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.transport = transport
        # The call's own time (seconds): the status callback's CallDuration is the time from
        # `start` on it. Without one, the callback says DEFAULT_DURATION.
        self.clock = clock
        self.started_at: float | None = None
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.auth_token = auth_token
        self.call_sid = call_sid or new_call_sid()
        self.params = {
            "CallSid": self.call_sid, "AccountSid": account_sid or "AC" + "0" * 32,
            "From": from_, "To": to, "CallStatus": "ringing", "Direction": "inbound",
            "ApiVersion": "2010-04-01", "FromCity": "SPRINGFIELD", "FromState": "IL",
            "FromZip": "62701", "FromCountry": "US", "ToCountry": "US", **(extra or {}),
        }
        self.heard: list[Heard] = []
        self.exchanges: list[Exchange] = []
        self.waiting = Waiting("idle")
        self.dialed: list[str] = []
        self.recordings = 0
        self.line: RelayLine | None = None  # the relay session opened last
        self.on_relay_text: Callable[[str, bool], None] | None = None  # each token as it comes
        self._relay_text = ""  # the reply being streamed, not yet in `heard`
        self._relay_voice = ""

    # -- HTTP ----------------------------------------------------------------------------------

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """The `X-Twilio-Signature` Twilio would send for `params` posted to `url`."""
        return str(self.validator.compute_signature(url, dict(params)))

    def post(self, url: str, extra: Mapping[str, str] | None = None, *,
             signed: bool = True, headers: Mapping[str, str] | None = None) -> HttpAnswer:
        """POST the call's form, with `extra` on top, to `url` (relative to the base URL); the
        answer, unread and unchecked. Signed unless `signed=False`; recorded in `exchanges`.
        """
        absolute = urljoin(self.base_url + "/", url)
        params = {**self.params, **(extra or {})}
        sent_headers = dict(headers or {})
        if signed:
            sent_headers["X-Twilio-Signature"] = self.sign(absolute, params)
        answer = self.transport(absolute, params, sent_headers)
        self.exchanges.append(Exchange(absolute, params, answer))
        return answer

    def _follow(self, url: str, extra: Mapping[str, str] | None = None) -> None:
        for _ in range(MAX_REDIRECTS):
            answer = self.post(url, extra)
            if answer.status != 200:
                raise CallError(f"{url} answered HTTP {answer.status}: {answer.body[:200]}")
            if "xml" not in answer.content_type:
                raise CallError(f"{url} answered {answer.content_type}, not TwiML")
            if len(answer.body.encode()) > 64_000:
                raise CallError(f"{url} answered {len(answer.body)} bytes (over 64 kB)")
            base = urljoin(self.base_url + "/", url)
            redirect = self._read(self._parse(answer.body), base)
            if redirect is None:
                return
            url, extra = redirect, None
        raise CallError("too many redirects in a row")

    @staticmethod
    def _parse(body: str) -> list[ElementTree.Element]:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as error:
            raise CallError(f"answer is not XML: {error}") from error
        if root.tag != "Response":
            raise CallError(f"root element is <{root.tag}>, not <Response>")
        return list(root)

    def _hear(self, verb: ElementTree.Element) -> None:
        if verb.tag == "Say":
            self.heard.append(Heard((verb.text or "").strip(), verb.get("voice", "")))
        elif verb.tag == "Play":
            self.heard.append(Heard("", audio_url=(verb.text or "").strip()))

    def _read(self, verbs: list[ElementTree.Element], base: str) -> str | None:
        """Carry out verbs until the call waits; return a URL to redirect to, if any."""
        for index, verb in enumerate(verbs):
            rest = verbs[index + 1:]
            if verb.tag in ("Say", "Play", "Pause"):
                self._hear(verb)
            elif verb.tag == "Gather":
                for child in verb:
                    self._hear(child)
                self.waiting = Waiting("gather", urljoin(base, verb.get("action") or base),
                                       verb, rest, base)
                return None
            elif verb.tag == "Redirect":
                return urljoin(base, (verb.text or "").strip())
            elif verb.tag == "Dial":
                targets = [(child.text or "").strip() for child in verb] or \
                    [(verb.text or "").strip()]
                self.dialed += targets
                # No action: Twilio goes on with the next verb (unlike <Record> and <Gather>,
                # which post to the document's own URL).
                action = verb.get("action")
                self.waiting = Waiting("dial", urljoin(base, action) if action else "", verb,
                                       rest, base)
                return None
            elif verb.tag == "Record":
                self.waiting = Waiting("record", urljoin(base, verb.get("action") or ""), verb,
                                       rest, base)
                return None
            elif verb.tag == "Connect":
                relay = verb.find("ConversationRelay")
                if relay is None or not relay.get("url", "").startswith(("ws://", "wss://")):
                    raise CallError("<Connect> without a <ConversationRelay> WebSocket URL")
                greeting = relay.get("welcomeGreeting")
                if greeting:
                    self.heard.append(Heard(greeting, relay.get("voice", "")))
                action = verb.get("action")
                self.waiting = Waiting("relay", urljoin(base, action) if action else "", relay,
                                       rest, base)
                return None
            elif verb.tag == "Hangup":
                self.waiting = Waiting("ended")
                return None
            else:
                raise CallError(f"unexpected verb <{verb.tag}>")
        self.waiting = Waiting("ended")  # Twilio hangs up at the end of a document
        return None

    # -- what the caller does ------------------------------------------------------------------

    def start(self, path: str = "/api/incoming-call") -> SimulatedCall:
        """Ring in: post the incoming-call webhook at `path` and follow the answer until the
        call waits. Later requests carry `CallStatus=in-progress`.
        """
        self.params["CallStatus"] = "in-progress"
        if self.clock is not None:
            self.started_at = self.clock()
        self._follow(path, {"CallStatus": "ringing"})  # the incoming call webhook rings
        return self

    def _expect(self, kind: str) -> Waiting:
        if self.waiting.kind != kind:
            raise CallError(f"the call is waiting for {self.waiting.kind}, not {kind}")
        return self.waiting

    def say(self, speech: str, confidence: float = 0.92) -> SimulatedCall:
        """Answer the waiting `<Gather>` with `speech`; CallError when it does not listen for
        speech.
        """
        waiting = self._expect("gather")
        if "speech" not in (waiting.verb.get("input", "dtmf") if waiting.verb is not None
                            else ""):
            raise CallError("this <Gather> does not listen for speech")
        self._follow(waiting.action, {"SpeechResult": speech, "Confidence": f"{confidence}"})
        return self

    def press(self, digits: str) -> SimulatedCall:
        """Answer the waiting `<Gather>` with `digits`; CallError when it does not take DTMF."""
        waiting = self._expect("gather")
        if "dtmf" not in (waiting.verb.get("input", "dtmf") if waiting.verb is not None else ""):
            raise CallError("this <Gather> does not listen for digits")
        self._follow(waiting.action, {"Digits": digits})
        return self

    def silence(self) -> SimulatedCall:
        """Let the waiting `<Gather>` time out: post its action with no input when it sets
        `actionOnEmptyResult`, else carry on with the verbs after it.
        """
        waiting = self._expect("gather")
        verb = waiting.verb
        if verb is not None and verb.get("actionOnEmptyResult") == "true":
            self._follow(waiting.action)
        else:
            redirect = self._read(waiting.rest, waiting.base_url)
            if redirect:
                self._follow(redirect)
        return self

    def dial_ends(self, status: str = "completed", duration: int = 42) -> SimulatedCall:
        """End the waiting `<Dial>` with `status` (a DialCallStatus): post its action, or go
        on with the next verbs when it has none. The duration is sent only for `completed`.
        """
        waiting = self._expect("dial")
        extra = {"DialCallStatus": status, "DialCallSid": new_call_sid(),
                 "DialCallDuration": str(duration if status == "completed" else 0)}
        self._end_verb(waiting, extra)
        return self

    def record(self, duration: int = 12) -> SimulatedCall:
        """End the waiting `<Record>` after `duration` seconds and post its action with a
        recording; a 0-second recording skips the action, as Twilio does.
        """
        waiting = self._expect("record")
        self.recordings += 1
        if duration == 0:  # Twilio skips the action for an empty recording
            redirect = self._read(waiting.rest, waiting.base_url)
            if redirect:
                self._follow(redirect)
            return self
        self._follow(waiting.action, {
            "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/"
                            f"{self.params['AccountSid']}/Recordings/RE{secrets.token_hex(16)}",
            "RecordingSid": "RE" + secrets.token_hex(16), "RecordingDuration": str(duration)})
        return self

    def relay(self, *, signed: bool = True, setup: bool = True,
              timeout: float = 10.0, address: str | None = None) -> RelayLine:
        """Open the relay session the call waits for (signed unless `signed=False`) and send
        its `setup` (unless `setup=False`). When the session sends `end`, its `<Connect
        action>` is posted with the handoff and followed; the reply tokens and `end` are the
        line's. `address` (`host:port`) opens the socket there instead of at the URL's host
        (see `RelayLine.connect`). CallError when the call is not waiting for a relay."""
        waiting = self._expect("relay")
        assert waiting.verb is not None
        line = RelayLine.connect(waiting.verb.get("url", ""), self.auth_token, signed=signed,
                                 timeout=timeout, address=address)
        line.on_end = self._relay_ended
        line.on_text = self._relay_token
        self.line = line
        self._relay_text = ""
        self._relay_voice = waiting.verb.get("voice", "")
        if setup:
            line.setup(self.call_sid, from_=self.params["From"], to=self.params["To"],
                       account_sid=self.params["AccountSid"])
        return line

    def _relay_token(self, token: str, last: bool) -> None:
        self._relay_text += token
        if self.on_relay_text is not None:
            self.on_relay_text(token, last)
        if last:
            self.relay_heard()

    def relay_heard(self) -> None:
        """Count the relay reply streamed so far as heard (`heard`, marked `streamed`), as its
        `last` token does: the caller cut in, or the session ended mid-reply."""
        text = " ".join(self._relay_text.split())
        self._relay_text = ""
        if text:
            self.heard.append(Heard(text, self._relay_voice, streamed=True))

    def _end_verb(self, waiting: Waiting, extra: dict[str, str]) -> None:
        """As Twilio ends a `<Dial>` or `<Connect>`: post its action with `extra`, or, with
        none, go on with the verbs after it."""
        if waiting.action:
            self._follow(waiting.action, extra)
        else:
            redirect = self._read(waiting.rest, waiting.base_url)
            if redirect:
                self._follow(redirect)

    def _relay_ended(self, line: RelayLine) -> None:
        self.relay_heard()
        waiting = self.waiting
        if waiting.kind != "relay":
            return
        extra = {"SessionId": line.session_id, "SessionStatus": "ended",
                 "SessionDuration": "1", "HandoffData": line.ended or ""}
        self._end_verb(waiting, extra)

    def elapsed(self) -> int | None:
        """Whole seconds on `clock` since the call rang, or None without a clock or a start."""
        if self.clock is None or self.started_at is None:
            return None
        return max(0, round(self.clock() - self.started_at))

    def hang_up(self, status: str = "completed", duration: int | None = None) -> HttpAnswer:
        """The status callback Twilio sends when the call ends; CallDuration is `duration`, else
        the seconds on `clock` since the call rang, else DEFAULT_DURATION."""
        if duration is None:
            measured = self.elapsed()
            duration = DEFAULT_DURATION if measured is None else measured
        self.params["CallStatus"] = status
        self.waiting = Waiting("ended")
        if self.line is not None and not self.line.closed:
            self.line.close()  # the caller is gone: Twilio closes the session's socket
        return self.post("/api/call-status", {"CallDuration": str(duration)})

    @property
    def ended(self) -> bool:
        """Whether the call has ended: a `<Hangup>`, the end of a document, or `hang_up`."""
        return self.waiting.kind == "ended"

    def transcript(self) -> str:
        """Everything heard so far, ` | `-separated (a played file shows as its URL)."""
        return " | ".join(item.text or item.audio_url for item in self.heard)

    def last_heard(self, count: int = 1) -> str:
        """The text of the last `count` things heard, space-separated (played audio adds
        nothing).
        """
        return " ".join(item.text for item in self.heard[-count:])
