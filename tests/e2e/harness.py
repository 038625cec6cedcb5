"""Real servers for end-to-end tests and bench/load.py: gunicorn processes on one Redis, and a
simulator transport that spreads a call's webhooks over them as a load balancer would.

    with Gunicorn(env={...}, log=path) as server:        # .venv/bin/gunicorn app:app -c ...
        server.wait_ready()
        transport = SpreadTransport(AUTH_TOKEN, [a.url, b.url])
        call = SimulatedCall(transport, a.url, AUTH_TOKEN).start()

Everything here talks to 127.0.0.1 only. Redis keys live under a per-run prefix, deleted with
SCAN + DEL of that prefix (never FLUSHDB: the server may be shared).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import redis
import requests
from twilio.request_validator import RequestValidator

from engine.settings import ENV_KEYS
from engine.simulator import HttpAnswer, Transport

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
READY_TIMEOUT = 90.0
"""Seconds a server may take to answer its first request (a loaded CI machine is slow)."""
TWILIO_TIMEOUT = 15.0
"""Twilio waits this long for a webhook's answer."""


# -- Redis ----------------------------------------------------------------------------------------

def redis_server_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS


def redis_unreachable(url: str | None = None) -> str | None:
    """Why the Redis server cannot be used, or None when it answers."""
    url = url or redis_server_url()
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"no Redis server answers at {url} ({error})"
    finally:
        client.close()
    return None


def new_prefix(kind: str = "e2e") -> str:
    return f"phoney-{kind}-{uuid.uuid4().hex[:16]}:"


def store_url(prefix: str, server: str | None = None) -> str:
    base = server or redis_server_url()
    return f"{base}{'&' if '?' in base else '?'}prefix={prefix}"


def delete_prefix(prefix: str, server: str | None = None) -> int:
    """Delete every key under `prefix` (glob characters escaped); the number deleted."""
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    client = redis.Redis.from_url(server or redis_server_url())
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


