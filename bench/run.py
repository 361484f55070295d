"""``make bench``: the service under wrk against bare Flask floors, and its stats and pages on a
long history, with an exact count check.

Two phases, both run unless BENCH_PHASES names some (``hits``, ``pages``; ``BENCH_PHASES=pages``
runs the second alone while iterating on it).

**hits.** It first prints what one request costs in Python without any server
(``bench/cost.py``). Then it starts, on free ports, the floors and the service:

- the conventional floor, ``bench/bare.py`` (one Flask route, nothing counted) under gunicorn
  with sync workers and with gthread workers, at the service's worker and thread counts;
- the server's floor, the same app under granian with the web process's own settings;
- the Procfile's web process as the load test runs it (rate limiting off), the same with the
  access log off, and the same **as deployed**: every default as shipped, access log and rate
  limiting on, only the per-client and per-token budgets raised so that wrk's one address is
  never refused.

Each round drives every target in turn for the same time at the same connection count; the
rounds alternate so that noise from other work on the machine falls on every target alike.
Medians of the rounds go into the table, with the CPU time the server's processes,
PostgreSQL's when it runs on this machine, and wrk spent per response, read from /proc and
getrusage.

**pages.** Two databases of their own, each migrated, then seeded with a full history in one
transaction before its server starts (``seed_history``): every hour of the last 730 days, and
of the last 7, up to the current hour, every counter slot, for hits and errors, with totals that
agree. One Procfile web process serves each (rate limiting off), and each round drives
``/api?data=hits``, ``/api/stats``, ``/stats`` and ``/docs`` on both, in turn, and the two
stats again with a token (errors included), with BENCH_PAGE_CONNECTIONS connections. The table
gives each path's req/s and the median of its per-round ratio to ``/api?data=hits`` on the
same server, for both histories side by side; the targets are a least ratio with two years of
history, and the same ratio, within 0.1, with one week. Before the rounds each path must
answer a plain GET with a 200, which wrk cannot tell from a 3xx.

After every run the hit counter must have risen by at least the responses wrk received and
by at most those plus the requests still in flight when wrk stopped. Where the server keeps
an access log, the rise must also equal the requests it logged answering, exactly, since
wrk cannot tell how many of its last requests arrived. Anything else, a 4xx/5xx answer or a
socket error fails the bench with a non-zero exit. BENCH_ROUNDS below 3 is refused.

Settings (environment): BENCH_DATABASE_URL (a PostgreSQL server; the bench creates and drops
its own databases there), BENCH_PHASES (hits,pages), BENCH_ROUNDS (5), BENCH_SECONDS (5),
BENCH_CONNECTIONS (32, the hits phase), BENCH_PAGE_CONNECTIONS (16, the pages phase),
BENCH_WRK_THREADS (2), BENCH_STRICT (1 makes a missed speed target fail the exit code too).
WEB_CONCURRENCY and WEB_THREADS size every server alike, as they size a dyno; COUNTER_SLOTS is
the servers' and the seeded history's.
"""

import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from api import config, create_app, server, storage
from api.storage import counter_writer
from harness import servers

from . import cost

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent

