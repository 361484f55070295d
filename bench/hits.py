"""The hits phase: the service's ``/api?data=hits`` and friends against bare Flask floors.

It first prints what one request costs in Python without any server (``bench/cost.py``).
Then it starts, on free ports, the floors and the service:

- the conventional floor, ``bench/bare.py`` (one Flask route, nothing counted) under gunicorn
  with sync workers and with gthread workers, at the service's worker and thread counts;
- the server's floor, the same app under granian with the web process's own settings;
- the Procfile's web process as the load test runs it (rate limiting off), the same with the
  access log off, and the same **as deployed**: every default as shipped, access log and rate
  limiting on, only the per-client and per-token budgets raised so that wrk's one address is
  never refused.

Medians of the rounds go into the table, with the CPU time the server's processes,
PostgreSQL's when it runs on this machine, and wrk spent per response.
"""

from api.resources import HEALTH_PATH
from api.web import server
from harness import servers

from . import cost
from .processes import Counters, launch, open_database, release, stop
from .rounds import Target, count_check, count_verdict, print_verdicts, run_rounds, runs_of
from .settings import (
    BENCH,
    BIN,
    CONNECTIONS,
    HITS,
    ROOT,
    ROUNDS,
    SECONDS,
    STRICT,
    WRK_THREADS,
    median,
    say,
)

# The targets: (target name, which floor, the least share of that floor's requests/s) per
# database, and how many times the conventional floor's p99 the service's p99 may be.
DEPLOYED = "/api?data=hits, as deployed"
RPS_TARGETS = {
    "sqlite": [
        (HITS, "conventional", 1.0),
        (HITS, "granian", 0.5),
        (DEPLOYED, "conventional", 0.8),
    ],
    "postgresql": [(HITS, "conventional", 0.7)],
}
P99_TARGET = 1.5
# Against /api?data=hits on the same server in the same round: a request with a token (its
# check, its use counted, the error count read) keeps at least this share; and the service
# with its metrics on keeps this share of itself with them off.
TOKEN, METRICS_OFF = "/api?data=errors (token)", "/api?data=hits, metrics off"
TOKEN_TARGET = 0.8
METRICS_TARGET = 0.95
# The token the token's target sends; its use is checked as exactly as the hits.
BENCH_TOKEN = "bench"  # noqa: S105 - the name of a token, not a secret
# Budgets for the as-deployed server that wrk's single address never exhausts.
UNREACHABLE_BUDGET = "1000000000 per minute"


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
    token = servers.mint_token(app_env, BENCH_TOKEN)

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
    start_one("service", web, HEALTH_PATH)
    # The gap between this one's row and the service's /api?data=hits is the access log's cost.
    start_one("service-no-access-log", web, HEALTH_PATH, ACCESS_LOG="false")
    # And this one's, the metrics' cost.
    start_one("service-no-metrics", web, HEALTH_PATH, METRICS_ENABLED="false")
    # What users deploy: every default, limits on; only budgets wrk cannot exhaust.
    start_one(
        "service-deployed",
        web,
        HEALTH_PATH,
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
            TOKEN,
            "service",
            "/api?data=errors",
            headers={"Authorization": f"Bearer {token}"},
            token=BENCH_TOKEN,
        ),
        Target("/", "service", "/"),
        Target("/api?data=hits, no access log", "service-no-access-log", "/api?data=hits"),
        Target(METRICS_OFF, "service-no-metrics", "/api?data=hits"),
        Target(DEPLOYED, "service-deployed", "/api?data=hits"),
    ]
    return targets, mine


def describe_floors(sizing):
    workers, threads = sizing["WEB_CONCURRENCY"], sizing["WEB_THREADS"]
    say(
        f"floors: bench/bare.py under gunicorn ({workers} sync workers; {workers} gthread "
        f"workers x {threads} threads) and under granian with the service's settings; "
        f"wrk -t{WRK_THREADS} -c{CONNECTIONS}, {ROUNDS} rounds of {SECONDS} s per target"
    )


def print_table(rows, kind):
    say()
    say(f"## {kind}: medians of {ROUNDS} rounds, {CONNECTIONS} connections")
    say()
    say(
        "| endpoint | req/s | p50 ms | p99 ms | ÷ conventional floor | ÷ granian floor "
        f"| ÷ {HITS} | p99 ÷ floor p99 | server CPU µs/resp | database CPU µs/resp "
        "| wrk CPU µs/resp | count check |"
    )
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        share = f"{row['hits_ratio']:.2f}" if "hits_ratio" in row else "-"
        say(
            f"| {row['name']} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['ratio']:.2f} | {row['granian_ratio']:.2f} | {share} | {row['p99_ratio']:.2f} | "
            f"{row['server_cpu_us']:.0f} | {row['database_cpu_us']:.0f} | "
            f"{row['wrk_cpu_us']:.0f} | {row['count']} |"
        )
    say()


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
    if TOKEN in by_name:
        share = by_name[TOKEN]["hits_ratio"]
        found.append(
            (
                share >= TOKEN_TARGET,
                STRICT,
                f"target: {TOKEN} req/s is {share:.2f} of {HITS}'s (target >= {TOKEN_TARGET})",
            )
        )
    if METRICS_OFF in by_name:
        kept = 1 / by_name[METRICS_OFF]["hits_ratio"]
        found.append(
            (
                kept >= METRICS_TARGET,
                STRICT,
                f"target: with metrics on, {HITS} keeps {kept:.2f} of its req/s with them off "
                f"(target >= {METRICS_TARGET})",
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
    hits = next(t for t in targets if t.name == HITS).runs
    for found, target in zip(rows, targets, strict=True):
        per_round = zip(target.runs, hits, strict=True)
        found["hits_ratio"] = median([r.rps / h.rps for r, h in per_round])
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
