"""The bench's own verdicts: a count check or a floor that cannot fail would flatter the table."""

from bench import run


def a_run(requests=1000, hits_delta=1000, answered=1000, rps=100.0, p99_ms=10.0):
    return run.Run(
        requests=requests,
        seconds=requests / rps,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
        socket_errors=0,
        non_2xx=0,
        hits_delta=hits_delta,
        answered=answered,
    )


SERVICE = run.Target("/api?data=hits", "service", "/api?data=hits")


def test_the_count_check_is_exact_against_the_servers_answers():
    assert run.count_problems(SERVICE, a_run(hits_delta=1020, answered=1020)) == []
    # Within the in-flight allowance, yet one answered request was not counted.
    lost = run.count_problems(SERVICE, a_run(hits_delta=1019, answered=1020))
    assert lost == ["the counter rose by 1019 for 1020 answered requests"]
    assert run.count_problems(SERVICE, a_run(hits_delta=999, answered=None)) == ["LOST 1 hits"]


def test_each_measure_takes_its_better_floor():
    sync = run.Target("floor (sync)", "floor-sync", "/", counted=False)
    gthread = run.Target("floor (gthread)", "floor-gthread", "/", counted=False)
    granian = run.Target("floor (granian)", "floor-granian", "/", counted=False)
    service = run.Target("/api?data=hits", "service", "/api?data=hits")
    sync.runs = [a_run(rps=90, p99_ms=5)] * 3
    gthread.runs = [a_run(rps=100, p99_ms=20)] * 3
    granian.runs = [a_run(rps=200, p99_ms=4)] * 3
    service.runs = [a_run(rps=50, p99_ms=15)] * 3
    rows = {row["name"]: row for row in run.table([sync, gthread, granian, service])}
    hits = rows["/api?data=hits"]
    assert hits["ratio"] == 0.5  # against gthread's req/s, the better conventional floor
    assert hits["granian_ratio"] == 0.25
    assert hits["p99_ratio"] == 3.0  # against sync's p99, the lower conventional one
    assert hits["count"] == "exact"


def test_a_missed_target_is_a_failed_verdict():
    rows = [
        {"name": run.HITS, "ratio": 0.99, "granian_ratio": 0.6, "p99_ratio": 1.5},
        {"name": run.DEPLOYED, "ratio": 0.8, "granian_ratio": 0.5, "p99_ratio": 1.0},
    ]
    passed = {text: ok for ok, _fatal, text in run.verdicts(rows, "sqlite", problems=[])}
    assert [ok for text, ok in passed.items() if "conventional floor (target >= 1.0)" in text] == [
        False
    ]
    assert all(
        ok for text, ok in passed.items() if "conventional floor (target >= 1.0)" not in text
    )
    failed_count = run.verdicts(rows, "sqlite", problems=["LOST 1 hits"])[0]
    assert failed_count[:2] == (False, True)  # a lost hit always fails the bench
