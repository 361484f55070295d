"""Metrics in Prometheus' text format, at ``/metrics``, correct across every worker process.

What is measured, and where:

- ``api_requests_total{route, method, status}`` and ``api_request_duration_seconds{route}``:
  every answered request, counted and timed by the edge from its arrival to its access line
  (``api/web/edge.py``), edge refusals under the route ``edge``;
- ``api_requests_in_flight``: requests the workers are answering now;
- ``api_database_errors_total``: database work that failed and was answered 503
  (``api/errors.py``); the 503s themselves are ``api_requests_total{status="503"}``;
- ``api_counter_batch_size`` and ``api_counter_commit_seconds``: each group commit's
  increments and how long its transaction took (``api/storage/group_commit.py``);
- ``api_rate_limited_total{budget}``: requests refused 429, by budget (``client``,
  ``token``, ``failed-tokens``);
- ``api_token_checks_total{outcome}``: each token checked, ``valid``, ``unknown``,
  ``revoked``, ``expired``, ``rolled`` (a rolled secret past its grace) or ``lacks-scope``.

The web process runs several workers, each with its own memory, so prometheus_client runs in
its multiprocess mode: each worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(a fresh folder the web process makes at start, ``api/web/server.py``), and a scrape, which
any worker may answer, sums every worker's files. After N requests the request counter reads N
whichever worker answers. prometheus_client reads that variable when it is first imported, so
this module imports it only when an app is built. A worker that died leaves its counts, as
Prometheus expects of a counter, and its in-flight gauge is dropped at the next scrape.

Reading ``/metrics`` takes a token with the ``metrics`` scope, or a client address inside
``METRICS_PUBLIC_FROM`` (a scraper on a private network); it is never public by default.
``METRICS_ENABLED=false`` measures nothing and answers ``/metrics`` with 404.
"""

import ipaddress
import os
import re

from flask import current_app, request

from .config import require

# The buckets of the request timer and the commit timer, in seconds: a small API answers in
# milliseconds, and anything past the deadlines (5 s, 10 s) is a fault.
DURATIONS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
# Methods are the client's to write: others are counted as one.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where the edge finds the route a request matched (note_route).
ROUTE = "api.route"

_instruments = None


class Instruments:
    """The process's metrics, made once: prometheus_client keeps one registry a process."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "api_requests",
            "Requests answered, by route, method and status.",
            ("route", "method", "status"),
        )
        self.duration = Histogram(
            "api_request_duration_seconds",
            "Time from a request's arrival to its answer, by route.",
            ("route",),
            buckets=DURATIONS,
        )
        self.in_flight = Gauge(
            "api_requests_in_flight", "Requests being answered now.", multiprocess_mode="livesum"
        )
        self.database_errors = Counter(
            "api_database_errors", "Database work that failed, answered 503."
        )
        self.batch_size = Histogram(
            "api_counter_batch_size", "Increments per counter transaction.", buckets=BATCH_SIZES
        )
        self.commit_seconds = Histogram(
            "api_counter_commit_seconds",
            "Time of each counter transaction, its round trips included.",
            buckets=DURATIONS,
        )
        self.rate_limited = Counter(
            "api_rate_limited", "Requests refused 429, by budget.", ("budget",)
        )
        self.token_checks = Counter("api_token_checks", "Tokens checked, by outcome.", ("outcome",))
        # Children by label values, looked up once each: labels() costs more than inc().
        self._answered = {}
        self._timed = {}

    def answered(self, route, method, status, seconds):
        key = (route, method if method in METHODS else "other", status)
        child = self._answered.get(key)
        if child is None:
            child = self._answered[key] = self.requests.labels(*key)
        child.inc()
        timer = self._timed.get(route)
        if timer is None:
            timer = self._timed[route] = self.duration.labels(route)
        timer.observe(seconds)


def instruments():
    """This process's metrics, or None where they are off."""
    return _instruments


def note_route(response):
    """After the view: the route the request matched, for the edge's count (a label per rule,
    never per path)."""
    rule = request.url_rule
    request.environ[ROUTE] = rule.rule if rule is not None else "unrouted"
    return response


def database_error():
    if _instruments is not None:
        _instruments.database_errors.inc()


def rate_limited(budget):
    if _instruments is not None:
        _instruments.rate_limited.labels(budget).inc()


def token_checked(outcome):
    if _instruments is not None:
        _instruments.token_checks.labels(outcome).inc()


def batch_committed(size, seconds):
    if _instruments is not None:
        _instruments.batch_size.observe(size)
        _instruments.commit_seconds.observe(seconds)


def public_to(address):
    """Whether this client address may read /metrics without a token (METRICS_PUBLIC_FROM)."""
    networks = current_app.extensions["metrics_public_from"]
    if not networks or not address:
        return False
    try:
        found = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(found in network for network in networks)


def exposition():
    """Every worker's metrics in Prometheus' text format, and its media type."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    forget_dead_workers(folder)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return generate_latest(registry), CONTENT_TYPE_LATEST


_LIVE_GAUGE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_workers(folder):
    """Drop the in-flight gauges of worker processes that are gone (a worker killed and
    replaced), which would otherwise count their last requests forever."""
    from prometheus_client import multiprocess

    for name in os.listdir(folder):
        found = _LIVE_GAUGE.fullmatch(name)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            multiprocess.mark_process_dead(int(found.group(1)), folder)


def networks(text):
    """The networks METRICS_PUBLIC_FROM names, comma-separated (``10.0.0.0/8``)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text if part)


def init_app(app):
    """Make the process's metrics, once, unless METRICS_ENABLED is off."""
    global _instruments
    config = app.config
    try:
        app.extensions["metrics_public_from"] = networks(config["METRICS_PUBLIC_FROM"])
    except ValueError:
        require(
            config,
            "METRICS_PUBLIC_FROM",
            lambda _: False,
            "comma-separated networks, such as 10.0.0.0/8",
        )
    if not config["METRICS_ENABLED"]:
        return
    if _instruments is None:
        _instruments = Instruments()
    app.after_request(note_route)
