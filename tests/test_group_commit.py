"""Group commit: concurrent increments share transactions, and every count stays exact."""

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from api import storage

THREADS = 16
PER_THREAD = 50


def increment_from_threads(app, threads=THREADS, per_thread=PER_THREAD, name="hits"):
    """Increment from many threads at once; return every number the calls returned."""
    start = threading.Barrier(threads)

    def work(_):
        start.wait()
        with app.app_context():
            return [storage.increment_counter(name) for _ in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        return [n for numbers in pool.map(work, range(threads)) for n in numbers]


def history_total(app, name="hits"):
    """The sum of a counter's hourly buckets, read straight from the table."""
    with app.app_context(), storage.db.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(storage.counter_hours.c.value), 0)).where(
                storage.counter_hours.c.name == name
            )
        ).scalar_one()


class RecordingCommit:
    """Wraps the app's real commit function to see each batch, and to hold one back."""

    def __init__(self, app):
        self.group = app.extensions["counter_commits"]
        self.commit = self.group._commit
        self.batches = []
        self.hold_next = None
        self.after_next = None
        self.group._commit = self

    def __call__(self, amounts):
        self.batches.append(dict(amounts))
        hold, self.hold_next = self.hold_next, None
        if hold is not None:
            hold()
        totals = self.commit(amounts)
        after, self.after_next = self.after_next, None
        if after is not None:
            after()
        return totals

    def queued(self):
        with self.group._mutex:
            return len(self.group._queue)


def wait_until(condition, timeout=30):
    """Poll until condition() holds; fail the test rather than hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


def test_concurrent_increments_get_distinct_exact_numbers(app, hits):
    before = hits()
    numbers = increment_from_threads(app)
    total = THREADS * PER_THREAD
    assert sorted(numbers) == list(range(before + 1, before + total + 1))
    assert hits() == before + total
    assert history_total(app) == before + total


def test_concurrent_increments_share_transactions(app, hits):
    recording = RecordingCommit(app)
    followers = 8
    # The first caller's transaction waits until the others have queued behind it.
    recording.hold_next = lambda: wait_until(lambda: recording.queued() == followers)

    with ThreadPoolExecutor(followers + 1) as pool:
        first = pool.submit(app_increment, app)
        wait_until(lambda: recording.batches)
        queued = [pool.submit(app_increment, app) for _ in range(followers)]
        results = [first.result()] + [f.result() for f in queued]

    # One transaction for the first caller, and one for all who queued while it committed,
    # numbered in the order they queued.
    assert recording.batches == [{"hits": 1}, {"hits": followers}]
    assert results[0] == 1
    assert sorted(results[1:]) == list(range(2, followers + 2))
    assert hits() == followers + 1


def app_increment(app, name="hits"):
    with app.app_context():
        return storage.increment_counter(name)


def test_a_batch_adds_each_name_and_numbers_each_caller(app, hits):
    recording = RecordingCommit(app)
    recording.hold_next = lambda: wait_until(lambda: recording.queued() == 6)
    with ThreadPoolExecutor(7) as pool:
        lead = pool.submit(app_increment, app)
        wait_until(lambda: recording.batches)
        queued = [pool.submit(app_increment, app, name) for name in ["hits", "errors"] * 3]
        results = [lead.result()] + [f.result() for f in queued]

    assert recording.batches == [{"hits": 1}, {"hits": 3, "errors": 3}]
    hit_numbers = [results[0]] + results[1::2]
    error_numbers = results[2::2]
    assert sorted(hit_numbers) == [1, 2, 3, 4]
    assert sorted(error_numbers) == [1, 2, 3]
    assert (hits(), hits("errors")) == (4, 3)


@pytest.fixture
def locked_app(make_app, database_path):
    """An app that gives up on a locked database after 50 ms, and a way to lock it."""
    app = make_app(SQLITE_BUSY_TIMEOUT_MS=50)
    blocker = sqlite3.connect(database_path, isolation_level=None, check_same_thread=False)
    yield app, blocker
    blocker.close()


def test_failed_commit_fails_exactly_its_batch(locked_app, hits):
    app, blocker = locked_app
    recording = RecordingCommit(app)
    waiting = 5
    # The first batch commits, then another connection takes the write lock before the
    # batch queued behind it can commit.
    recording.hold_next = lambda: wait_until(lambda: recording.queued() == waiting)
    recording.after_next = lambda: blocker.execute("BEGIN IMMEDIATE")

    with ThreadPoolExecutor(waiting + 1) as pool:
        lead = pool.submit(app_increment, app)
        wait_until(lambda: recording.batches)
        failing = [pool.submit(app_increment, app) for _ in range(waiting)]
        assert lead.result() == 1
        for future in failing:
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                future.result()

    blocker.execute("ROLLBACK")
    assert recording.batches == [{"hits": 1}, {"hits": waiting}]
    # Nothing of the failed batch was counted, and the next increment carries on from 1.
    assert app_increment(app) == 2
    assert hits() == 2
    assert history_total(app) == 2


def test_failed_commit_answers_503_and_the_server_recovers(locked_app, hits):
    app, blocker = locked_app
    client = app.test_client()
    assert client.get("/api?data=hits").get_json()["content"] == 1
    blocker.execute("BEGIN IMMEDIATE")
    response = client.get("/api?data=hits")
    blocker.execute("ROLLBACK")
    assert response.status_code == 503
    assert client.get("/api?data=hits").get_json()["content"] == 2


def test_increments_survive_a_closed_connection(app, hits):
    """A disposed engine closes the writer's connection; the next increment opens another."""
    assert app_increment(app) == 1
    with app.app_context():
        storage.db.engine.dispose()
    assert app_increment(app) == 2
    assert hits() == 2
