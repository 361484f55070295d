"""The pages phase: the stats and pages on a two-year and a one-week history.

Two databases of their own, each migrated, then seeded with a full history in one transaction
before its server starts (``seed_history``): every hour of the last 730 days, and of the last
7, up to the current hour, every counter slot, for hits and errors, with totals that agree.
One Procfile web process serves each (rate limiting off), and each round drives
``/api?data=hits``, ``/api/stats``, ``/stats`` and ``/docs`` on both, in turn, and the two
stats again with a token (errors included), with BENCH_PAGE_CONNECTIONS connections. The
table gives each path's req/s and the median of its per-round ratio to ``/api?data=hits`` on
the same server, for both histories side by side; the targets are a least ratio with two
years of history, and the same ratio, within 0.1, with one week. Before the rounds each path
must answer a plain GET with a 200, which wrk cannot tell from a 3xx.
"""

import time
from datetime import timedelta

import sqlalchemy as sa

from api import storage
from api.storage import sqlite_writer
from harness import servers

from .processes import Counters, launch, open_database, release, stop
from .rounds import (
    Target,
    count_check,
    count_verdict,
    first_answers,
    print_verdicts,
    run_rounds,
    runs_of,
)
from .settings import HITS, PAGE_CONNECTIONS, ROUNDS, SECONDS, STRICT, WRK_THREADS, median, say

# Days of full history per database, the paths driven on each server (the first is the
# yardstick), the least share of the yardstick's req/s each keeps with the long history, and
# how far its share may move between the two histories.
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
BUMP_TOTAL = sa.text(sqlite_writer.BUMP_TOTAL_SQL)


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
            conn.execute(sqlite_writer.BUMP_HOUR, hour_rows)
            conn.execute(BUMP_TOTAL, total_rows)
    finally:
        engine.dispose()
    return len(hour_rows)


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
