"""One wrk run at a time, and the rounds that alternate them: what each run measured, and the
count check that a lost or extra hit always fails.

Each round drives every target in turn for the same time at the same connection count; the
rounds alternate so that noise from other work on the machine falls on every target alike.
After every run the hit counter must have risen by at least the responses wrk received and by
at most those plus the requests still in flight when wrk stopped. Where the server keeps an
access log, the rise must also equal the requests it logged answering, exactly, since wrk
cannot tell how many of its last requests arrived. Where every request sends a token, that
token's own use must have risen exactly as the hits did. No answer in the access log may
have a 5xx status, not even for a target that expects errors (a 404), whose 4xx wrk counts
alike.
"""

import http.client
import json
import resource
import subprocess
import time
from dataclasses import dataclass, field

from .processes import postgres_cpu_seconds
from .settings import BENCH, CONNECTIONS, ROUNDS, SECONDS, WARMUP_SECONDS, WRK_THREADS, say


@dataclass
class Target:
    """One thing wrk drives: a path on one of the servers."""

    name: str
    server: str
    path: str
    headers: dict = field(default_factory=dict)
    counted: bool = True
    # The path answers with an error on purpose (a 404), so its 4xx answers are no problem.
    errors_expected: bool = False
    # The name of the token every request sends: its own use must rise exactly as hits do.
    token: str | None = None
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
    # The rise of the sent token's own use (its usage counter), for a target that sends one.
    usage_delta: int | None = None
    # Requests the server wrote an access line for during the run: every request it answered,
    # including those whose client had gone. None for a server without an access log.
    answered: int | None = None
    # Of those, the answers with a 5xx status: never right, even where errors are expected.
    server_errors: int = 0
    # CPU seconds the server's processes and wrk used during the run, per response, in us.
    server_cpu_us: float = float("nan")
    wrk_cpu_us: float = float("nan")
    # PostgreSQL's processes on this machine, per response; zero for SQLite, which runs in
    # the server's own processes.
    database_cpu_us: float = 0.0

    @property
    def rps(self):
        return self.requests / self.seconds


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
    usage = counters.usage_counter(target.token) if target.token else None
    usage_before = counters.settled(usage) if usage else None
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
        run.hits_delta, statuses = settled_counts(counters, server, before, log_mark, target)
        if statuses is not None:
            run.answered = sum(statuses.values())
            run.server_errors = sum(n for status, n in statuses.items() if status >= 500)
    if usage:
        run.usage_delta = counters.settled(usage) - usage_before
    return run


def settled_counts(counters, server, before, log_mark, target):
    """The hit counter's rise since before and, where the server logs, the requests for the
    target it logged answering since log_mark (``{status: count}``), once every request in
    flight is answered.

    A hit is counted as its request starts and logged as it ends, so a slow page under load can
    be counted, the counter still, and its line not yet written. Where the server logs, this
    also waits, for at most 10 s, until there is a line for every hit; past that the count
    check reports the difference.
    """
    hits = counters.settled() - before
    if not server.logs_access:
        return hits, None
    for _ in range(50):
        statuses = server.answered_since(log_mark, target.path)
        if sum(statuses.values()) == hits:
            break
        time.sleep(0.2)
        hits = counters.read() - before
    return hits, statuses


def count_problems(target, run):
    """What is wrong with a run's answers and counts; empty when everything is exact."""
    problems = []
    if run.non_2xx and not target.errors_expected:
        problems.append(f"{run.non_2xx} 4xx/5xx answers")
    if run.socket_errors:
        problems.append(f"{run.socket_errors} socket errors or timeouts")
    if run.server_errors:
        problems.append(f"{run.server_errors} answers with a 5xx status in the access log")
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
        # Every request sent the token: its use is counted in the same write as its hit.
        if run.usage_delta is not None and run.usage_delta != run.hits_delta:
            problems.append(f"the token's use rose by {run.usage_delta} for {run.hits_delta} hits")
    return problems


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
            if run.usage_delta is not None:
                counted += f"  token +{run.usage_delta}"
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


def runs_of(targets):
    """Every run of every target, as saved."""
    return {target.name: [vars(run) for run in target.runs] for target in targets}


def count_verdict(problems):
    """(passed, fatal, text) for the count check: it always fails the bench."""
    return (
        not problems,
        True,
        "count check: every answered request counted once, no 4xx/5xx, no socket errors",
    )


def print_verdicts(found, problems):
    """Print every problem and verdict; whether any fatal one failed."""
    for problem in problems:
        say(f"FAIL {problem}")
    failed = False
    for ok, fatal, text in found:
        say(f"{'PASS' if ok else 'FAIL'} {text}")
        failed |= fatal and not ok
    return failed
