"""Gunicorn settings for Phoney: `gunicorn app:app` picks this file up from the project root.

A webhook can wait several seconds on the model (it gets at most ~10 s of Twilio's 15 s), so
workers are threaded: a blocked request holds a thread, not a process. Size `threads` for the
calls you expect to be waiting on the model at once per worker: each holds a thread for about
the model's time, so 100 turns released together on two workers of 32 threads queued 36 of them
behind the others (bench/concurrency.py); an idle thread costs next to nothing.

A ConversationRelay session (engine/web/relay.py) holds a thread for the whole conversation, so
each worker also keeps `GUNICORN_RELAY_THREADS` for them. With the webhook threads alone (two
workers of 64), 200 sessions did not fit: the 109th handshake waited for a thread that never came
free, and so did a webhook that reached the same worker (bench/relay.py). With 200 more, 200
sessions open at once on one machine and webhooks and event streams answer as with none
(tests/relay/test_relay_many_sessions.py; figures in docs/benchmarks.md). The worker class stays
gthread: the app's blocking clients (SQLite, Redis, the model's SDK) and its threads are what it
is written for, and threads hold these numbers; an async worker (gevent) was not tried.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Threads for webhooks and dashboard event streams (SSE_STREAMS_PER_PROCESS is a quarter of these).
webhook_threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# Threads for ConversationRelay sessions, on top: a live session holds its thread (and a reader
# thread of simple-websocket's, outside the pool) for as long as the caller talks. Connections
# are not spread evenly over the workers (whichever is awake accepts), so each worker gets room
# for the machine's sessions, not a share of them: 200 sessions on one worker still leave it its
# webhook threads. gthread starts a thread only when no idle one is left, so unused room costs
# nothing; in use a session costs about 0.5 MB and two threads (bench/relay.py).
relay_threads = int(os.environ.get("GUNICORN_RELAY_THREADS", "200"))
threads = webhook_threads + relay_threads
# Connections a worker holds at once: every thread busy, and as many idle keep-alive ones.
worker_connections = threads + 1000
# A worker's heartbeat, not a request's limit (gthread beats from its main loop): a webhook takes
# at most Twilio's 15 s, and a relay session may last the whole call.
timeout = 30
graceful_timeout = 20
keepalive = 5  # Twilio and proxies reuse connections
# Behind a TLS proxy: where gunicorn accepts X-Forwarded-Proto from for the request's scheme.
# (It never reads X-Forwarded-For: TRUSTED_PROXIES does that; see the README's "Deploying".)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# gunicorn's logger, with the same access line made for a fifth of the cost (engine/logs.py).
logger_class = "engine.logs.AccessLogger"
# Each worker builds its own app (store connections, publisher, reload watcher) after forking.
preload_app = False

# Prometheus with several workers: each worker is its own process with its own counters, and a
# scrape of /metrics reaches just one of them. Set PROMETHEUS_MULTIPROC_DIR to a directory only
# this server uses (e.g. /run/phoney-metrics, on tmpfs) before gunicorn starts: every worker then
# keeps its values in files there, and whichever worker answers a scrape adds all of them up.
# The hooks below empty it at start (values of an earlier run must not be added in) and tell
# prometheus_client when a worker is gone. Without the variable each worker serves its own.


def _metrics_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server):
    directory = _metrics_dir()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):  # prometheus_client's files, and nothing else
                os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    if _metrics_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
