"""``make bench``: the service under wrk against bare Flask floors, its stats and pages on a
long history, and its memory under sustained load, with an exact count check.

Three phases, all run unless BENCH_PHASES names some (``hits``, ``pages``, ``soak``;
``BENCH_PHASES=pages`` runs one alone while iterating on it):

- **hits** (``bench/hits.py``): ``/api?data=hits`` and friends against bare Flask floors;
- **pages** (``bench/pages.py``): the stats and pages on two years and one week of history;
- **soak** (``bench/soak.py``): every kind of request for a while, and each worker's memory
  before and after, so that a leak shows as a number.

Each phase's rounds and count check are in ``bench/rounds.py``, the servers and databases in
``bench/processes.py``. A 4xx/5xx answer, a socket error or a lost or extra hit fails the bench
with a non-zero exit. BENCH_ROUNDS below 3 is refused.

Settings (environment): BENCH_DATABASE_URL (a PostgreSQL server; the bench creates and drops
its own databases there), BENCH_PHASES (hits,pages,soak), and those ``bench/settings.py``
reads. WEB_CONCURRENCY and WEB_THREADS size every server alike, as they size a dyno;
COUNTER_SLOTS is the servers' and the seeded history's.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from api import config

from . import hits, pages, soak
from .processes import database_kind, ensure_wrk, machine
from .settings import RESULTS, ROOT, ROUNDS, SECONDS, say

PHASES = {"hits": hits.hits_phase, "pages": pages.pages_phase, "soak": soak.soak_phase}


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
    results, failed = {}, False
    for phase in phases:
        results[phase], phase_failed = PHASES[phase](wrk, tmp, kind, sizing, databases, started)
        failed |= phase_failed
    save(info, kind, sizing, results)
    return 1 if failed else 0


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


def save(info, kind, sizing, results):
    """The raw figures of this run, for comparison later (bench/results/ is not committed).

    The hits phase's figures are at the top level, where runs before the pages phase kept
    them; the other phases' under their names.
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
    for phase in ("pages", "soak"):
        if phase in results:
            saved[phase] = results[phase]
    out.write_text(json.dumps(saved, indent=2))
    say(f"results: {out.relative_to(ROOT)}")


def interrupt(_signum, _frame):
    """Treat SIGTERM like Ctrl-C, so that the servers are stopped either way."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(main())
