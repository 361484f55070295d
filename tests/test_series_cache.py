"""The traffic series with completed hours kept per process: exact against a from-scratch
computation over a long history, across hour boundaries, on both databases; and retention."""

import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from api import create_app, storage
from api.config import InvalidSetting
from api.pages import traffic
from api.storage import postgresql_writer, retention
from api.storage import writer as writers

from . import servers
from .conftest import mint

# A minute and a half before an hour ends.
START = datetime(2026, 3, 10, 13, 58, 30)
HISTORY_DAYS = 450


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    """A migrated database on each backend the service supports."""
    return request.getfixturevalue("database_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def clock(monkeypatch):
    """The one clock stored times come from, set by the test."""

    class Clock:
        now = START

        def set(self, moment):
            self.now = moment

    clock = Clock()
    monkeypatch.setattr(storage.clock, "utcnow", lambda: clock.now)
    return clock


def two_apps(url):
    """Two apps on one database, as two worker processes or two dynos are; disposed after."""
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "ACCESS_LOG": False}
    apps = [create_app(config) for _ in range(2)]
    yield apps
    for app in apps:
        with app.app_context():
            storage.db.engine.dispose()


@pytest.fixture
def processes(url):
    """Two apps on one database, as two worker processes or two dynos are."""
    yield from two_apps(url)


def seed(app, days, until, slots=(0, 3)):
    """Every hour of ``days`` days before ``until`` for hits and errors, over two slots, with
    counts that differ from hour to hour; the counters' totals to match."""
    first = storage.clock.hour_of(until) - timedelta(days=days)
    rows, totals = [], {"hits": 0, "errors": 0}
    for i in range(days * 24):
        hour = first + timedelta(hours=i)
        for slot in slots:
            hits = 1 + (i * 7 + slot) % 23
            rows.append({"name": "hits", "hour": hour, "slot": slot, "value": hits})
            rows.append({"name": "errors", "hour": hour, "slot": slot, "value": hits % 5})
            totals["hits"] += hits
            totals["errors"] += hits % 5
    with app.app_context(), storage.db.engine.begin() as conn:
        conn.execute(sa.insert(storage.counter_hours), rows)
        conn.execute(
            sa.insert(storage.counters),
            [{"name": name, "slot": 0, "value": total} for name, total in totals.items()],
        )
    return len(rows)


def cached(app, now, with_totals=True):
    """The kept series, as a view reads them: with the totals it knows (every counted view
    knows its hits), or with none, when the open hours are read from the database."""
    with app.app_context():
        totals = {name: storage.read_counter(name) for name in traffic.NAMES}
        series = app.extensions["traffic_series"]
        window = series.read(traffic.HOURS, traffic.DAYS, now, totals if with_totals else None)
    return window.per_hour, window.per_day


def from_scratch(app, now):
    with app.app_context():
        hours = {n: storage.counts_per_hour(n, traffic.HOURS, now) for n in traffic.NAMES}
        days = {n: storage.counts_per_day(n, traffic.DAYS, now) for n in traffic.NAMES}
    return hours, days


def increment(app, name="hits", amount=1):
    with app.app_context():
        storage.increment_counter(name, amount)


def test_series_match_a_from_scratch_computation_across_hour_boundaries(processes, clock):
    first, second = processes
    seed(first, HISTORY_DAYS, START)
    moments = [
        START,  # only the current hour open
        START + timedelta(minutes=1, seconds=29),  # 14:00:00 minus a second
        START + timedelta(minutes=1, seconds=31),  # a new hour, the last two still open
        START + timedelta(minutes=6, seconds=31),  # 13:00 final
        START + timedelta(minutes=61, seconds=31),  # 15:00: 14:00 still open
        START + timedelta(minutes=67),  # 14:00 final
        datetime(2026, 3, 11, 0, 0, 1),  # a new day
        datetime(2026, 3, 11, 0, 6),  # yesterday's last hour final
        datetime(2026, 3, 12, 9, 30),  # a day and more later
    ]
    for step, moment in enumerate(moments):
        clock.set(moment)
        # Both processes count in the current hour, and each reads after every increment.
        increment(first, amount=step + 1)
        assert cached(first, moment) == from_scratch(first, moment)
        increment(second, "errors", amount=2)
        increment(second)
        expected = from_scratch(second, moment)
        assert cached(second, moment) == expected
        assert cached(first, moment) == expected
        assert cached(first, moment, with_totals=False) == expected
        per_hour, per_day = expected
        assert len(per_hour["hits"]) == traffic.HOURS
        assert len(per_day["hits"]) == traffic.DAYS
        assert per_hour["hits"][-1][0] == storage.clock.hour_of(moment)


