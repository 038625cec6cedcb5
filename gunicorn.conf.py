"""Gunicorn settings for Phoney: `gunicorn app:app` picks this file up from the project root.

A webhook can wait several seconds on the model (it gets at most ~10 s of Twilio's 15 s), so
workers are threaded: a blocked request holds a thread, not a process. Size `threads` for the
calls you expect to be waiting on the model at once per worker.
"""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
timeout = 30  # longer than any webhook may take; Twilio stops waiting at 15 s
graceful_timeout = 20
keepalive = 5  # Twilio and proxies reuse connections
# Behind a TLS proxy: trust its X-Forwarded-* headers only from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# Each worker builds its own app (store connections, publisher, reload watcher) after forking.
preload_app = False
