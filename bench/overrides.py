"""What each override of library code buys per request, against the library's own path.

Each override's app is built twice, on copies of a migrated database holding a token: as it is
and with the override replaced by the library's public path. Both must answer the measured
requests alike (status, headers, body; the seconds to the rate window's end aside); then they
are timed in process as bench/cost.py does (one thread, interleaved, medians of ROUNDS) and
their instructions counted under callgrind. Rate limits on, budgets out of reach; access log
off but in its own item; PostgreSQL items in databases of their own on BENCH_PG_URL.
"""

import contextlib
import fcntl
import gc
import logging
import operator
import os
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import flask
import flask_limiter
import flask_restful
import sqlalchemy as sa
from flask_cors.core import set_cors_headers
from flask_restful.representations.json import output_json as restful_output_json

from api import auth, config, create_app, policy, rate_limits, resources, storage
from api.resources import base
from api.speedups import cors, limiter, responses, restful
from api.storage import postgresql_writer, sqlite_writer
from api.storage.writer import WRITE_DEADLINE
from api.token_hashing import hash_token
from api.web import edge
from api.web.access_log import AccessLog

from . import cost

ROUNDS, REQUESTS, WARMUP, CALLGRIND_REQUESTS = 7, 600, 30, 120
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN, UNREACHABLE = "rapi_" + "b" * 43, "1000000000 per minute"
# Seconds until a rate window ends, and the request's own ID: the parts of an answer two apps
# may not share.
TIMED_HEADERS = {"RateLimit-Reset", "Retry-After", "X-Request-ID"}
HITS, ERRORS = ("/api", "data=hits", False), ("/api", "data=errors", True)
ROOT, PIZZA = ("/", "", False), ("/api/pizza", "", False)  # (path, query, token in a header)
ALL = (HITS, ERRORS, ROOT, PIZZA)
# A HEAD reads the committed total through the pool: a checkout, which GETs no longer make.
POOLED = ("/api", "data=hits", False, "HEAD")
LABELS = {HITS: "/api?data=hits", ERRORS: "/api?data=errors +token", ROOT: "/", PIZZA: "/api/pizza",
          POOLED: "HEAD /api?data=hits"}  # fmt: skip
# The access line through logging: the line alone, to standard output, as os.write sends it.
ACCESS = logging.getLogger("bench.access")
ACCESS.addHandler(logging.StreamHandler(sys.stdout))
ACCESS.propagate = False  # the app's own handlers would write each line again, to stderr
ACCESS.setLevel(logging.INFO)


def cors_every_time(cors, response, _method):
    """flask-cors's ``set_cors_headers`` on every response, with the shipped options."""
    set_cors_headers(response, cors.options)
    if not cors.wildcard:
        response.vary.add("Origin")


def httpauth_every_time(view, *args, **kwargs):
    """Flask-HTTPAuth's optional login around every view, whether a token came or not."""
    return auth.auth.login_required(optional=True)(view)(*args, **kwargs)


class CoreSQLiteWriter(sqlite_writer.SQLiteWriter):
    # The same statements through Core, one engine.begin() per batch, in the same turn.
    def _commit(self, amounts, params):
        fcntl.flock(self._turns_fd, fcntl.LOCK_EX)
        try:
            with self.engine.begin() as connection:
                totals = {}
                for name, amount in amounts.items():
                    values = {**params, "name": name, "amount": amount}
                    connection.execute(sqlite_writer.BUMP_HOUR, values)
                    total = connection.execute(sqlite_writer.BUMP_TOTAL_RETURNING_SUM, values)
                    totals[name] = total.scalar_one()
                for name in params["reads"]:
                    total = connection.execute(sqlite_writer.READ_TOTAL, {"name": name})
                    totals[name] = total.scalar_one()
                return totals
        finally:
            fcntl.flock(self._turns_fd, fcntl.LOCK_UN)


class CorePostgreSQLWriter(postgresql_writer.PostgreSQLWriter):
    def _commit(self, amounts, params):
        params["names"], params["amounts"] = list(amounts), list(amounts.values())
        params["deadline"] = storage.clock.seconds() + WRITE_DEADLINE.total_seconds()
        with self.engine.begin() as connection:
            rows = connection.execute(postgresql_writer.INCREMENT_BATCH, params).all()
            return {name: total for name, total, _version in rows}