def test_a_completed_hour_is_read_once_per_process(processes, clock):
    """After its first read, a process asks the database only for the open hours: a row
    written into a completed hour behind its back (no writer of the service would) is not
    seen by the process that holds that hour, and is seen by a process that reads it fresh."""
    first, second = processes
    seed(first, 40, START)
    statements = []
    with first.app_context():
        engine = storage.db.engine

        def record(_conn, _cursor, statement, parameters, _context, _many):
            if "counter_hours" in statement:
                statements.append(parameters)

        sa.event.listen(engine, "before_cursor_execute", record)
    cached(first, START)
    statements.clear()
    for seconds in (1, 20, 40):
        cached(first, START + timedelta(seconds=seconds))
    # The current hour is the only open one: it is the totals less what came before it.
    assert statements == []
    cached(first, START, with_totals=False)
    assert len(statements) == 1
    # In the first minutes of an hour the one before is still open: both are read.
    statements.clear()
    for seconds in (100, 120, 140):
        cached(first, START + timedelta(seconds=seconds))
    assert len(statements) == 3

    done = storage.clock.hour_of(START) - timedelta(hours=5)
    with first.app_context(), storage.db.engine.begin() as conn:
        conn.execute(
            sa.insert(storage.counter_hours),
            {"name": "hits", "hour": done, "slot": 9, "value": 1000},
        )
    hour_count = dict(cached(first, START)[0]["hits"])[done]
    assert dict(cached(second, START)[0]["hits"])[done] == hour_count + 1000


def test_the_pages_read_the_kept_series(make_app, clock):
    app = make_app()
    seed(app, 60, START)
    client = app.test_client()
    for _ in range(3):
        body = client.get("/api/stats").get_json()["content"]
    hours, days = from_scratch(app, START)
    assert [row["hits"] for row in body["per_hour"]] == [n for _, n in hours["hits"]]
    assert [row["hits"] for row in body["per_day"]] == [n for _, n in days["hits"]]
    assert client.get("/stats").status_code == 200


def test_a_batch_that_waits_into_the_next_hour_is_stamped_with_it(app, monkeypatch):
    """A SQLite batch reads its hour before it has the lock; should the lock take it past the
    hour's end, it is stamped again before it commits, never left in a completed hour."""
    readings = iter([datetime(2026, 3, 10, 13, 59, 59, 999000)] + [datetime(2026, 3, 10, 14)] * 5)
    monkeypatch.setattr(storage.clock, "utcnow", lambda: next(readings))
    increment(app, amount=5)
    monkeypatch.undo()
    with app.app_context(), storage.reading() as conn:
        rows = conn.execute(
            sa.select(storage.counter_hours.c.hour, storage.counter_hours.c.value)
        ).all()
    assert rows == [(datetime(2026, 3, 10, 14), 5)]


def test_postgresql_writer_statements_end_before_their_hour_is_final(pg_url):
    """Whatever DB_STATEMENT_TIMEOUT_MS says, even 0 (no limit), a batch cannot outlive its
    hour by as long as readers wait before they take it as final."""
    assert writers.WRITE_DEADLINE < storage.SEALED_AFTER
    for configured, expected in ((0, "10s"), (5000, "5s"), (600_000, "10s")):
        app = create_app({"SQLALCHEMY_DATABASE_URI": pg_url, "DB_STATEMENT_TIMEOUT_MS": configured})
        increment(app)
        writer = app.extensions["counter_commits"]._commit
        writer._cursor.execute("SHOW statement_timeout")
        assert writer._cursor.fetchone()[0] == expected
        with app.app_context():
            storage.db.engine.dispose()


def hourly_rows(app):
    with app.app_context(), storage.reading() as conn:
        return conn.execute(
            sa.select(storage.counter_hours.c.name, sa.func.min(storage.counter_hours.c.hour))
            .group_by(storage.counter_hours.c.name)
            .order_by(storage.counter_hours.c.name)
        ).all()


def totals(app):
    with app.app_context():
        return storage.read_counter("hits"), storage.read_counter("errors")


