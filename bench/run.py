"""``make bench``: the service under wrk against bare Flask floors, with an exact count check.

It first prints what one request costs in Python without any server (``bench/cost.py``). Then
it starts, on free ports, the floors and the service:

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

After every run the hit counter must have risen by at least the responses wrk received and
by at most those plus the requests still in flight when wrk stopped. Where the server keeps
an access log, the rise must also equal the requests it logged answering, exactly, since
wrk cannot tell how many of its last requests arrived. Anything else, a 4xx/5xx answer or a
socket error fails the bench with a non-zero exit. BENCH_ROUNDS below 3 is refused.

Settings (environment): BENCH_DATABASE_URL (a PostgreSQL server; the bench creates and drops
its own database there), BENCH_ROUNDS (5), BENCH_SECONDS (5), BENCH_CONNECTIONS (32),
BENCH_WRK_THREADS (2), BENCH_STRICT (1 makes a missed speed target fail the exit code too).
WEB_CONCURRENCY and WEB_THREADS size every server alike, as they size a dyno.
"""

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
from pathlib import Path

import sqlalchemy as sa

from api import config, create_app, server, storage
from harness import servers

from . import cost

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
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


@dataclass
class Target:
    """One thing wrk drives: a path on one of the servers."""

    name: str
    server: str
    path: str
    headers: dict = field(default_factory=dict)
    counted: bool = True
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
        self.logs_access = env.get("ACCESS_LOG", "true").strip().lower() in {
            "1",
            "true",
            "yes",
            "on",
        }
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


class Database:
    """A fresh database for this run: a SQLite file, or a new database on a PostgreSQL server."""

    def __init__(self, tmp):
        server_url = os.environ.get("BENCH_DATABASE_URL")
        self._admin = None
        if not server_url:
            self.kind = "sqlite"
            self.url = f"sqlite:///{tmp}/bench.sqlite3"
            return
        self.kind = "postgresql"
        admin_url = sa.make_url(config.database_url(server_url))
        self.name = f"bench_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
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
        f"-c{CONNECTIONS}",
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


def measure(wrk, target, servers_by_name, counters, seconds, database_kind="sqlite"):
    """Drive a target and, for the service, see how far the hit counter moved meanwhile."""
    server = servers_by_name[target.server]
    before = counters.settled() if target.counted else None
    log_mark = server.log_mark()
    on_postgresql = database_kind == "postgresql"
    cpu_before = server.cpu_seconds()
    database_before = postgres_cpu_seconds() if on_postgresql else 0.0
    run = drive(wrk, target, server.url, seconds)
    responses = max(run.requests, 1)
    run.server_cpu_us = (server.cpu_seconds() - cpu_before) / responses * 1e6
    if on_postgresql:
        run.database_cpu_us = (postgres_cpu_seconds() - database_before) / responses * 1e6
    if target.counted:
        run.hits_delta = counters.settled() - before
        if server.logs_access:
            run.answered = server.answered_since(log_mark, target.path)
    return run


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
        elif run.hits_delta > run.requests + CONNECTIONS + run.socket_errors:
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
    wrk = ensure_wrk()
    cost.report()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    started = []
    database = None
    status = 1
    try:
        database = Database(tmp)
        status = bench(wrk, tmp, database, started)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the servers")
        status = 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in started:
            server.stop()
        if database is not None:
            database.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return status


def bench(wrk, tmp, database, started):
    """Start everything, run the rounds, print the table and the verdicts; the exit status."""
    targets, servers_by_name, sizing = start(tmp, database, started)
    counters = Counters(database.url)
    info = machine()
    describe(info, database, sizing)
    try:
        problems = run_rounds(wrk, targets, servers_by_name, counters, database.kind)
    finally:
        counters.close()
    rows = table(targets)
    print_table(rows, database.kind)
    failed = print_verdicts(rows, database.kind, problems)
    save(info, database, sizing, rows, targets, problems)
    return 1 if failed else 0


