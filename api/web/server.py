"""The web process: ``python -m api.web``, the Procfile's web line.

It serves ``create_app()`` with granian, a native HTTP server whose workers run the WSGI app in
a pool of Python threads, configured from the same environment as the app (``Config``):

- ``WEB_CONCURRENCY`` worker processes, each with ``WEB_THREADS`` threads for requests, the
  number the database pool is sized for; granian's default (256 threads) would queue them on
  the pool instead.
- ``HOST``:``PORT``, refused with one line if another process already listens there (granian
  binds with ``SO_REUSEPORT`` and would otherwise share the port in silence).
- HTTP/1.1 only: the request head limits hold for it (api/web/edge.py), and a platform's router
  speaks HTTP/1.1 to the dyno anyway.
- A connection may sit idle, or send its request head, for 5 s at most; then it is closed.
  Slow heads never reach a Python thread. Each worker holds ``WEB_MAX_CONNECTIONS`` (2048)
  connections at once; more wait in the listen queue until one closes, so the service stays
  on the air until that many idle or slow connections are held open per worker, and answers
  late (within those 5 s) beyond it. The open-file limit is raised to fit.
- A worker that dies is replaced (granian's default is to stop the whole server); a worker
  that dies again within seconds of its replacement stops it, rather than looping.
- On SIGTERM, requests in flight get ``GRACEFUL_TIMEOUT`` seconds (20), inside a platform's
  30 s, before workers are killed; without it granian would wait for them forever. Idle
  keep-alive connections, and connections that have sent nothing yet, are closed at once.
- Ctrl-C, SIGINT to the whole process group, stops as promptly: the workers leave SIGINT to
  the master, which sends each of them SIGTERM (``load_in_worker``).

The app is built once here, before anything listens, so that a setting it refuses ends the
process with its one line and exit status 3 (``StartupRefused``) and no port is ever opened.
Workers are forked with the app already built, as gunicorn's ``preload_app`` did.
"""

import atexit
import errno
import functools
import logging
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile

from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from .. import create_app, logs
from ..config import StartupRefused, require
from . import masking

# Idle keep-alive connections, and request heads still arriving, are closed after this long.
HEADER_READ_TIMEOUT_MS = 5000
# A request head that outgrows this buffer is refused by granian itself, with an empty 431;
# api/web/edge.py answers the tighter limits in the envelope first. granian checks between reads,
# so a head sent in one burst can pass a little over it.
HEAD_BUFFER_BYTES = 64 * 1024
# The names a WSGI environ uses for the request itself (CGI's meta-variables, headers as
# HTTP_*). granian starts every request's environ from a copy of the process environment, so a
# variable of that name would read as part of every request: an HTTP_AUTHORIZATION variable
# as a token sent, an HTTP_X_FORWARDED_FOR as a client's address. They are dropped at start.
REQUEST_VARIABLES = frozenset(
    {
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "RAW_URI",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_IDENT",
        "REMOTE_PORT",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "REQUEST_URI",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
    }
)


def is_request_variable(name):
    """Whether an environment variable would read as request data in a WSGI environ."""
    return (
        name.startswith("HTTP_")
        or name in REQUEST_VARIABLES
        or name.startswith(("wsgi.", "werkzeug."))
    )


def drop_request_variables(environ=os.environ):
    """Remove the variables a request's environ would inherit as request data; their names."""
    dropped = sorted(name for name in environ if is_request_variable(name))
    for name in dropped:
        del environ[name]
    return dropped


def ensure_port_free(host, port):
    """Refuse to start when another process listens on the port, instead of sharing it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores connections of a server stopped moments ago; without
        # SO_REUSEPORT the bind fails while any socket listens on the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise StartupRefused(
                f"Refusing to start: another process is listening on {host}:{port}."
            ) from None


def check_settings(config):
    """Refuse, with the setting's name and rule, what granian would reject or misread."""
    require(config, "PORT", lambda port: 1 <= port <= 65535, "a port number, 1 to 65535")
    require(config, "WEB_CONCURRENCY", lambda n: n >= 1, "1 or more")
    require(config, "GRACEFUL_TIMEOUT", lambda s: 1 <= s <= 1800, "from 1 to 1800 seconds")
    require(config, "WEB_MAX_CONNECTIONS", lambda n: n >= 16, "16 or more")