def test_pruning_deletes_hours_before_the_retention_and_keeps_totals(processes, clock):
    app = processes[0]
    seed(app, 500, START)
    # The writer's own rows for the first hour kept and the last one pruned: on SQLite the
    # writer stores hours as text without microseconds, where the seed above has them.
    for moment in (datetime(2025, 2, 3, 0, 10), datetime(2025, 2, 2, 23, 50)):
        clock.set(moment)
        increment(app, amount=1000)
    clock.set(START)
    before = totals(app)
    cutoff = datetime(2025, 2, 3)  # midnight UTC 400 days before 2026-03-10
    with app.app_context(), storage.reading() as conn:
        hours = conn.execute(sa.select(storage.counter_hours.c.hour)).scalars().all()
    with app.app_context():
        deleted = storage.prune_counter_hours(storage.db.engine, 400)
        assert storage.prune_counter_hours(storage.db.engine, 400) == 0
    # 99 days and 11 hours of 2 slots × 2 counters, and the writer's row at 23:00 unless
    # it landed on a seeded row's slot.
    assert deleted == len([hour for hour in hours if hour < cutoff])
    assert deleted >= 2 * 2 * (99 * 24 + 11)
    assert hourly_rows(app) == [("errors", cutoff), ("hits", cutoff)]
    assert totals(app) == before
    with app.app_context(), storage.reading() as conn:
        kept = conn.execute(
            sa.select(sa.func.sum(storage.counter_hours.c.value)).where(
                storage.counter_hours.c.slot < 100,
                storage.counter_hours.c.hour < datetime(2025, 2, 3, 0, 30),
            )
        ).scalar_one()
    assert kept >= 1000  # the writer's row at midnight stayed
    # The charts' windows are whole.
    assert cached(app, START) == from_scratch(processes[1], START)


def test_the_first_batch_of_a_process_prunes_in_the_background(url, clock):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "COUNTER_HOURS_RETENTION_DAYS": 40})
    seed(app, 60, START)
    increment(app)
    deadline = datetime.now() + timedelta(seconds=20)
    while min(h for _, h in hourly_rows(app)) < datetime(2026, 1, 29) and datetime.now() < deadline:
        threading.Event().wait(0.05)
    assert hourly_rows(app) == [("errors", datetime(2026, 1, 29)), ("hits", datetime(2026, 1, 29))]
    # The next prune is set for the first hour of the next UTC day.
    writer = app.extensions["counter_commits"]._commit
    assert datetime(2026, 3, 11) <= writer._prune_at < datetime(2026, 3, 11, 1)
    with app.app_context():
        storage.db.engine.dispose()


def test_zero_keeps_every_hour(url, clock):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "COUNTER_HOURS_RETENTION_DAYS": 0})
    seed(app, 500, START)
    increment(app)
    assert app.extensions["counter_commits"]._commit._prune_at == datetime.max
    assert hourly_rows(app)[0][1] == START.replace(minute=0, second=0) - timedelta(days=500)
    with app.app_context():
        storage.db.engine.dispose()


def test_pruning_skips_while_another_postgresql_process_prunes(pg_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": pg_url})
    seed(app, 500, START)
    with app.app_context():
        engine = storage.db.engine
        with engine.begin() as holder:
            holder.execute(sa.select(sa.func.pg_advisory_xact_lock(retention.PRUNE_LOCK_KEY)))
            assert storage.prune_counter_hours(engine, 400, now=START) is None
        assert storage.prune_counter_hours(engine, 400, now=START) > 0
        engine.dispose()


@pytest.mark.parametrize("days", [1, 30, -5])
def test_a_retention_shorter_than_the_charts_is_refused(database_url, days):
    with pytest.raises(InvalidSetting, match="COUNTER_HOURS_RETENTION_DAYS"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, "COUNTER_HOURS_RETENTION_DAYS": days})


def completed_bars(page):
    """The bars and table rows of completed hours and days: all but each chart's last bar and
    its table's first row, which are still growing."""
    charts = page.split("<figure")[1:]
    parts = []
    for chart in charts:
        bars = re.findall(r'<g class="bar">.*?</g>', chart, re.S)
        rows = re.findall(r"<tr><td>.*?</tr>", chart, re.S)
        parts.append((bars[:-1], rows[1:]))
    return parts


def test_the_page_draws_completed_bars_once_and_as_a_fresh_process_would(
    processes, clock, monkeypatch
):
    first, second = processes
    seed(first, 40, START)
    token = mint(first, "stats-reader")
    headers = {"Authorization": f"Bearer {token}"}
    warm = first.test_client()
    for _ in range(3):
        warm.get("/stats", headers=headers)
    drawn = []
    macros = first.jinja_env.get_template("_chart.html").module
    for name in ("bar", "row"):
        macro = getattr(macros, name)
        monkeypatch.setattr(macros, name, lambda *a, macro=macro: drawn.append(a) or macro(*a))
    page = warm.get("/stats", headers=headers).get_data(as_text=True)
    fresh = second.test_client().get("/stats", headers=headers).get_data(as_text=True)
    # The bars of both charts, drawn from memory in one process and from scratch in another.
    assert completed_bars(page) == completed_bars(fresh)
    assert [len(bars) for bars, _ in completed_bars(page)] == [traffic.HOURS - 1, traffic.DAYS - 1]
    # The warm view drew only the open bar and row of each chart.
    assert len(drawn) == 2 * 2