CORE = {"sqlite": CoreSQLiteWriter, "postgresql": CorePostgreSQLWriter}
# patches, (object, attribute, the library's own), and settings make the app without it.
Item = namedtuple("Item", "name library paths patches both without database")
Item.__new__.__defaults__ = ({}, {}, "sqlite")
ITEMS = [
    Item("responses.FinishedResponse", "Werkzeug", ALL,
         [(responses.FinishedResponse, "get_wsgi_headers", flask.Response.get_wsgi_headers)]),
    Item("responses.SyncOnceFlask", "Flask", (HITS, ROOT),
         [(responses.SyncOnceFlask, "ensure_sync", flask.Flask.ensure_sync)]),
    Item("limiter.RequestLimiter.context", "Flask-Limiter", (HITS, ERRORS),
         [(limiter.RequestLimiter, "context", flask_limiter.Limiter.context)]),
    Item("limiter.ParsedOnce", "Flask-Limiter", (HITS, ERRORS),
         [(rate_limits, "ParsedOnce", flask_limiter.ApplicationLimit)]),
    Item("limiter.FixedWindowMemory (memory://)", "limits", (HITS, ERRORS),
         [(rate_limits, "storage_uri", lambda settings: settings["RATELIMIT_STORAGE_URI"])]),
    Item("cors.SimpleCors", "flask-cors", (HITS, PIZZA),
         [(cors.SimpleCors, "add_headers", cors_every_time)]),
    Item("restful.JsonOnlyApi", "Flask-RESTful", (HITS, ERRORS),
         [(restful.JsonOnlyApi, "make_response", flask_restful.Api.make_response),
          (resources, "json_answer", lambda _dumps: restful_output_json)]),
    Item("httpauth.only_when_sent", "Flask-HTTPAuth", (HITS, ERRORS),
         [(module, "with_optional_token", httpauth_every_time) for module in (base, auth)]),
    Item("pool.drop_closed_connections [PG]", "SQLAlchemy", (POOLED,), [], {},
         {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True}}, "postgresql"),
    *(Item(f"dbapi: the counter writer{' [PG]' * (kind != 'sqlite')}", "SQLAlchemy", (HITS,),
           [(storage, "writer_for", lambda engine, s: CORE[engine.dialect.name](engine, s))],
           {}, {}, kind) for kind in CORE),
    Item("access log by os.write", f"logging (Python {sys.version[:6]})", (HITS, ERRORS),
         [(AccessLog, "log", lambda log, environ, status, size, seconds=0.0:
           ACCESS.info(log.line(environ, status, size, seconds)))], {"ACCESS_LOG": True}),
    Item("edge joins small answers", "granian", (HITS, ROOT, PIZZA), [(edge, "COLLECT_UP_TO", -1)]),
    Item("policy kept in the facts", "Flask", ALL,
         [(policy, "current", lambda: policy._route_policy())]),
]  # fmt: skip


@contextlib.contextmanager
def applied(patches):
    with contextlib.ExitStack() as stack:
        for target, name, value in patches:
            stack.enter_context(mock.patch.object(target, name, value))
        yield


class Databases:
    """Each app on a fresh copy of a migrated database: a SQLite file or a PostgreSQL database."""

    def __init__(self, tmp):
        self.tmp, self.created, self.apps, self.admin = Path(tmp), [], [], None
        admin = sa.create_engine(config.database_url(PG_URL), isolation_level="AUTOCOMMIT")
        with contextlib.suppress(sa.exc.OperationalError):
            admin.connect().close()
            self.admin = admin
        self.pg = self.admin and self.template(self.create())
        self.sqlite = self.template(f"sqlite:///{tmp}/template.sqlite3")

    def create(self, template=None):
        name = f"inv_overrides_{os.getpid()}_{len(self.created)}"
        suffix = f' TEMPLATE "{sa.engine.make_url(template).database}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{suffix}'))
        self.created.append(name)
        return sa.engine.make_url(PG_URL).set(database=name).render_as_string(False)

    def template(self, url):
        migrate = [str(cost.BIN / "flask"), "--app", "api", "db", "upgrade"]
        environment = {"DATABASE_URL": url, "PATH": str(cost.BIN)}
        subprocess.run(migrate, cwd=cost.ROOT, env=environment, check=True, capture_output=True)
        with self.app(url, {"RATELIMIT_ENABLED": False}).app_context():
            storage.create_token("bench", hash_token(TOKEN))
            storage.db.engine.dispose()
        return url

    def app(self, url, extra):
        if url == "postgresql":
            url = self.create(self.pg)
        elif url == "sqlite":
            url = f"sqlite:///{self.tmp}/{len(self.apps)}.sqlite3"
            Path(url[10:]).write_bytes(Path(self.sqlite[10:]).read_bytes())
        settings = {"SQLALCHEMY_DATABASE_URI": config.database_url(url), "ACCESS_LOG": False}
        settings |= {"RATELIMIT_ENABLED": True, "RATELIMIT_PER_CLIENT": UNREACHABLE}
        self.apps.append(create_app({**settings, "RATELIMIT_PER_TOKEN": UNREACHABLE, **extra}))
        return self.apps[-1]

    def runs(self):
        runs = []
        for item in ITEMS:
            if item.database == "sqlite" or self.pg:
                shipped = self.app(item.database, item.both)
                with applied(item.patches):
                    replaced = self.app(item.database, {**item.both, **item.without})
                for path in item.paths:
                    runs += [(item, path, shipped, []), (item, path, replaced, item.patches)]
        return runs

    def close(self):
        for app in self.apps:
            with app.app_context():
                storage.db.engine.dispose()
        for name in self.created:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if self.admin is not None:
            self.admin.dispose()