# -- gunicorn -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without Phoney's settings (a developer's own keys stay out),
    then `extra`."""
    env = {key: value for key, value in os.environ.items()
           if key not in ENV_KEYS and not key.startswith(("GUNICORN", "PHONEY_"))
           and key not in ("PORT", "HOST", "WEB_CONCURRENCY")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _has_setting(name: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS
    return any(setting.name == name for setting in KNOWN_SETTINGS)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return sorted(found)


class Gunicorn:
    """`gunicorn app:app -c gunicorn.conf.py` on 127.0.0.1:<port> in the project root.

    `env` is added to a clean environment (see `clean_environment`) with PORT, HOST and
    WEB_CONCURRENCY=`workers`. Output goes to `log`. Each server gets its own control socket
    (gunicorn 24+ puts one in ~/.gunicorn by default, which two servers would fight over).
    """

    def __init__(self, env: Mapping[str, str], log: Path, *, workers: int = 1,
                 port: int | None = None, root: Path = ROOT) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.workers = workers
        self.root = root
        self.env = clean_environment({**env, "PORT": str(self.port), "HOST": "127.0.0.1",
                                      "WEB_CONCURRENCY": str(workers)})
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [str(GUNICORN), "app:app", "-c", "gunicorn.conf.py"]
        if _has_setting("control_socket"):
            command += ["--control-socket", str(self.log.with_suffix(".ctl"))]
        return command

    def start(self) -> Gunicorn:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command(), cwd=self.root, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until a worker answers an unsigned webhook (403: the app is loaded and checking)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"gunicorn on port {self.port} exited: {self.log_tail()}")
            try:
                answer = requests.post(self.url + "/api/incoming-call", timeout=5)
                if answer.status_code == 403:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn on port {self.port} not ready after {timeout} s: "
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def wait_workers(self, count: int, timeout: float = READY_TIMEOUT,
                     without: Sequence[int] = ()) -> list[int]:
        """Until the master has `count` workers, none of them in `without`."""
        deadline = time.monotonic() + timeout
        while True:
            pids = [pid for pid in self.worker_pids() if pid not in without]
            if len(pids) >= count:
                return pids
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pids)} workers after {timeout} s, wanted {count}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float | None = None, graceful: bool = False) -> None:
        """Stop the master: SIGQUIT (quick shutdown) or SIGTERM (graceful), then SIGKILL to its
        process group after `timeout` (default 5 s, or 25 s when graceful).

        A worker with an open event stream does not exit by itself: its request thread runs
        until the stream's next write fails (a heartbeat, 15 s), and Python waits for gthread's
        threads at exit. gunicorn kills it after graceful_timeout; here the SIGKILL does.
        """
        timeout = timeout if timeout is not None else 25.0 if graceful else 5.0
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM if graceful else signal.SIGQUIT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- a transport that spreads webhooks over servers --------------------------------------------

@dataclass(frozen=True)
class Sent:
    """One webhook as delivered: which server answered, and how."""

    server: int
    url: str
    path: str
    params: Mapping[str, str]
    token: str
    status: int  # 0: no answer (connection failed every time, or Twilio's 15 s passed)
    body: str
    seconds: float  # the attempt that was answered
    total: float  # all attempts, as the caller waited
    retries: int  # attempts that failed to connect and were sent again
    timed_out: bool = False
    began: float = 0.0  # time.monotonic() when it was first sent


class SpreadTransport:
    """A `Transport` for `SimulatedCall` that sends each webhook to the next of `bases` in turn.

    The simulator signs the URL it means (on its own base URL); this transport sends the request
    to another server, so it signs it again for the URL actually requested, as Twilio would
    have signed a URL pointing there. Each webhook gets an `I-Twilio-Idempotency-Token`, and a
    request that fails to connect, or whose connection drops before a whole answer (a worker
    killed mid-request or mid-answer), is sent again with the same token, as Twilio retries;
    those are counted in `retries`, not as answers. `sent` lists every webhook with the server
    that answered it.
    """

    def __init__(self, auth_token: str, bases: Sequence[str], *, start: int = 0,
                 max_retries: int = 5, timeout: float = TWILIO_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        self.validator = RequestValidator(auth_token)
        self.bases = [base.rstrip("/") for base in bases]
        self._turn = itertools.count(start)
        self.max_retries = max_retries
        self.timeout = timeout
        self.session = session
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def target(self, url: str, index: int) -> str:
        parts = urlsplit(url)
        return self.bases[index] + parts.path + (f"?{parts.query}" if parts.query else "")

    def __call__(self, url: str, params: Mapping[str, str],
                 headers: Mapping[str, str]) -> HttpAnswer:
        with self._lock:
            index = next(self._turn) % len(self.bases)
        target = self.target(url, index)
        sent_headers = dict(headers)
        if "X-Twilio-Signature" in sent_headers:
            sent_headers["X-Twilio-Signature"] = str(
                self.validator.compute_signature(target, dict(params)))
        token = sent_headers.setdefault("I-Twilio-Idempotency-Token", uuid.uuid4().hex)
        post = self.session.post if self.session is not None else requests.post
        began = time.perf_counter()
        retries = 0
        status, body, content_type, seconds, timed_out = 0, "", "", 0.0, False
        while True:
            attempt = time.perf_counter()
            try:
                answer = post(target, data=dict(params), headers=sent_headers,
                              allow_redirects=False, timeout=(5.0, self.timeout))
            except requests.Timeout as error:
                if isinstance(error, requests.ConnectTimeout) and retries < self.max_retries:
                    retries += 1
                    continue
                timed_out, seconds = True, time.perf_counter() - attempt
                break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # No answer, or its connection dropped halfway through the body (a worker
                # killed while answering): Twilio got nothing usable and sends it again.
                if retries >= self.max_retries:
                    seconds = time.perf_counter() - attempt
                    break
                retries += 1
                time.sleep(min(0.1 * 2 ** retries, 2.0))
                continue
            status, body = answer.status_code, answer.text
            content_type = answer.headers.get("Content-Type", "")
            seconds = time.perf_counter() - attempt
            break
        record = Sent(index, target, urlsplit(target).path, dict(params), token, status, body,
                      seconds, time.perf_counter() - began, retries, timed_out,
                      time.monotonic() - (time.perf_counter() - began))
        with self._lock:
            self.sent.append(record)
        return HttpAnswer(status, body, content_type, seconds)


@dataclass(frozen=True)
class Window:
    """The event ids (first, last] stored while one webhook was being answered."""

    server: int
    path: str
    first: int
    last: int


class LastEventId(Protocol):
    def last_event_id(self) -> int: ...


def windowed(spread: SpreadTransport, store: LastEventId, windows: list[Window]) -> Transport:
    """`spread`, noting which events each webhook stored (the calls here run one at a time)."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        before = store.last_event_id()
        answer = spread(url, params, headers)
        sent = spread.sent[-1]
        windows.append(Window(sent.server, sent.path, before, store.last_event_id()))
        return answer

    return post


# -- the dashboard's event stream -----------------------------------------------------------------