def test_sqlite_hours_keep_the_text_form_existing_rows_have(app, monkeypatch, database_path):
    """The writer gives SQLite its hour as text in the form ``sqlite3``'s default adapter
    (deprecated from Python 3.12) always wrote, so an hour's increments keep landing on the
    rows already there."""
    monkeypatch.setattr(storage.clock, "utcnow", lambda: datetime(2026, 3, 10, 14, 25))
    for _ in range(3):
        increment(app)
    with sqlite3.connect(database_path) as db:
        rows = db.execute(
            "SELECT hour, typeof(hour), SUM(value) FROM counter_hours GROUP BY hour"
        ).fetchall()
    assert rows == [("2026-03-10 14:00:00", "text", 3)]


def test_a_read_a_moment_behind_another_keeps_the_hours_it_moved_on(processes, clock):
    """Threads read the clock in one order and reach the cache in another: a read from just
    before an hour becomes final that arrives after one from just after keeps the kept hours
    as they are, rather than reading every completed hour again, and gets the right numbers."""
    app = processes[0]
    seed(app, 40, START)
    after = datetime(2026, 3, 10, 15) + storage.SEALED_AFTER + timedelta(microseconds=1000)
    before = datetime(2026, 3, 10, 15) + storage.SEALED_AFTER - timedelta(microseconds=1000)
    clock.set(after)
    increment(app)
    cached(app, after)
    kept = app.extensions["traffic_series"]._kept
    assert cached(app, before) == from_scratch(app, before)
    assert app.extensions["traffic_series"]._kept is kept


def test_the_daily_prune_starts_at_its_own_minute(make_app, monkeypatch):
    """Each process prunes at a random moment in the first hour of the UTC day, not all of
    them at one o'clock."""
    app = make_app(COUNTER_HOURS_RETENTION_DAYS=40)
    started = []
    monkeypatch.setattr(retention, "prune_in_background", lambda *args: started.append(args))
    moment = {"now": datetime(2026, 3, 10, 14, 25)}
    monkeypatch.setattr(storage.clock, "utcnow", lambda: moment["now"])
    increment(app)
    assert len(started) == 1
    writer = app.extensions["counter_commits"]._commit
    writer._prune_at = datetime(2026, 3, 11, 0, 17)
    for now, runs in ((datetime(2026, 3, 11, 0, 16), 1), (datetime(2026, 3, 11, 0, 18), 2)):
        moment["now"] = now
        increment(app)
        assert len(started) == runs
    assert datetime(2026, 3, 12) <= writer._prune_at < datetime(2026, 3, 12, 1)


def test_pruning_gives_up_on_a_row_it_cannot_delete(processes, clock):
    """An hour that is not whole (no writer of the service leaves one) is left in place
    rather than tried forever."""
    app = processes[0]
    seed(app, 3, START)
    with app.app_context(), storage.db.engine.begin() as conn:
        conn.execute(
            sa.insert(storage.counter_hours),
            {"name": "hits", "hour": datetime(2025, 1, 1, 23, 45), "slot": 0, "value": 1},
        )
    with app.app_context():
        assert storage.prune_counter_hours(storage.db.engine, 40, now=START) == 0


# Hours on PostgreSQL go by the database's clock, and no write lands in an hour once readers may
# hold it as final.


@pytest.fixture
def pg_processes(pg_url):
    """Two apps on one PostgreSQL database, as two workers or two dynos are."""
    yield from two_apps(pg_url)


def admin(url):
    return psycopg.connect(sa.engine.make_url(url).render_as_string(hide_password=False))


def database_hour(url):
    """The hour it is on the database server's clock."""
    with admin(url) as conn:
        now = conn.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'").fetchone()[0]
    return storage.clock.hour_of(now)