PHASES = ("hits", "pages")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
PAGE_CONNECTIONS = int(os.environ.get("BENCH_PAGE_CONNECTIONS", "16"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
WARMUP_SECONDS = 2
STRICT = config.env_flag("BENCH_STRICT", False)

# The targets: (target name, which floor, the least share of that floor's requests/s) per
# database, and how many times the conventional floor's p99 the service's p99 may be.
HITS, DEPLOYED = "/api?data=hits", "/api?data=hits, as deployed"
RPS_TARGETS = {
    "sqlite": [
        (HITS, "conventional", 1.0),
        (HITS, "granian", 0.5),
        (DEPLOYED, "conventional", 0.8),
    ],
    "postgresql": [(HITS, "conventional", 0.7)],
}
P99_TARGET = 1.5
# Budgets for the as-deployed server that wrk's single address never exhausts.
UNREACHABLE_BUDGET = "1000000000 per minute"

# The pages phase: days of full history per database, the paths driven on each server (the
# first is the yardstick), the least share of the yardstick's req/s each keeps with the long
# history, and how far its share may move between the two histories.
LONG, SHORT = "two years", "one week"
HISTORIES = {LONG: 730, SHORT: 7}
PAGE_PATHS = (HITS, "/api/stats", "/stats", "/docs")
PAGE_TARGETS = {"/api/stats": 0.5, "/stats": 0.4, "/docs": 0.7}
# The stats as a token holder sees them, errors included: the token's lookup and both series.
# Reported beside the public view, without a target of their own.
AUTHORIZED_PATHS = ("/api/stats", "/stats")
PAGES = (
    *((path, path, False) for path in PAGE_PATHS),
    *((f"{path} (token)", path, True) for path in AUTHORIZED_PATHS),
)
HISTORY_TOLERANCE = 0.1
# The seeded counters, and the spread of the values of their hour rows (each at least 1).
SEEDED = {"hits": 40, "errors": 4}
# The writer's own statements, so that seeded hours are bound and stored exactly as it stores
# them: on SQLite the driver writes a datetime as text, without the microseconds SQLAlchemy's
# DateTime type would add, and a seeded hour must be the row the writer's next hit bumps.
BUMP_TOTAL = sa.text(counter_writer.BUMP_TOTAL_SQL)


@dataclass
class Target:
    """One thing wrk drives: a path on one of the servers."""

    name: str
    server: str
    path: str
    headers: dict = field(default_factory=dict)
    counted: bool = True
    connections: int = CONNECTIONS
    runs: list = field(default_factory=list)


@dataclass
class Run:
    """One wrk run and what the counter did during it."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int
    hits_delta: int | None = None
    # Requests the server wrote an access line for during the run: every request it answered,
    # including those whose client had gone. None for a server without an access log.
    answered: int | None = None
    # CPU seconds the server's processes and wrk used during the run, per response, in us.
    server_cpu_us: float = float("nan")
    wrk_cpu_us: float = float("nan")
    # PostgreSQL's processes on this machine, per response; zero for SQLite, which runs in
    # the server's own processes.
    database_cpu_us: float = 0.0

    @property
    def rps(self):
        return self.requests / self.seconds


class Server(servers.Server):
    """A server under test, and what the bench reads of it: CPU time and its access log."""

    def __init__(self, name, command, env, log_dir, cwd=ROOT, ready_path="/healthz"):
        self.name = name
        # Read as the service reads it.
        self.logs_access = config.flag(env.get("ACCESS_LOG"), True)
        super().__init__(env, Path(log_dir) / f"{name}.log", command, cwd, ready_path)

    def log_mark(self):
        """Where the log ends now, so that a later count reads only what was written since."""
        return self.log_path.stat().st_size

    def answered_since(self, mark, path):
        """How many GET requests for path the access log shows after mark."""
        with open(self.log_path, "rb") as log:
            log.seek(mark)
            return log.read().count(f'"GET {path} HTTP/1.1"'.encode())

    def cpu_seconds(self):
        """User and system CPU the main process and its workers have used so far."""
        return cpu_seconds([self.process.pid, *children(self.process.pid)])


def cpu_seconds(pids):
    """User and system CPU these processes have used so far, all their threads included."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime and stime, the 14th and 15th fields of stat(5), counted after the name.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds():
    """CPU used so far by every PostgreSQL process on this machine, when it runs here."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return cpu_seconds(pids)


def children(pid):
    """The direct children of a process: a server's workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def say(*args):
    print(*args, flush=True)


def ensure_wrk():
    """Install Debian's wrk when it is missing and we may; otherwise say how."""
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"]).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        sys.exit("wrk is not installed: run `sudo apt-get install wrk`, then `make bench` again")
    say("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("apt-get did not install wrk")


def database_kind():
    """Which database the bench runs on: PostgreSQL when BENCH_DATABASE_URL names a server."""
    return "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite"


class Database:
    """A fresh database for this run: a SQLite file, or a new database on a PostgreSQL server."""

    def __init__(self, tmp, label):
        self.kind = database_kind()
        self._admin = None
        if self.kind == "sqlite":
            self.url = f"sqlite:///{tmp}/bench-{label}.sqlite3"
            return
        admin_url = sa.make_url(config.database_url(os.environ["BENCH_DATABASE_URL"]))
        self.name = f"bench_{label}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = admin_url.set(database=self.name).render_as_string(hide_password=False)

    def drop(self):
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


class Counters:
    """Reads the counters straight from the database, outside the servers under test."""

    def __init__(self, url):
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": url})

    def read(self, name="hits"):
        with self.app.app_context():
            return int(storage.read_counter(name))

    def settled(self, name="hits"):
        """The count once requests still in flight have finished: two equal reads in a row."""
        last = self.read(name)
        for _ in range(50):
            time.sleep(0.2)
            now = self.read(name)
            if now == last:
                return now
            last = now
        raise RuntimeError(f"the {name} counter was still moving 10 s after the load stopped")

    def close(self):
        with self.app.app_context():
            storage.db.engine.dispose()


def drive(wrk, target, base_url, seconds):
    """One wrk run against one target; the Lua hook prints exact percentiles as JSON."""
    command = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{target.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "report.lua"),
    ]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(base_url + target.path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    line = next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return Run(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        non_2xx=data["status"],
        wrk_cpu_us=wrk_cpu / max(data["requests"], 1) * 1e6,
    )


def measure(wrk, target, servers_by_name, counters, seconds, kind="sqlite"):
    """Drive a target and, for the service, see how far the hit counter moved meanwhile."""
    server = servers_by_name[target.server]
    before = counters.settled() if target.counted else None
    log_mark = server.log_mark()
    on_postgresql = kind == "postgresql"
    cpu_before = server.cpu_seconds()
    database_before = postgres_cpu_seconds() if on_postgresql else 0.0
    run = drive(wrk, target, server.url, seconds)
    responses = max(run.requests, 1)
    run.server_cpu_us = (server.cpu_seconds() - cpu_before) / responses * 1e6
    if on_postgresql:
        run.database_cpu_us = (postgres_cpu_seconds() - database_before) / responses * 1e6
    if target.counted:
        run.hits_delta, run.answered = settled_counts(counters, server, before, log_mark, target)
    return run


def settled_counts(counters, server, before, log_mark, target):
    """The hit counter's rise since before and, where the server logs, the requests for the
    target it logged answering since log_mark, once every request in flight is answered.

    A hit is counted as its request starts and logged as it ends, so a slow page under load can
    be counted, the counter still, and its line not yet written. Where the server logs, this
    also waits, for at most 10 s, until there is a line for every hit; past that the count
    check reports the difference.
    """
    hits = counters.settled() - before
    if not server.logs_access:
        return hits, None
    for _ in range(50):
        answered = server.answered_since(log_mark, target.path)
        if answered == hits:
            break
        time.sleep(0.2)
        hits = counters.read() - before
    return hits, answered


def count_problems(target, run):
    """What is wrong with a run's answers and counts; empty when everything is exact."""
    problems = []
    if run.non_2xx:
        problems.append(f"{run.non_2xx} 4xx/5xx answers")
    if run.socket_errors:
        problems.append(f"{run.socket_errors} socket errors or timeouts")
    if target.counted:
        # Every response wrk received was counted before it was sent; requests in flight
        # when wrk stopped (at most one per connection) may have been counted too.
        if run.hits_delta < run.requests:
            problems.append(f"LOST {run.requests - run.hits_delta} hits")
        elif run.hits_delta > run.requests + target.connections + run.socket_errors:
            problems.append(f"{run.hits_delta - run.requests} more hits than requests")
        # Exact, where the server logs what it answered: one hit per answered request.
        if run.answered is not None and run.hits_delta != run.answered:
            problems.append(
                f"the counter rose by {run.hits_delta} for {run.answered} answered requests"
            )
    return problems


def median(values):
    return statistics.median(values) if values else float("nan")


def machine():
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk_version.splitlines() or ["wrk"])[0].split(" [")[0],
    }


def main():
    if ROUNDS < 3:
        say(f"BENCH_ROUNDS is {ROUNDS}: medians need at least 3 alternating rounds")
        return 2
    try:
        phases = chosen_phases(os.environ.get("BENCH_PHASES", ""))
    except ValueError as e:
        say(e)
        return 2
    wrk = ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    started, databases = [], []
    status = 1
    try:
        status = bench(wrk, tmp, phases, databases, started)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the servers")
        status = 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in started:
            server.stop()
        for database in databases:
            database.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def chosen_phases(text):
    """The phases BENCH_PHASES names, comma-separated, in the bench's order; all when none."""
    asked = {name.strip() for name in text.split(",") if name.strip()}
    unknown = asked - set(PHASES)
    if unknown:
        raise ValueError(
            f"BENCH_PHASES names {', '.join(sorted(unknown))}; the phases are {','.join(PHASES)}"
        )
    return [name for name in PHASES if name in asked or not asked]


def bench(wrk, tmp, phases, databases, started):
    """Run each phase asked for, then save what they measured; the exit status."""
    info, sizing, kind = machine(), vars(config.Config()), database_kind()
    describe(info, kind, sizing)
    run_phase = {"hits": hits_phase, "pages": pages_phase}
    results, failed = {}, False
    for phase in phases:
        results[phase], phase_failed = run_phase[phase](wrk, tmp, kind, sizing, databases, started)
        failed |= phase_failed
    save(info, kind, sizing, results)
    return 1 if failed else 0


def open_database(tmp, label, databases):
    """A fresh database of the bench's kind, dropped when the bench ends."""
    database = Database(tmp, label)
    databases.append(database)
    return database


def release(database):
    """Migrate a database as the release phase does; the environment its servers run with.

    The same sizing for every server: WEB_CONCURRENCY and WEB_THREADS from this shell, as a
    dyno's environment would give them; the database and rate limiting are the bench's own.
    """
    carried = {k: os.environ[k] for k in ("WEB_CONCURRENCY", "WEB_THREADS") if k in os.environ}
    app_env = servers.clean_env(DATABASE_URL=database.url, RATELIMIT_ENABLED="false", **carried)
    servers.run_release(app_env)
    return app_env


def launch(tmp, started, name, command, env, ready_path="/healthz", cwd=ROOT):
    """Start a server on a free port, stopped when the bench ends; it, once ready."""
    env = {**env, "PORT": str(servers.free_port())}
    launched = Server(name, command, env, tmp, cwd, ready_path)
    started.append(launched)
    return launched


def stop(servers_to_stop):
    """Stop a phase's servers once it is done, so that the next phase has the machine."""
    for running in servers_to_stop:
        running.stop()


def runs_of(targets):
    """Every run of every target, as saved."""
    return {target.name: [vars(run) for run in target.runs] for target in targets}


def hits_phase(wrk, tmp, kind, sizing, databases, started):
    """The service against the floors: start, rounds, table, verdicts; what it measured, and
    whether a fatal verdict failed."""
    cost.report()
    database = open_database(tmp, "hits", databases)
    targets, servers_by_name = start(tmp, database, sizing, started)
    describe_floors(sizing)
    counters = Counters(database.url)
    try:
        counters_by_server = dict.fromkeys(servers_by_name, counters)
        problems = run_rounds(wrk, targets, servers_by_name, counters_by_server, kind)
    finally:
        counters.close()
    stop(servers_by_name.values())
    rows = table(targets)
    print_table(rows, kind)
    failed = print_verdicts(verdicts(rows, kind, problems), problems)
    say("rate limiting was off for the run, except on the server marked as deployed")
    measured = {"connections": CONNECTIONS, "rows": rows, "runs": runs_of(targets)}
    return {**measured, "problems": problems}, failed


def start(tmp, database, sizing, started):
    """Migrate, mint a token and start every server; the targets to drive, and the servers."""
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    app_env = release(database)
    token = servers.mint_token(app_env, "bench")

    # Run from bench/, where `bare:app` is; it binds 0.0.0.0:$PORT like the service, with the
    # service's keep-alive, so that every server holds wrk's connections alike.
    gunicorn = [
        str(BIN / "gunicorn"),
        "--workers",
        str(workers),
        "--keep-alive",
        str(server.HEADER_READ_TIMEOUT_MS // 1000),
        "--no-control-socket",
        "bare:app",
    ]
    mine = {}

    def start_one(name, command, ready_path, cwd=ROOT, **extra_env):
        env = {**app_env, **extra_env}
        mine[name] = launch(tmp, started, name, command, env, ready_path, cwd)

    web = servers.procfile_command("web")
    start_one("floor-sync", [*gunicorn, "--worker-class", "sync"], "/", BENCH)
    start_one(
        "floor-gthread",
        [*gunicorn, "--worker-class", "gthread", "--threads", str(threads)],
        "/",
        BENCH,
    )
    start_one("floor-granian", [str(BIN / "python"), "-m", "bench.bare"], "/")
    start_one("service", web, "/healthz")
    # The gap between this one's row and the service's /api?data=hits is the access log's cost.
    start_one("service-no-access-log", web, "/healthz", ACCESS_LOG="false")
    # What users deploy: every default, limits on; only budgets wrk cannot exhaust.
    start_one(
        "service-deployed",
        web,
        "/healthz",
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT=UNREACHABLE_BUDGET,
        RATELIMIT_PER_TOKEN=UNREACHABLE_BUDGET,
    )
    targets = [
        Target("floor (sync)", "floor-sync", "/", counted=False),
        Target("floor (gthread)", "floor-gthread", "/", counted=False),
        Target("floor (granian)", "floor-granian", "/", counted=False),
        Target(HITS, "service", "/api?data=hits"),
        Target("/api/pizza", "service", "/api/pizza"),
        Target(
            "/api?data=errors",
            "service",
            "/api?data=errors",
            headers={"Authorization": f"Bearer {token}"},
        ),
        Target("/", "service", "/"),
        Target("/api?data=hits, no access log", "service-no-access-log", "/api?data=hits"),
        Target(DEPLOYED, "service-deployed", "/api?data=hits"),
    ]
    return targets, mine


def describe(info, kind, sizing):
    say(
        f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, "
        f"Python {info['python']}, {info['wrk']}"
    )
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    say(
        f"database: {kind}; service: the Procfile's web process (granian, {workers} "
        f"workers x {threads} threads), rate limiting off except where marked as deployed"
    )


def describe_floors(sizing):
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    say(
        f"floors: bench/bare.py under gunicorn ({workers} sync workers; {workers} gthread "
        f"workers x {threads} threads) and under granian with the service's settings; "
        f"wrk -t{WRK_THREADS} -c{CONNECTIONS}, {ROUNDS} rounds of {SECONDS} s per target"
    )


def pages_phase(wrk, tmp, kind, sizing, databases, started):
    """The stats and pages on a long and a short history: start, rounds, table, verdicts; what
    it measured, and whether a fatal verdict failed."""
    say(
        f"pages: {', '.join(name for name, _, _ in PAGES)} on one web process per history, "
        f"wrk -t{WRK_THREADS} -c{PAGE_CONNECTIONS}, {ROUNDS} rounds of {SECONDS} s per target"
    )
    grid, servers_by_name, counters_by_server = start_pages(tmp, sizing, databases, started)
    targets = [target for by_path in grid.values() for target in by_path.values()]
    try:
        problems = first_answers(targets, servers_by_name)
        problems += run_rounds(wrk, targets, servers_by_name, counters_by_server, kind)
    finally:
        for counters in counters_by_server.values():
            counters.close()
    stop(servers_by_name.values())
    rows = page_table(grid)
    print_page_table(rows, kind)
    failed = print_verdicts(page_verdicts(rows, problems), problems)
    measured = {"connections": PAGE_CONNECTIONS, "history_days": HISTORIES, "rows": rows}
    return {**measured, "runs": runs_of(targets), "problems": problems}, failed


def start_pages(tmp, sizing, databases, started):
    """Per history: a database of its own, migrated and seeded, and a web process on it.

    The targets by history and path, the servers by name, and per server the counters its
    hits land in.
    """
    grid, servers_by_name, counters_by_server = {}, {}, {}
    for label, days in HISTORIES.items():
        database = open_database(tmp, f"{days}d", databases)
        app_env = release(database)
        began = time.monotonic()
        rows = seed_history(database.url, days, sizing["COUNTER_SLOTS"])
        say(f"seeded {label} of history: {rows} hour rows in {time.monotonic() - began:.1f} s")
        token = servers.mint_token(app_env, "bench")
        web = launch(tmp, started, f"service-{days}d", servers.procfile_command("web"), app_env)
        servers_by_name[web.name] = web
        counters_by_server[web.name] = Counters(database.url)
        grid[label] = {
            name: Target(
                f"{name}, {label}",
                web.name,
                path,
                headers={"Authorization": f"Bearer {token}"} if with_token else {},
                connections=PAGE_CONNECTIONS,
            )
            for name, path, with_token in PAGES
        }
    return grid, servers_by_name, counters_by_server


def history_rows(last_hour, days, slots):
    """A full history: every hour of the ``days`` days that end with last_hour, every slot, each
    seeded counter. The hour rows, and the total rows that agree with them (a total is the sum
    of its slots), as parameters of the writer's statements. No value is zero, as on a service
    that is busy every hour."""
    hour_rows, totals = [], {}
    for name, spread in SEEDED.items():
        for back in range(days * 24):
            hour = last_hour - timedelta(hours=back)
            for slot in range(slots):
                amount = 1 + (back * 7 + slot * 3) % spread
                hour_rows.append({"name": name, "hour": hour, "slot": slot, "amount": amount})
                totals[name, slot] = totals.get((name, slot), 0) + amount
    total_rows = [
        {"name": name, "slot": slot, "amount": amount} for (name, slot), amount in totals.items()
    ]
    return hour_rows, total_rows


def seed_history(url, days, slots):
    """Add ``days`` of full history up to the current hour to a migrated database, in one
    transaction; the number of hour rows.

    The bench seeds a database before its server starts, so that the count checks see only
    what the rounds add.
    """
    hour_rows, total_rows = history_rows(storage.clock.current_hour(), days, slots)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(counter_writer.BUMP_HOUR, hour_rows)
            conn.execute(BUMP_TOTAL, total_rows)
    finally:
        engine.dispose()
    return len(hour_rows)


def first_answers(targets, servers_by_name):
    """A problem for each target whose answer to a plain GET is not a 200: wrk counts 4xx and
    5xx answers, but would take a redirect or a 304 for a success."""
    problems = []
    for target in targets:
        connection = http.client.HTTPConnection(
            "127.0.0.1", servers_by_name[target.server].port, timeout=10
        )
        try:
            connection.request("GET", target.path, headers=target.headers)
            status = connection.getresponse().status
        finally:
            connection.close()
        if status != 200:
            problems.append(f"{target.name}: a plain GET answered {status}, not 200")
    return problems


def run_rounds(wrk, targets, servers_by_name, counters_by_server, kind):
    """A warm-up, then the alternating rounds; every problem the count checks found.

    counters_by_server reads, for each server that counts, the database its hits land in.
    """
    databases = list(dict.fromkeys(counters_by_server.values()))
    errors_before = [counters.settled("errors") for counters in databases]
    problems = []
    say(f"warming up ({WARMUP_SECONDS} s per target)")
    for target in targets:
        counters = counters_by_server.get(target.server)
        run = measure(wrk, target, servers_by_name, counters, WARMUP_SECONDS, kind)
        problems += [f"warm-up {target.name}: {p}" for p in count_problems(target, run)]

    for number in range(1, ROUNDS + 1):
        for target in targets:
            counters = counters_by_server.get(target.server)
            run = measure(wrk, target, servers_by_name, counters, SECONDS, kind)
            target.runs.append(run)
            problems += [f"round {number} {target.name}: {p}" for p in count_problems(target, run)]
            counted = "" if run.hits_delta is None else f"  hits +{run.hits_delta}"
            say(
                f"round {number}  {target.name:<30} {run.rps:8.0f} req/s  "
                f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                f"server CPU {run.server_cpu_us:4.0f} us/resp  "
                f"{run.requests} responses{counted}"
            )

    for counters, before in zip(databases, errors_before, strict=True):
        errors_delta = counters.settled("errors") - before
        if errors_delta:
            problems.append(f"the error counter rose by {errors_delta} though every answer was 2xx")
    return problems


def print_table(rows, kind):
    say()
    say(f"## {kind}: medians of {ROUNDS} rounds, {CONNECTIONS} connections")
    say()
    say(
        "| endpoint | req/s | p50 ms | p99 ms | ÷ conventional floor | ÷ granian floor "
        "| p99 ÷ floor p99 | server CPU µs/resp | database CPU µs/resp | wrk CPU µs/resp "
        "| count check |"
    )
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        say(
            f"| {row['name']} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['ratio']:.2f} | {row['granian_ratio']:.2f} | {row['p99_ratio']:.2f} | "
            f"{row['server_cpu_us']:.0f} | {row['database_cpu_us']:.0f} | "
            f"{row['wrk_cpu_us']:.0f} | {row['count']} |"
        )
    say()


def count_verdict(problems):
    """(passed, fatal, text) for the count check: it always fails the bench."""
    return (
        not problems,
        True,
        "count check: every answered request counted once, no 4xx/5xx, no socket errors",
    )


def verdicts(rows, kind, problems):
    """(passed, fatal, text) for the count check and for each speed target."""
    by_name = {row["name"]: row for row in rows}
    found = [count_verdict(problems)]
    for name, floor, least in RPS_TARGETS[kind]:
        ratio = by_name[name]["ratio" if floor == "conventional" else "granian_ratio"]
        found.append(
            (
                ratio >= least,
                STRICT,
                f"target: {name} req/s is {ratio:.2f} of the {floor} floor (target >= {least})",
            )
        )
    p99 = by_name[HITS]["p99_ratio"]
    found.append(
        (
            p99 <= P99_TARGET,
            STRICT,
            f"target: {HITS} p99 is {p99:.2f}x the conventional floor's (target <= {P99_TARGET})",
        )
    )
    return found


def print_verdicts(found, problems):
    """Print every problem and verdict; whether any fatal one failed."""
    for problem in problems:
        say(f"FAIL {problem}")
    failed = False
    for ok, fatal, text in found:
        say(f"{'PASS' if ok else 'FAIL'} {text}")
        failed |= fatal and not ok
    return failed


def save(info, kind, sizing, results):
    """The raw figures of this run, for comparison later (bench/results/ is not committed).

    The hits phase's figures are at the top level, where runs before the pages phase kept
    them; the pages phase's under "pages".
    """
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved = {
        "machine": info,
        "database": kind,
        "phases": list(results),
        "rounds": ROUNDS,
        "seconds": SECONDS,
        "workers": sizing["WEB_CONCURRENCY"],
        "threads": sizing["WEB_THREADS"],
        "counter_slots": sizing["COUNTER_SLOTS"],
        **results.get("hits", {}),
    }
    if "pages" in results:
        saved["pages"] = results["pages"]
    out.write_text(json.dumps(saved, indent=2))
    say(f"results: {out.relative_to(ROOT)}")


def table(targets):
    """Per target: medians over rounds, and the median of its per-round ratios to the floors.

    The first two targets are the conventional floors, the third the granian floor. A round's
    conventional floor is the better of its two runs, so that nothing is flattered: the one
    with more req/s for throughput, the lower p99 for latency.
    """
    pairs = list(zip(targets[0].runs, targets[1].runs, strict=True))
    floors = [max(pair, key=lambda r: r.rps) for pair in pairs]
    p99_floors = [min(r.p99_ms for r in pair) for pair in pairs]
    granian = targets[2].runs
    rows = [row(t.name, t, t.runs, floors, p99_floors, granian) for t in targets]
    floor = row("floor (better of sync and gthread)", None, floors, floors, p99_floors, granian)
    # Its p99 is the lower of the two floors' in each round, as the ratios use.
    floor["p99_ms"], floor["p99_ratio"] = median(p99_floors), 1.0
    rows.insert(2, floor)
    return rows


def row(name, target, runs, floors, p99_floors, granian_floors):
    return {
        "name": name,
        "rps": median([r.rps for r in runs]),
        "p50_ms": median([r.p50_ms for r in runs]),
        "p99_ms": median([r.p99_ms for r in runs]),
        "ratio": median([r.rps / f.rps for r, f in zip(runs, floors, strict=True)]),
        "granian_ratio": median([r.rps / f.rps for r, f in zip(runs, granian_floors, strict=True)]),
        "p99_ratio": median([r.p99_ms / f for r, f in zip(runs, p99_floors, strict=True)]),
        "server_cpu_us": median([r.server_cpu_us for r in runs]),
        "wrk_cpu_us": median([r.wrk_cpu_us for r in runs]),
        "database_cpu_us": median([r.database_cpu_us for r in runs]),
        "count": count_check(target, runs),
    }


def count_check(target, runs):
    """The count check's column for a target's runs (None: runs derived from others')."""
    problems = []
    if target is not None:
        for run in runs:
            problems += count_problems(target, run)
    counted = target is not None and target.counted
    if counted and problems:
        return "lost or extra hits"
    if counted:
        # Checked against the server's own tally, or only within one request per connection.
        return "exact" if all(r.answered is not None for r in runs) else "within in-flight"
    return "FAIL" if problems else "-"


def page_table(grid):
    """Per path and history: medians over rounds, and the median of each round's req/s ÷ that
    round's /api?data=hits on the same server; and how far that ratio moved from the long
    history to the short.

    grid holds, per history, its targets by path.
    """
    rows = []
    for path in next(iter(grid.values())):
        found = {"name": path}
        for label, by_path in grid.items():
            runs, yardstick = by_path[path].runs, by_path[HITS].runs
            found[label] = {
                "rps": median([r.rps for r in runs]),
                "ratio": median([r.rps / y.rps for r, y in zip(runs, yardstick, strict=True)]),
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "server_cpu_us": median([r.server_cpu_us for r in runs]),
                "database_cpu_us": median([r.database_cpu_us for r in runs]),
                "count": count_check(by_path[path], runs),
            }
        found["ratio_change"] = found[SHORT]["ratio"] - found[LONG]["ratio"]
        rows.append(found)
    return rows


def print_page_table(rows, kind):
    say()
    say(
        f"## {kind}, pages: medians of {ROUNDS} rounds, {PAGE_CONNECTIONS} connections, "
        f"one web process per history ({LONG}: {HISTORIES[LONG]} days, {SHORT}: "
        f"{HISTORIES[SHORT]} days of every hour)"
    )
    say()
    columns = f"req/s | ÷ {HITS} | p99 ms | server CPU µs/resp | database CPU µs/resp"
    say(f"| endpoint | {LONG}: {columns} | {SHORT}: {columns} | ratio change | count check |")
    say(f"|---|{'---:|' * 11}---|")
    for row in rows:
        cells = [
            f"{h['rps']:.0f} | {h['ratio']:.2f} | {h['p99_ms']:.2f} | {h['server_cpu_us']:.0f} | "
            f"{h['database_cpu_us']:.0f}"
            for h in (row[LONG], row[SHORT])
        ]
        counts = {row[LONG]["count"], row[SHORT]["count"]}
        count = counts.pop() if len(counts) == 1 else f"{row[LONG]['count']}, {row[SHORT]['count']}"
        say(f"| {row['name']} | {cells[0]} | {cells[1]} | {row['ratio_change']:+.2f} | {count} |")
    say()


def page_verdicts(rows, problems):
    """(passed, fatal, text) for the count check, each path's least share of /api?data=hits
    with the long history, and its share's move from the long history to the short."""
    by_name = {row["name"]: row for row in rows}
    found = [count_verdict(problems)]
    for path, least in PAGE_TARGETS.items():
        ratio = by_name[path][LONG]["ratio"]
        found.append(
            (
                ratio >= least,
                STRICT,
                f"target: {path} req/s is {ratio:.2f} of {HITS}'s with {LONG} of history "
                f"(target >= {least})",
            )
        )
    for path in PAGE_TARGETS:
        long, short = by_name[path][LONG]["ratio"], by_name[path][SHORT]["ratio"]
        found.append(
            (
                # Within the tolerance as printed: 0.10 apart is within 0.1.
                round(abs(short - long), 6) <= HISTORY_TOLERANCE,
                STRICT,
                f"target: {path} ÷ {HITS} is {short:.2f} with {SHORT} of history, {long:.2f} "
                f"with {LONG} (target: within {HISTORY_TOLERANCE})",
            )
        )
    return found


def interrupt(_signum, _frame):
    """Treat SIGTERM like Ctrl-C, so that the servers are stopped either way."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(main())
