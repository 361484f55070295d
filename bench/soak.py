"""The soak phase: every kind of request for a while, and each worker's memory before and after.

One web process as deployed (rate limits and the access log on, only the budgets out of wrk's
reach) answers, in turn, public data (``/api/pizza``), private data with a token
(``/api?data=errors``), a page (``/``) and an error (``/api/nothing``, a 404), round after
round for BENCH_SOAK_SECONDS in all (120). Each worker's resident memory is read after a
warm-up and after every round: a cache that grows with every request shows as a steady rise,
reported per million requests, where bounded caches fill during the warm-up and stay. Every
run passes the count check of the other phases.
"""

import os
from pathlib import Path

from harness import servers

from .processes import Counters, children, launch, open_database, release, stop
from .rounds import Target, count_problems, measure, print_verdicts
from .settings import STRICT, WARMUP_SECONDS, say

SOAK_SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "120"))
ROUND_SECONDS = 5
# The most a worker's memory may grow per million requests once warm. A leak of one small
# object a request is hundreds of megabytes per million.
GROWTH_TARGET_MB = 10
BUDGET = "1000000000 per minute"


def rss_mb(pid):
    """A process's resident memory, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak_phase(wrk, tmp, kind, sizing, databases, started):
    """Start, warm up, soak, read memory; what it measured, and whether a fatal verdict
    failed."""
    database = open_database(tmp, "soak", databases)
    app_env = release(database)
    token = servers.mint_token(app_env, "soak")
    web = launch(
        tmp,
        started,
        "service-soak",
        servers.procfile_command("web"),
        {
            **app_env,
            "RATELIMIT_ENABLED": "true",
            "RATELIMIT_PER_CLIENT": BUDGET,
            "RATELIMIT_PER_TOKEN": BUDGET,
        },
    )
    targets = [
        Target("/api/pizza", web.name, "/api/pizza"),
        Target(
            "/api?data=errors (token)",
            web.name,
            "/api?data=errors",
            headers={"Authorization": f"Bearer {token}"},
        ),
        Target("/", web.name, "/"),
        Target("/api/nothing (404)", web.name, "/api/nothing", errors_expected=True),
    ]
    say(f"soak: {', '.join(t.name for t in targets)}, in turn, for {SOAK_SECONDS} s")
    counters = Counters(database.url)
    problems, samples, requests = [], [], 0
    by_name = {web.name: web}
    try:
        for target in targets:
            measure(wrk, target, by_name, counters, WARMUP_SECONDS, kind)
        workers = sorted(children(web.process.pid))
        samples.append((0, [rss_mb(pid) for pid in workers]))
        rounds = max(1, SOAK_SECONDS // (ROUND_SECONDS * len(targets)))
        for number in range(1, rounds + 1):
            for target in targets:
                run = measure(wrk, target, by_name, counters, ROUND_SECONDS, kind)
                requests += run.requests
                problems += [f"soak {target.name}: {p}" for p in count_problems(target, run)]
            samples.append((requests, [rss_mb(pid) for pid in workers]))
            say(f"soak round {number}: {requests} requests, RSS MiB per worker {samples[-1][1]}")
    finally:
        counters.close()
    stop([web])
    return report(samples, requests, problems)


def report(samples, requests, problems):
    """The memory table and the growth verdict."""
    first, last = samples[0][1], samples[-1][1]
    growth = max(after - before for before, after in zip(first, last, strict=True))
    per_million = growth / max(requests, 1) * 1e6
    say()
    say(
        "| requests | " + " | ".join(f"worker {n} RSS MiB" for n in range(1, len(first) + 1)) + " |"
    )
    say("|---:|" + "---:|" * len(first))
    for count, values in samples:
        say(f"| {count} | " + " | ".join(f"{value:.1f}" for value in values) + " |")
    say()
    verdict = (
        per_million <= GROWTH_TARGET_MB,
        STRICT,
        f"target: a worker's memory grew {growth:.1f} MiB over {requests} requests, "
        f"{per_million:.1f} MiB per million (target <= {GROWTH_TARGET_MB})",
    )
    count = (not problems, True, "count check: every soak request counted once")
    failed = print_verdicts([count, verdict], problems)
    measured = {"requests": requests, "rss_mb": samples, "growth_mb_per_million": per_million}
    return {**measured, "problems": problems}, failed