@contextmanager
def late_hit(app):
    """A hit on ``app`` whose batch is stamped now and reaches its statement's execution only
    after its write deadline has passed, as one stalled on the network or in a pooler would.
    The deadline is shortened for the block, after the writer set its statement timeout, which
    the wait stays inside; the wait is a lock on counter_hours, which holds the batch's inserts
    and no read. Yields a future of the hit's answer, released on leaving the block."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    late = timedelta(seconds=0.2)
    deadline, postgresql_writer.WRITE_DEADLINE = postgresql_writer.WRITE_DEADLINE, late
    try:
        with admin(url) as holder, ThreadPoolExecutor(1) as pool:
            holder.execute("LOCK TABLE counter_hours IN SHARE MODE")
            answer = pool.submit(app.test_client().get, "/api?data=hits")
            with admin(url) as watcher:
                waiting = (
                    "SELECT count(*) FROM pg_locks "
                    "WHERE NOT granted AND relation = 'counter_hours'::regclass"
                )
                servers.wait_until(lambda: watcher.execute(waiting).fetchone()[0] == 1)
            time.sleep(0.3)
            try:
                yield answer
            finally:
                holder.rollback()
            answer.result(timeout=10)
    finally:
        postgresql_writer.WRITE_DEADLINE = deadline


def stored(app):
    """Each counter's total and the sum of its hourly rows."""
    with app.app_context(), storage.reading() as conn:
        hours = dict(
            conn.execute(
                sa.select(
                    storage.counter_hours.c.name, sa.func.sum(storage.counter_hours.c.value)
                ).group_by(storage.counter_hours.c.name)
            ).all()
        )
    return {name: (storage_total(app, name), hours.get(name, 0)) for name in traffic.NAMES}


def storage_total(app, name):
    with app.app_context():
        return storage.read_counter(name)


def test_a_batch_that_reaches_the_database_after_its_deadline_writes_nothing(pg_processes):
    app = pg_processes[0]
    client = app.test_client()
    assert client.get("/api?data=hits").get_json()["content"] == 1
    before = stored(app)

    with late_hit(app) as answer:
        pass
    response = answer.result()
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5")
    # Nothing of it was written, neither its hour nor its total.
    assert stored(app) == before == {"hits": (1, 1), "errors": (0, 0)}
    assert client.get("/api?data=hits").get_json()["content"] == 2


def test_hours_go_by_the_database_clock_whatever_this_machine_says(pg_processes, monkeypatch):
    """A machine whose clock is minutes off, behind or ahead, stamps its hits and takes its
    hours as final by the database's clock: it measures the difference when it connects."""
    url = pg_processes[0].config["SQLALCHEMY_DATABASE_URI"]
    hours = set()
    for app, minutes in zip(pg_processes, (-2, 62), strict=True):
        hour = database_hour(url)
        hours.add(hour)
        # 2 minutes before the database's hour began, or 2 minutes after it ended.
        wrong = hour + timedelta(minutes=minutes)
        skew = wrong.replace(tzinfo=UTC).timestamp() - time.time()
        monkeypatch.setattr(storage.clock, "system_time", lambda skew=skew: time.time() + skew)
        monkeypatch.setattr(storage.clock, "offset", None)
        monkeypatch.setattr(storage.clock, "measured_at", None)
        body = app.test_client().get("/api/stats").get_json()["content"]
        now = storage.clock.utcnow()
        hours.add(database_hour(url))
        assert storage.clock.hour_of(now) in hours
        # The hours shown end at the database's, and hold what a from-scratch read holds.
        assert body["per_hour"][-1]["hour"] in {f"{hour.isoformat()}Z" for hour in hours}
        from_scratch_hours, _ = from_scratch(app, now)
        assert [row["hits"] for row in body["per_hour"]] == [
            n for _, n in from_scratch_hours["hits"]
        ]
        with app.app_context(), storage.reading() as conn:
            stamped = conn.execute(sa.select(storage.counter_hours.c.hour).distinct()).scalars()
            assert set(stamped) <= hours


def test_workers_agree_on_a_completed_hour_after_a_late_write(pg_processes, clock):
    """A hit stamped in an hour's last second reaches the database after the hour is final on
    every worker: it is refused, so both still show what a from-scratch computation shows,
    for the completed hour and for the current one."""
    first = pg_processes[0]
    seed(first, 3, START)
    last_second = datetime(2026, 3, 10, 13, 59, 59)
    final = datetime(2026, 3, 10, 14, 1, 10)
    clock.set(last_second)
    for app in pg_processes:
        app.test_client().get("/api/stats")
    with late_hit(first):
        # Both take 13:00 as final while the hit stamped with it still waits.
        clock.set(final)
        for app in pg_processes:
            cached(app, final)
    for app in pg_processes:
        body = app.test_client().get("/api/stats").get_json()["content"]
        hours, days = from_scratch(app, final)
        assert [row["hits"] for row in body["per_hour"]] == [n for _, n in hours["hits"]]
        assert [row["hits"] for row in body["per_day"]] == [n for _, n in days["hits"]]