def answer(app, target, count=1):
    """The last of ``count`` answers: status, headers (a window's end masked), body."""
    for _ in range(count):
        environ = cost.environ(*target[:2])
        environ["REQUEST_METHOD"] = target[3] if len(target) > 3 else "GET"
        if target[2]:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        started = []
        body = app(environ, lambda *args, into=started: into.append(args))
        data = b"".join(body)
        getattr(body, "close", lambda: None)()
    return started[0][0], [(k, "*" * (k in TIMED_HEADERS) or v) for k, v in started[0][1]], data


def unlike(shipped, replaced):
    for _ in range(2):
        answers = []
        for _item, target, app, patches in (shipped, replaced):
            with applied(patches):
                answers.append(answer(app, target))
        if answers[0] != answers[1]:
            return f"{shipped[0].name}, {LABELS[target]}: {answers[0]!r} / {answers[1]!r}"[:600]
    return None


def callgrind(tmp, count):
    """Instructions per request: each loop runs in operator.call, which nothing else calls."""
    command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--dump-instr=no"]
    command += ["--toggle-collect=_operator_call", "--dump-after=_operator_call"]
    command += [f"--callgrind-out-file={tmp}/cg", sys.executable, "-m", "bench.overrides", "-c"]
    run = subprocess.run(command, cwd=cost.ROOT, capture_output=True, text=True)
    dumps = sorted(Path(tmp).glob("cg.*"), key=lambda p: int(p.suffix[1:]))
    if run.returncode or len(dumps) != count:
        sys.exit(f"callgrind: {len(dumps)} dumps for {count} loops\n{run.stderr[-3000:]}")
    totals = [int(line.split()[1]) for p in dumps for line in p.read_text().splitlines()
              if line.startswith("totals:")]  # fmt: skip
    return [total / CALLGRIND_REQUESTS for total in totals]


def measure(tmp, callgrind_child=False):
    databases = Databases(tmp)
    try:
        runs = databases.runs()
        gc.collect()  # and the apps kept out of every later collection, as a server's would be
        gc.freeze()
        for _item, target, app, patches in runs if callgrind_child else ():
            with applied(patches):
                answer(app, target, WARMUP)
                operator.call(answer, app, target, CALLGRIND_REQUESTS)
        unlikes = [unlike(*pair) for pair in zip(runs[::2], runs[1::2], strict=True)]
        samples = [[] for _ in runs]
        for round_ in range(0 if callgrind_child else ROUNDS):
            print(f"round {round_ + 1} of {ROUNDS}", file=sys.stderr, flush=True)
            for index in range(len(runs))[:: 1 if round_ % 2 == 0 else -1]:
                _item, target, app, patches = runs[index]
                with applied(patches):
                    answer(app, target, WARMUP)
                    started = time.perf_counter()
                    answer(app, target, REQUESTS)
                samples[index].append((time.perf_counter() - started) / REQUESTS * 1e6)
        return runs, unlikes, [sorted(v)[len(v) // 2] for v in samples if v]
    finally:
        databases.close()


def report(with_callgrind):
    # The table goes to standard output; descriptor 1, where access lines go, to /dev/null.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    with tempfile.TemporaryDirectory() as tmp:
        runs, unlikes, us = measure(tmp)
        counts = [0] * len(runs)
        if with_callgrind:
            print("callgrind, a few minutes", file=sys.stderr, flush=True)
            counts = callgrind(tmp, len(runs))
    lines = [f"## What each override buys per request ({ROUNDS} rounds of {REQUESTS}, medians)"]
    head = "override|library|path|µs with|µs without|gain µs|instr with|instr without|gain instr"
    lines += ["", f"|{head}|", "|---" * 3 + "|---:" * 6 + "|"]
    for index in range(0, len(runs), 2):
        item, target = runs[index][:2]
        library = item.library if "(" in item.library else f"{item.library} {version(item.library)}"
        where = LABELS[target] + (" [PG]" if item.database == "postgresql" else "")
        (with_, without), instr = us[index : index + 2], counts[index : index + 2]
        cells = [item.name, library, where, f"{with_:.0f}", f"{without:.0f}"]
        cells += [f"{without - with_:+.1f}", *(f"{n / 1000:.0f}k" for n in instr)]
        cells += [f"{(instr[1] - instr[0]) / 1000:+.0f}k"]
        lines.append("|" + "|".join(cells if with_callgrind else cells[:6] + ["-"] * 3) + "|")
    if not any(run[0].database == "postgresql" for run in runs):
        lines += ["", f"PostgreSQL at {PG_URL} unreachable: its items were skipped."]
    lines += ["", "Answered differently without the override:"]
    lines += [f"- {found}" for found in unlikes if found] or ["none"]
    print("\n".join(lines), file=out, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["-c"]:
        with tempfile.TemporaryDirectory() as directory:
            measure(directory, callgrind_child=True)
    else:
        report("--no-callgrind" not in sys.argv)
