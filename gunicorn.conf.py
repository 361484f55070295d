"""gunicorn settings for the Procfile's web process; every value can be overridden per dyno."""

import os

# Platforms hand each dyno its port in $PORT; 8000 is the local default of `make run`.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# WEB_CONCURRENCY is the platforms' convention for the process count, sized to the dyno.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Threads let one process overlap the wait on a database commit with other requests, and
# keep-alive connections open, which sync workers cannot do. This is gunicorn's gthread worker,
# answering malformed HTTP in the API's error shape (api/gunicorn_worker.py).
worker_class = "api.gunicorn_worker.EnvelopeErrorWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Long enough for a client's next request to reuse its connection, short enough that idle
# connections do not pile up in a worker; platform routers keep theirs open far shorter.
keepalive = 5

# Platform routers give up after 30 s; a worker stuck longer than that is restarted.
timeout = 30
# On a restart or deploy, requests in flight get this long to finish, and their hits to
# commit, before the worker is stopped; platforms send SIGKILL 30 s after SIGTERM.
graceful_timeout = 20

# Load the app once in the master, so that a broken app fails the boot instead of every
# worker in a loop, and workers start fast.
preload_app = True

# HTTP that is too big is refused before the app sees it: a request line over 4 KiB (414), more
# than 100 headers or one over 8 KiB (431). These are gunicorn's defaults, stated because the
# tests and the README rely on them. Bodies are capped by the app (MAX_CONTENT_LENGTH).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Only ProxyFix (the PROXY_FIX_* settings) trusts X-Forwarded-* headers. gunicorn would
# otherwise trust X-Forwarded-Proto from 127.0.0.1 and let a local client claim https.
forwarded_allow_ips = ""

# Logs go to stdout/stderr, where the platform collects them.
# An empty GUNICORN_ACCESS_LOG turns the access log off: a platform's router logs every request
# already, and formatting and writing the line is a large share of a small request's cost
# (BENCHMARKS.md measures it).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"

# Both logs mask tokens wherever they could appear (?token=..., Authorization headers, anything
# shaped like a token), so that no secret a client sends lands in a log.
logger_class = "api.access_log.TokenMaskingLogger"

# gunicorn's runtime control socket lives in $HOME and would clash between two servers on one
# host; platforms manage processes with signals instead.
control_socket_disable = True