# Files a worker keeps open besides its connections: database connections, the lock file,
# logs, the listening socket, and room to spare.
OTHER_OPEN_FILES = 256


def fit_open_files(connections):
    """Raise this process's open-file limit, which forked workers inherit, to hold every
    connection a worker may serve; refuse to start when the hard limit is below that."""
    needed = connections + OTHER_OPEN_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise StartupRefused(
            f"Refusing to start: WEB_MAX_CONNECTIONS is {connections}, but a process may open "
            f"only {hard} files here (ulimit -Hn); lower it to {hard - OTHER_OPEN_FILES} or less."
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def load_in_worker(app, _target):
    """The app, for granian to serve in a worker, with SIGINT blocked there for good; each
    forked worker calls this before granian starts any thread in it.

    Ctrl-C sends SIGINT to the master and the workers at once, and the master then sends each
    worker SIGTERM. With two different signals pending, Linux may hand both to another thread
    than the main one. Python runs signal handlers in the main thread only, and granian keeps
    it asleep in an untimed ``Event.wait()`` that a signal caught elsewhere never interrupts:
    the worker never starts to stop, and is killed after ``GRACEFUL_TIMEOUT`` (granian 2.8.9
    logs that it "refused to gracefully stop"). Blocked in the main thread, whose mask every
    later thread inherits, SIGINT stays pending and never arrives: the master's SIGTERM is the
    one stop signal a worker gets, and the kernel hands a lone signal to the main thread.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return app


def build_server(config):
    """granian, set up as the module docstring says."""
    server = Granian(
        "api:create_app()",
        interface=Interfaces.WSGI,
        address=config["HOST"],
        port=config["PORT"],
        workers=config["WEB_CONCURRENCY"],
        blocking_threads=config["WEB_THREADS"],
        # Connections a worker serves at once (granian's default is 1024 / workers), and the
        # kernel's queue of new ones waiting to be accepted.
        backpressure=config["WEB_MAX_CONNECTIONS"],
        backlog=max(1024, config["WEB_MAX_CONNECTIONS"]),
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=HEADER_READ_TIMEOUT_MS,
            keep_alive=True,
            max_buffer_size=HEAD_BUFFER_BYTES,
        ),
        # The app writes the access log itself (api/web/access_log.py), under any server.
        log_access=False,
        # Its own lines (start, stop, workers) with a timestamp, or as JSON (api/logs.py).
        log_dictconfig=logs.granian_config(config),
        respawn_failed_workers=True,
        workers_kill_timeout=config["GRACEFUL_TIMEOUT"],
    )
    # granian's own messages name no request data today; masked all the same.
    masking.SafeMessageFilter.guard(logging.getLogger("_granian"), config["TOKEN_PREFIX"])
    return server


def metrics_folder():
    """A fresh folder for every worker's metrics (api/metrics.py), made before the app is
    built, since prometheus_client reads it when first imported, and removed at exit; one an
    operator names in PROMETHEUS_MULTIPROC_DIR is used as it is."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    pid = os.getpid()
    # Only the web process removes it: a worker that exits leaves its counts to be summed.
    atexit.register(lambda: os.getpid() == pid and shutil.rmtree(folder, ignore_errors=True))


def main():
    """Build the app, then serve it; a refusal before anything listens exits with one line."""
    dropped = drop_request_variables()
    metrics_folder()
    # Both refuse with StartupRefused, a SystemExit that has printed its one line.
    app = create_app()
    check_settings(app.config)
    fit_open_files(app.config["WEB_MAX_CONNECTIONS"])
    ensure_port_free(app.config["HOST"], app.config["PORT"])
    if dropped:
        app.logger.warning("ignored request-shaped environment variables: %s", ", ".join(dropped))
    server = build_server(app.config)
    # Every worker forks with this app; granian's loader would otherwise import and build it
    # again in each of them.
    server.serve(target_loader=functools.partial(load_in_worker, app))


if __name__ == "__main__":
    sys.exit(main())
