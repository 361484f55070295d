"""The bench's own verdicts: a count check or a floor that cannot fail would flatter the table."""

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from api import create_app, storage
from bench import hits, pages, processes, rounds, run, soak


def a_run(requests=1000, hits_delta=1000, answered=1000, rps=100.0, p99_ms=10.0):
    return rounds.Run(
        requests=requests,
        seconds=requests / rps,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
        socket_errors=0,
        non_2xx=0,
        hits_delta=hits_delta,
        answered=answered,
    )


SERVICE = rounds.Target("/api?data=hits", "service", "/api?data=hits")


def test_the_count_check_is_exact_against_the_servers_answers():
    assert rounds.count_problems(SERVICE, a_run(hits_delta=1020, answered=1020)) == []
    # Within the in-flight allowance, yet one answered request was not counted.
    lost = rounds.count_problems(SERVICE, a_run(hits_delta=1019, answered=1020))
    assert lost == ["the counter rose by 1019 for 1020 answered requests"]
    assert rounds.count_problems(SERVICE, a_run(hits_delta=999, answered=None)) == ["LOST 1 hits"]


def test_a_5xx_in_the_access_log_fails_even_a_target_that_expects_errors(tmp_path):
    """wrk counts a 404 and a 503 alike; the access log tells them apart."""
    log_path = tmp_path / "service.log"
    log_path.write_bytes(b"before the run\n")
    mark = log_path.stat().st_size
    line = '127.0.0.1 - - [06/Dec/2026:23:47:33 +0000] "GET /api/nothing HTTP/1.1" {} 51 "-" "-"\n'
    with open(log_path, "a") as log:
        log.write(line.format(404) * 3 + line.format(503) + line.format(500))
        log.write(line.replace("/api/nothing", "/api/pizza").format(200))
    assert processes.answered_in(log_path, mark, "/api/nothing") == {404: 3, 503: 1, 500: 1}

    missing = rounds.Target("/api/nothing (404)", "service", "/api/nothing", errors_expected=True)
    run_ = a_run(hits_delta=1020, answered=1020)
    run_.non_2xx, run_.server_errors = 1020, 2
    assert rounds.count_problems(missing, run_) == ["2 answers with a 5xx status in the access log"]
    run_.server_errors = 0
    assert rounds.count_problems(missing, run_) == []


def test_a_tokens_use_must_rise_exactly_as_the_hits():
    with_token = rounds.Target("token", "service", "/api?data=errors", token="bench")
    exact = a_run(hits_delta=1020, answered=1020)
    exact.usage_delta = 1020
    assert rounds.count_problems(with_token, exact) == []
    short = a_run(hits_delta=1020, answered=1020)
    short.usage_delta = 1019
    assert rounds.count_problems(with_token, short) == [
        "the token's use rose by 1019 for 1020 hits"
    ]


