"""What one request costs in Python, without gunicorn, sockets or wrk: the app's share of the gap.

Each WSGI app is called in a loop with a prebuilt environ, first from one thread and then from
four (as a gunicorn worker runs them), and the wall time per request is reported. The service
runs on a fresh SQLite file, as ``make bench`` does, and once more with its counter writes
replaced by a commit that stores nothing, which isolates what the durable count costs. Last
comes a profile of ``/api?data=hits`` summed by package, so that each layer's share is named.

Run on its own with ``python -m bench.cost``; ``make bench`` prints it before the wrk rounds.
"""

import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from api import create_app
from api.storage import group_commit

from . import bare

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUESTS = 4000
THREADS = 4


def environ(path, query="", headers=None):
    """A GET as a WSGI server hands it to the app, with ``headers`` as WSGI keys
    (``HTTP_AUTHORIZATION``)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **(headers or {}),
    }


def start_response(_status, _headers, _exc_info=None):
    return None


def call(app, path, query, count):
    """Answer count requests in a row, reading each body as a server would."""
    for _ in range(count):
        body = app(environ(path, query), start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()


def per_request_us(app, path, query="", threads=1):
    """Wall time per request with this many threads answering at once; warmed up first."""
    call(app, path, query, 200)
    count = REQUESTS // threads
    workers = [
        threading.Thread(target=call, args=(app, path, query, count)) for _ in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - started) / (count * threads) * 1e6


# The whole request: the service's edge (api/web/edge.py) around Flask, or Flask's wsgi_app
# for the floor, which has no edge.
WHOLE = "the whole request (the edge, or Flask's wsgi_app without one)"
WHOLE_ENTRIES = (("api/web/edge.py", "__call__"), ("flask/app.py", "wsgi_app"))
# The layers of a request, each named by the function that enters it: (file suffix, name).
LAYERS = (
    ("Flask's wsgi_app", "flask/app.py", "wsgi_app"),
    ("request context: push, URL match, pop", "flask/ctx.py", "push"),
    ("request context: push, URL match, pop", "flask/ctx.py", "pop"),
    ("request context: push, URL match, pop", "flask/app.py", "request_context"),
    ("hit counting: group commit and the SQLite write", "api/counting.py", "count_hit"),
    ("error counting hook", "api/counting.py", "count_outcome"),
    ("body checks", "api/security.py", "check_body"),
    ("security headers", "api/security.py", "add_security_headers"),
    ("CORS headers", "api/speedups/cors.py", "add_headers"),
    ("Flask-RESTful dispatch, auth check and JSON", "flask/views.py", "view"),
    ("WSGI response: headers and body", "werkzeug/wrappers/response.py", "__call__"),
    ("request ID (the edge)", "api/web/request_ids.py", "of"),
    ("metrics: the request's count and time (the edge)", "api/metrics.py", "answered"),
)


def _inclusive(stats, suffix, name):
    """The seconds spent inside every function of that name in a file of that suffix."""
    return sum(
        values[3]
        for (filename, _line, function), values in stats.items()
        if function == name and filename.endswith(suffix)
    )


def breakdown(app, path, query, real_us):
    """Each layer's inclusive time under cProfile, scaled so the whole matches real_us."""
    call(app, path, query, 200)
    profiler = cProfile.Profile()
    profiler.runcall(call, app, path, query, REQUESTS)
    stats = pstats.Stats(profiler).stats
    whole = next(
        found for suffix, name in WHOLE_ENTRIES if (found := _inclusive(stats, suffix, name))
    )
    layers = {WHOLE: whole}
    for label, suffix, name in LAYERS:
        layers[label] = layers.get(label, 0) + _inclusive(stats, suffix, name)
    return {label: seconds / whole * real_us for label, seconds in layers.items()}


def service(database):
    """The service on a migrated SQLite file, rate limiting off as in the wrk rounds."""
    url = f"sqlite:///{database}"
    subprocess.run(
        [str(BIN / "flask"), "--app", "api", "db", "upgrade"],
        cwd=ROOT,
        env={"DATABASE_URL": url, "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )
    # The access log is off here: its cost is the wrk table's row without it, and thousands
    # of its lines would bury the report.
    return create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False, "ACCESS_LOG": False}
    )


def report():
    """Print the cost table and the breakdown as Markdown."""
    with tempfile.TemporaryDirectory() as tmp:
        app = service(Path(tmp) / "cost.sqlite3")
        rows = [("floor: bench/bare.py /", bare.app, "/", "")]
        for label, path, query in (
            ("/api?data=hits", "/api", "data=hits"),
            ("/api/pizza", "/api/pizza", ""),
            ("/", "/", ""),
        ):
            rows.append((f"service {label}", app, path, query))
        measured = [
            (label, per_request_us(wsgi, path, query), per_request_us(wsgi, path, query, THREADS))
            for label, wsgi, path, query in rows
        ]
        profile = breakdown(app, "/api", "data=hits", measured[1][1])
        floor_profile = breakdown(bare.app, "/", "", measured[0][1])
        # The same requests with every counter write answered without touching the database.
        app.extensions["counter_commits"] = group_commit.GroupCommit(
            lambda amounts, _asked, _touched, reads: {**dict.fromkeys(reads, 0), **amounts}
        )
        measured.append(
            (
                "service /api?data=hits, counter writes skipped",
                per_request_us(app, "/api", "data=hits"),
                per_request_us(app, "/api", "data=hits", THREADS),
            )
        )

    print(f"## Python cost per request, in process ({REQUESTS} requests, SQLite)")
    print()
    print(f"| app and path | 1 thread µs | {THREADS} threads µs |")
    print("|---|---:|---:|")
    for label, alone, threaded in measured:
        print(f"| {label} | {alone:.0f} | {threaded:.0f} |")
    print()
    print("## /api?data=hits, one thread: where the time goes")
    print()
    print("Inclusive time of each layer under cProfile, scaled to the measured total above;")
    print("the rest of the request is Flask's own dispatch between them.")
    print()
    print("| layer | floor µs | service µs |")
    print("|---|---:|---:|")
    for name, us in profile.items():
        print(f"| {name} | {floor_profile[name]:.0f} | {us:.0f} |")
    print(flush=True)


if __name__ == "__main__":
    report()