@dataclass(frozen=True)
class StreamedEvent:
    id: int
    name: str
    data: str


class EventStream:
    """`GET <base>/api/events` read in a thread through a logged-in `session`, parsed as
    EventSource parses it. `opened` is set once the server has sent the stream's first comment
    (from then on every new event is on it)."""

    def __init__(self, session: requests.Session, base: str, query: str = "") -> None:
        self.session = session
        self.url = base.rstrip("/") + "/api/events" + (f"?{query}" if query else "")
        self.events: list[StreamedEvent] = []
        self.status = 0
        self.error: BaseException | None = None
        self.opened = threading.Event()
        self._changed = threading.Condition()
        self._response: requests.Response | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)

    def start(self, timeout: float = 15.0) -> EventStream:
        self._thread.start()
        if not self.opened.wait(timeout):
            raise TimeoutError(f"{self.url}: no answer in {timeout} s "
                               f"(status {self.status}, error {self.error!r})")
        if self.status != 200:
            raise AssertionError(f"{self.url} answered {self.status}")
        return self

    def _read(self) -> None:
        try:
            with self.session.get(self.url, stream=True, timeout=(5, 60)) as response:
                self._response = response
                self.status = response.status_code
                if response.status_code != 200:
                    self.opened.set()
                    return
                buffer = ""
                for chunk in response.iter_content(chunk_size=None, decode_unicode=True):
                    buffer += chunk
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        self._message(block)
        except Exception as error:  # closed by us, or the server went away
            if not self._closing:
                self.error = error
        finally:
            self.opened.set()
            with self._changed:
                self._changed.notify_all()

    def _message(self, block: str) -> None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name == "":
                self.opened.set()  # a comment: the stream is open
            else:
                fields[name] = value.removeprefix(" ")
        if "id" in fields and "event" in fields:
            with self._changed:
                self.events.append(StreamedEvent(int(fields["id"]), fields["event"],
                                                 fields.get("data", "")))
                self._changed.notify_all()

    def wait_for(self, ids: set[int], timeout: float = 20.0) -> set[int]:
        """Until every id in `ids` has been streamed (or `timeout`); the ids still missing."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = ids - {event.id for event in self.events}
                left = deadline - time.monotonic()
                if not missing or left <= 0 or not self._thread.is_alive():
                    return missing
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        self._closing = True
        response = self._response
        if response is not None:
            # Shut the socket down first: closing it alone does not wake the reading thread.
            sock = _socket_of(response)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                response.close()
        self._thread.join(timeout=5)


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed `requests` answer (urllib3 2.x, then 1.x internals)."""
    raw = response.raw
    connection = getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


# -- a TLS proxy in front of a server -------------------------------------------------------------

class ProxyTransport:
    """Stands for a TLS-terminating proxy: the simulator (Twilio) posts to the public https URL
    and signs it; this passes the request on to the server behind it over plain HTTP, signature
    untouched, with the headers a proxy adds:

    - `forward="host"`: nginx's usual `proxy_set_header Host $host` + `X-Forwarded-Proto`;
    - `forward="x-forwarded-host"`: `X-Forwarded-Host` + `X-Forwarded-Proto` (ALB, Traefik);
    - `forward=None`: nothing (a proxy that rewrites Host; only PUBLIC_BASE_URL can help then).
    """

    def __init__(self, public: str, internal: str, forward: str | None = "host") -> None:
        self.public = urlsplit(public)
        self.internal = internal.rstrip("/")
        self.forward = forward
        self.sent: list[tuple[str, int, str]] = []  # (public URL, status, body)

    def __call__(self, url: str, params: Mapping[str, str],
                 headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (self.public.scheme, self.public.netloc):
            raise AssertionError(f"{url} is not on the public address {self.public.geturl()}")
        target = self.internal + parts.path + (f"?{parts.query}" if parts.query else "")
        sent_headers = dict(headers)
        if self.forward is not None:
            sent_headers.update({"X-Forwarded-Proto": parts.scheme,
                                 "X-Forwarded-For": "203.0.113.7"})
            if self.forward == "host":
                sent_headers["Host"] = parts.netloc
            else:
                sent_headers["X-Forwarded-Host"] = parts.netloc
        began = time.perf_counter()
        answer = requests.post(target, data=dict(params), headers=sent_headers,
                               allow_redirects=False, timeout=TWILIO_TIMEOUT)
        self.sent.append((url, answer.status_code, answer.text))
        return HttpAnswer(answer.status_code, answer.text,
                          answer.headers.get("Content-Type", ""), time.perf_counter() - began)