def test_the_bench_reads_the_use_of_the_token_it_sends(app, database_url, token):
    """The counter the bench's check reads is the one that token's requests move."""
    client = app.test_client()
    counters = processes.Counters(database_url)
    try:
        usage = counters.usage_counter("test-client")
        before = counters.read(usage)
        for _ in range(3):
            response = client.get("/api/errors", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
        assert counters.read(usage) == before + 3
    finally:
        counters.close()


def test_each_measure_takes_its_better_floor():
    sync = rounds.Target("floor (sync)", "floor-sync", "/", counted=False)
    gthread = rounds.Target("floor (gthread)", "floor-gthread", "/", counted=False)
    granian = rounds.Target("floor (granian)", "floor-granian", "/", counted=False)
    service = rounds.Target("/api?data=hits", "service", "/api?data=hits")
    sync.runs = [a_run(rps=90, p99_ms=5)] * 3
    gthread.runs = [a_run(rps=100, p99_ms=20)] * 3
    granian.runs = [a_run(rps=200, p99_ms=4)] * 3
    service.runs = [a_run(rps=50, p99_ms=15)] * 3
    rows = {row["name"]: row for row in hits.table([sync, gthread, granian, service])}
    service_row = rows["/api?data=hits"]
    assert service_row["ratio"] == 0.5  # against gthread's req/s, the better conventional floor
    assert service_row["granian_ratio"] == 0.25
    assert service_row["p99_ratio"] == 3.0  # against sync's p99, the lower conventional one
    assert service_row["count"] == "exact"


def test_a_missed_target_is_a_failed_verdict():
    rows = [
        {"name": hits.HITS, "ratio": 0.99, "granian_ratio": 0.6, "p99_ratio": 1.5},
        {"name": hits.DEPLOYED, "ratio": 0.8, "granian_ratio": 0.5, "p99_ratio": 1.0},
    ]
    passed = {text: ok for ok, _fatal, text in hits.verdicts(rows, "sqlite", problems=[])}
    assert [ok for text, ok in passed.items() if "conventional floor (target >= 1.0)" in text] == [
        False
    ]
    assert all(
        ok for text, ok in passed.items() if "conventional floor (target >= 1.0)" not in text
    )
    failed_count = hits.verdicts(rows, "sqlite", problems=["LOST 1 hits"])[0]
    assert failed_count[:2] == (False, True)  # a lost hit always fails the bench


def test_phases_are_chosen_by_name_and_run_in_the_benchs_order():
    assert run.chosen_phases("") == ["hits", "pages", "soak"]
    assert run.chosen_phases("pages") == ["pages"]
    assert run.chosen_phases(" soak, pages, hits ") == ["hits", "pages", "soak"]
    with pytest.raises(ValueError, match="BENCH_PHASES names page;"):
        run.chosen_phases("page")


def test_a_seeded_history_holds_every_hour_and_slot_and_totals_that_agree():
    last = datetime(2026, 3, 1, 1)  # the hours run back across a day and a month
    hour_rows, total_rows = pages.history_rows(last, days=3, slots=4)
    assert len(hour_rows) == 3 * 24 * 4 * len(pages.SEEDED)
    hours = {row["hour"] for row in hour_rows}
    assert hours == {last - timedelta(hours=n) for n in range(3 * 24)}
    assert len({(r["name"], r["hour"], r["slot"]) for r in hour_rows}) == len(hour_rows)
    assert min(row["amount"] for row in hour_rows) >= 1
    for total in total_rows:
        assert total["amount"] == sum(
            r["amount"]
            for r in hour_rows
            if (r["name"], r["slot"]) == (total["name"], total["slot"])
        )
    assert {(t["name"], t["slot"]) for t in total_rows} == {
        (name, slot) for name in pages.SEEDED for slot in range(4)
    }


def test_a_seeded_history_is_stored_as_the_writer_stores_hits(database_url, monkeypatch):
    """Forty days, more than the series read, in a real SQLite file: the totals are the hours'
    sums, the series read full, and the next hit bumps the seeded row of its hour and slot
    rather than adding one, as it would if the seeded hours were stored in another form."""
    now = datetime(2026, 3, 1, 1, 30)
    monkeypatch.setattr(storage.clock, "utcnow", lambda: now)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    slots = app.config["COUNTER_SLOTS"]
    assert pages.seed_history(database_url, 40, slots) == 40 * 24 * slots * len(pages.SEEDED)
    with app.app_context():
        count_rows = sa.select(sa.func.count()).select_from(storage.counter_hours)
        hour_sums = sa.select(
            storage.counter_hours.c.name, sa.func.sum(storage.counter_hours.c.value)
        )
        with storage.reading() as conn:
            rows = conn.execute(count_rows).scalar_one()
            sums = dict(conn.execute(hour_sums.group_by(storage.counter_hours.c.name)).all())
        for name in pages.SEEDED:
            assert storage.read_counter(name) == sums[name]
        assert all(count for _, count in storage.counts_per_hour("hits", 48))
        assert all(count for _, count in storage.counts_per_day("hits", 30))
        assert storage.increment_counter("hits") == sums["hits"] + 1
        with storage.reading() as conn:
            assert conn.execute(count_rows).scalar_one() == rows


def test_each_page_is_compared_with_hits_on_its_own_server_in_the_same_round():
    def targets(label, rps):
        found = {}
        for path in pages.PAGE_PATHS:
            found[path] = rounds.Target(f"{path}, {label}", label, path)
            found[path].runs = [a_run(rps=value) for value in rps[path]]
        return found

    long = {
        hits.HITS: [100, 200, 400],
        "/api/stats": [60, 100, 200],  # 0.6, 0.5, 0.5
        "/stats": [30, 100, 100],  # 0.3, 0.5, 0.25
        "/docs": [80, 160, 320],  # 0.8 each
    }
    # /docs 0.1 lower, which floating point makes 0.10000000000000009: within, as printed.
    short = {**long, "/stats": [50, 100, 200], "/docs": [70, 140, 280]}  # 0.5; 0.7
    rows = pages.page_table(
        {pages.LONG: targets("long", long), pages.SHORT: targets("short", short)}
    )
    by_name = {row["name"]: row for row in rows}
    assert by_name["/api/stats"][pages.LONG]["ratio"] == 0.5
    assert by_name["/stats"][pages.LONG]["ratio"] == 0.3
    assert by_name["/docs"][pages.SHORT]["ratio"] == 0.7
    assert by_name["/api/stats"][pages.LONG]["count"] == "exact"
    verdicts = pages.page_verdicts(rows, problems=[])
    assert [text for ok, _fatal, text in verdicts if not ok] == [
        "target: /stats req/s is 0.30 of /api?data=hits's with two years of history "
        "(target >= 0.4)",
        "target: /stats ÷ /api?data=hits is 0.50 with one week of history, 0.30 with two years "
        "(target: within 0.1)",
    ]
    assert pages.page_verdicts(rows, problems=["LOST 1 hits"])[0][:2] == (False, True)


def test_the_soak_reports_memory_growth_per_million_requests():
    flat = [(0, [80.0, 81.0]), (500_000, [82.0, 81.5]), (1_000_000, [83.0, 82.0])]
    measured, failed = soak.report(flat, 1_000_000, problems=[])
    assert measured["growth_mb_per_million"] == 3.0
    assert not failed
    leaking = [(0, [80.0, 81.0]), (1_000_000, [270.0, 81.0])]
    measured, failed = soak.report(leaking, 1_000_000, problems=[])
    assert measured["growth_mb_per_million"] == 190.0
    assert not failed  # a missed target fails the bench only under BENCH_STRICT
    assert soak.report(flat, 1_000_000, problems=["LOST 1 hits"])[1]


def test_the_token_and_metrics_targets_are_read_against_hits_on_the_same_server():
    sync = rounds.Target("floor (sync)", "floor-sync", "/", counted=False)
    gthread = rounds.Target("floor (gthread)", "floor-gthread", "/", counted=False)
    granian = rounds.Target("floor (granian)", "floor-granian", "/", counted=False)
    service = rounds.Target(hits.HITS, "service", "/api?data=hits")
    token = rounds.Target(hits.TOKEN, "service", "/api?data=errors")
    off = rounds.Target(hits.METRICS_OFF, "service-no-metrics", "/api?data=hits")
    deployed = rounds.Target(hits.DEPLOYED, "service-deployed", "/api?data=hits")
    for target, rps in ((sync, 90), (gthread, 100), (granian, 200), (service, 100), (deployed, 80)):
        target.runs = [a_run(rps=rps)] * 3
    token.runs = [a_run(rps=70), a_run(rps=90), a_run(rps=85)]  # 0.7, 0.9, 0.85
    off.runs = [a_run(rps=110)] * 3  # metrics cost a tenth
    rows = hits.table([sync, gthread, granian, service, token, off, deployed])
    texts = {text: ok for ok, _fatal, text in hits.verdicts(rows, "sqlite", problems=[])}
    assert texts[f"target: {hits.TOKEN} req/s is 0.85 of {hits.HITS}'s (target >= 0.8)"]
    assert not texts[
        f"target: with metrics on, {hits.HITS} keeps 0.91 of its req/s with them off "
        "(target >= 0.95)"
    ]
