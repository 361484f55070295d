"""What every part of ``make bench`` shares: where things are, the load's size, how it speaks.

Settings (environment): BENCH_ROUNDS (5), BENCH_SECONDS (5), BENCH_CONNECTIONS (32, the hits
phase), BENCH_PAGE_CONNECTIONS (16, the pages phase), BENCH_WRK_THREADS (2), BENCH_STRICT (1
makes a missed speed target fail the exit code too).
"""

import os
import statistics
import sys
from pathlib import Path

from api import config

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
PAGE_CONNECTIONS = int(os.environ.get("BENCH_PAGE_CONNECTIONS", "16"))
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
WARMUP_SECONDS = 2
STRICT = config.env_flag("BENCH_STRICT", False)

# The yardstick of both phases.
HITS = "/api?data=hits"


def say(*args):
    print(*args, flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")