def start(tmp, database, started):
    """Migrate, mint a token and start every server; the targets to drive, and the sizing."""
    # The same sizing for every server: WEB_CONCURRENCY and WEB_THREADS from this shell, as a
    # dyno's environment would give them; the database and rate limiting are the bench's own.
    sizing = vars(config.Config())
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    carried = {k: os.environ[k] for k in ("WEB_CONCURRENCY", "WEB_THREADS") if k in os.environ}
    app_env = servers.clean_env(DATABASE_URL=database.url, RATELIMIT_ENABLED="false", **carried)
    servers.run_release(app_env)
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

    def launch(name, command, ready_path, cwd=ROOT, **extra_env):
        env = {**app_env, **extra_env, "PORT": str(servers.free_port())}
        launched = Server(name, command, env, tmp, cwd, ready_path)
        started.append(launched)
        return launched

    web = servers.procfile_command("web")
    launch("floor-sync", [*gunicorn, "--worker-class", "sync"], "/", BENCH)
    launch(
        "floor-gthread",
        [*gunicorn, "--worker-class", "gthread", "--threads", str(threads)],
        "/",
        BENCH,
    )
    launch("floor-granian", [str(BIN / "python"), "-m", "bench.bare"], "/")
    launch("service", web, "/healthz")
    # The gap between this one's row and the service's /api?data=hits is the access log's cost.
    launch("service-no-access-log", web, "/healthz", ACCESS_LOG="false")
    # What users deploy: every default, limits on; only budgets wrk cannot exhaust.
    launch(
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
    return targets, {s.name: s for s in started}, sizing


def describe(info, database, sizing):
    say(
        f"machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, "
        f"Python {info['python']}, {info['wrk']}"
    )
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    say(
        f"database: {database.kind}; service: the Procfile's web process (granian, {workers} "
        f"workers x {threads} threads), rate limiting off except where marked as deployed"
    )
    say(
        f"floors: bench/bare.py under gunicorn ({workers} sync workers; {workers} gthread "
        f"workers x {threads} threads) and under granian with the service's settings; "
        f"wrk -t{WRK_THREADS} -c{CONNECTIONS}, {ROUNDS} rounds of {SECONDS} s per target"
    )


def run_rounds(wrk, targets, servers_by_name, counters, kind):
    """A warm-up, then the alternating rounds; every problem the count checks found."""
    errors_before = counters.settled("errors")
    problems = []
    say(f"warming up ({WARMUP_SECONDS} s per target)")
    for target in targets:
        run = measure(wrk, target, servers_by_name, counters, WARMUP_SECONDS, kind)
        problems += [f"warm-up {target.name}: {p}" for p in count_problems(target, run)]

    for number in range(1, ROUNDS + 1):
        for target in targets:
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

    errors_delta = counters.settled("errors") - errors_before
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


def verdicts(rows, kind, problems):
    """(passed, fatal, text) for the count check and for each speed target."""
    by_name = {row["name"]: row for row in rows}
    found = [
        (
            not problems,
            True,
            "count check: every answered request counted once, no 4xx/5xx, no socket errors",
        )
    ]
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


def print_verdicts(rows, kind, problems):
    """Print every problem and verdict; whether any fatal one failed."""
    for problem in problems:
        say(f"FAIL {problem}")
    failed = False
    for ok, fatal, text in verdicts(rows, kind, problems):
        say(f"{'PASS' if ok else 'FAIL'} {text}")
        failed |= fatal and not ok
    say("rate limiting was off for the run, except on the server marked as deployed")
    return failed


def save(info, database, sizing, rows, targets, problems):
    """The raw figures of this run, for comparison later (bench/results/ is not committed)."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{database.kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "database": database.kind,
                "rounds": ROUNDS,
                "seconds": SECONDS,
                "connections": CONNECTIONS,
                "workers": sizing["WEB_CONCURRENCY"],
                "threads": sizing["WEB_THREADS"],
                "rows": rows,
                "runs": {t.name: [vars(r) for r in t.runs] for t in targets},
                "problems": problems,
            },
            indent=2,
        )
    )
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
    problems = []
    if target is not None:
        for run in runs:
            problems += count_problems(target, run)
    counted = target is not None and target.counted
    if counted and problems:
        count = "lost or extra hits"
    elif counted:
        # Checked against the server's own tally, or only within one request per connection.
        count = "exact" if all(r.answered is not None for r in runs) else "within in-flight"
    else:
        count = "FAIL" if problems else "-"
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
        "count": count,
    }


def interrupt(_signum, _frame):
    """Treat SIGTERM like Ctrl-C, so that the servers are stopped either way."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(main())
