"""Group commit: concurrent increments share transactions, and every count stays exact."""

import os
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import sqlalchemy as sa

from api import config, create_app, storage
from api.storage import group_commit

from . import servers
from .conftest import migrate

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
        self.reads = []
        self.hold_next = None
        self.after_next = None
        self.group._commit = self

    def __call__(self, amounts, asked, touched=(), reads=()):
        self.batches.append(dict(amounts))
        self.reads.append(list(reads))
        hold, self.hold_next = self.hold_next, None
        if hold is not None:
            hold()
        totals = self.commit(amounts, asked, touched, reads)
        after, self.after_next = self.after_next, None
        if after is not None:
            after()
        return totals

    def queued(self):
        with self.group._mutex:
            return len(self.group._queue)


def wait_until(condition):
    """Poll closely: these conditions are threads reaching a lock, which takes microseconds."""
    servers.wait_until(condition, timeout=30, interval=0.001)


@pytest.fixture
def postgres_app():
    """The app on a fresh, migrated PostgreSQL database of its own, dropped afterwards."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    admin_url = sa.make_url(config.database_url(server))
    name = f"group_commit_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        yield app
        with app.app_context():
            storage.db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request):
    """The app on each database the service supports."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "postgres_app")


def read(app, name="hits"):
    with app.app_context():
        return storage.read_counter(name)


def test_concurrent_increments_get_distinct_exact_numbers(any_app):
    before = read(any_app)
    numbers = increment_from_threads(any_app)
    total = THREADS * PER_THREAD
    assert sorted(numbers) == list(range(before + 1, before + total + 1))
    assert read(any_app) == before + total
    assert history_total(any_app) == before + total


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


def test_a_batch_adds_each_name_and_numbers_each_caller(any_app):
    app = any_app
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
    assert (read(app), read(app, "errors")) == (4, 3)
    assert (history_total(app), history_total(app, "errors")) == (4, 3)


def app_increment_many(app, amounts, reads=()):
    with app.app_context():
        return storage.increment_counters(amounts, (), reads)


def test_a_batch_reads_the_counters_asked_for_without_adding_to_them(any_app):
    """A request that reports a counter it does not add to (the error count) has its total
    read in the same transaction; a name read and added in one batch is added once."""
    app = any_app
    for _ in range(5):
        app_increment(app, "errors")
    recording = RecordingCommit(app)
    recording.hold_next = lambda: wait_until(lambda: recording.queued() == 3)
    with ThreadPoolExecutor(4) as pool:
        lead = pool.submit(app_increment_many, app, {"hits": 1}, ("errors",))
        wait_until(lambda: recording.batches)
        reader = pool.submit(app_increment_many, app, {"hits": 1}, ("errors", "never_counted"))
        wait_until(lambda: recording.queued() == 1)
        adder = pool.submit(app_increment_many, app, {"errors": 1})
        wait_until(lambda: recording.queued() == 2)
        last = pool.submit(app_increment_many, app, {"hits": 1}, ("errors",))
        results = [f.result() for f in (lead, reader, adder, last)]

    assert recording.batches == [{"hits": 1}, {"hits": 2, "errors": 1}]
    assert recording.reads == [["errors"], ["never_counted"]]
    # In queue order: the reader came before the added error, the last caller after it.
    assert results == [
        {"hits": 1, "errors": 5},
        {"hits": 2, "errors": 5, "never_counted": 0},
        {"errors": 6},
        {"hits": 3, "errors": 6},
    ]
    assert (read(app), read(app, "errors"), read(app, "never_counted")) == (3, 6, 0)
    with app.app_context(), storage.db.engine.connect() as conn:
        for table in (storage.counters, storage.counter_hours):
            query = sa.select(sa.func.count()).where(table.c.name == "never_counted")
            assert conn.execute(query).scalar_one() == 0, f"a read wrote to {table.name}"


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


def test_a_commit_that_answers_wrongly_fails_its_batch_and_hangs_nothing():
    """A commit that returns no total for a name is a bug; its callers hear of it, and the
    lead still passes on, so that later increments neither hang nor fail."""
    broken = threading.Event()
    broken.set()
    committed = {"hits": 0}

    def commit(amounts, _asked, _touched, _reads):
        committed["hits"] += amounts["hits"]
        return {} if broken.is_set() else dict(committed)

    group = group_commit.GroupCommit(commit)

    def from_threads(count=8):
        """Each thread's answer; daemon threads, so that a hang fails the test, not the run."""
        start, answers = threading.Barrier(count), []

        def work():
            start.wait()
            try:
                answers.append(group.increment("hits"))
            except KeyError as error:
                answers.append(error)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(timeout=max(0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "an increment never returned"
        return answers

    assert all(isinstance(answer, KeyError) for answer in from_threads())
    broken.clear()
    assert sorted(from_threads()) == list(range(9, 17))


def test_failed_commit_answers_503_and_the_server_recovers(locked_app, hits):
    app, blocker = locked_app
    client = app.test_client()
    assert client.get("/api?data=hits").get_json()["content"] == 1
    blocker.execute("BEGIN IMMEDIATE")
    response = client.get("/api?data=hits")
    blocker.execute("ROLLBACK")
    assert response.status_code == 503
    assert client.get("/api?data=hits").get_json()["content"] == 2


def test_an_error_count_that_fails_after_the_view_answers_503(make_app, database_path, caplog):
    """The error of a 404 is counted after its view, in an after-request hook, outside
    Flask's handling of a view's exceptions: a database that fails there is still a 503 in
    the API's shape, with a warning, not a 500 with a traceback."""
    app = make_app(SQLITE_BUSY_TIMEOUT_MS=50, TESTING=False)
    blocker = sqlite3.connect(database_path, isolation_level=None, check_same_thread=False)

    @app.after_request
    def lock_after_the_hit(response):
        # Runs after the view and before the error's count, the service's last hook.
        if response.status_code == 404:
            blocker.execute("BEGIN IMMEDIATE")
        return response

    client = app.test_client()
    try:
        response = client.get("/api/nothing")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert response.get_json() == {"type": "Error", "content": "Service unavailable"}
    assert response.headers["Retry-After"]
    assert [r.levelname for r in caplog.records if r.name == app.logger.name] == ["WARNING"]
    # The hit was counted before the view; the error was not, and nothing else was lost.
    with app.app_context():
        assert (storage.read_counter("hits"), storage.read_counter("errors")) == (1, 0)
    assert client.get("/api?data=hits").get_json()["content"] == 2


def test_increments_survive_a_closed_connection(app, hits):
    """A disposed engine closes the writer's connection; the next increment opens another."""
    assert app_increment(app) == 1
    with app.app_context():
        storage.db.engine.dispose()
    assert app_increment(app) == 2
    assert hits() == 2


def terminate_backends(app, waiting_on_a_lock=False):
    """End the database sessions of the other connections, as a server restart would."""
    with app.app_context(), storage.db.engine.connect() as conn:
        return (
            conn.execute(
                sa.text(
                    # In the select list, so that only the rows WHERE keeps are terminated.
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND (NOT :waiting OR wait_event_type = 'Lock')"
                ),
                {"waiting": waiting_on_a_lock},
            )
            .scalars()
            .all()
        )


def alive(app, pids):
    """How many of these server sessions still exist, asked on a connection of its own: one
    from the app's pool may be among the sessions just ended, its end not yet seen."""
    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
        return conn.execute(query, (list(pids),)).fetchone()[0]


def test_a_connection_closed_between_batches_is_replaced_first(postgres_app):
    app = postgres_app
    assert app_increment(app) == 1
    ended = terminate_backends(app)
    assert ended
    # pg_terminate_backend only signals; a restart is over once the old sessions are gone.
    wait_until(lambda: alive(app, ended) == 0)
    assert app_increment(app) == 2
    assert read(app) == 2


def test_pooled_connections_the_server_closed_are_replaced_at_checkout(postgres_app):
    """Reads check out pooled connections; after a restart each is replaced, none fails."""
    app = postgres_app
    with app.app_context():
        storage.create_token("reader", "a" * 64)
        # Several connections at once, so that the pool keeps several.
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda _: read(app), range(40))) == {0}
        assert storage.db.engine.pool.checkedin() > 1
    ended = terminate_backends(app)
    assert len(ended) > 1
    wait_until(lambda: alive(app, ended) == 0)
    with app.app_context():
        assert [storage.find_token("a" * 64).name for _ in range(5)] == ["reader"] * 5
        assert [storage.read_counter("hits") for _ in range(5)] == [0] * 5
        assert storage.database_writable()


def test_reads_in_autocommit_leave_the_pooled_connection_transactional(postgres_app):
    """A read switches its connection to autocommit; the next user must get a transaction."""
    app = postgres_app
    with app.app_context():
        storage.db.engine.dispose()
        assert storage.read_counter("hits") == 0
        with storage.db.engine.connect() as conn:
            conn.execute(sa.text("INSERT INTO counters (name, slot, value) VALUES ('x', 0, 5)"))
            conn.rollback()
        assert storage.read_counter("x") == 0


def test_a_connection_lost_during_a_batch_fails_only_that_batch(postgres_app):
    app = postgres_app
    assert app_increment(app) == 1
    with app.app_context(), storage.db.engine.connect() as locker:
        # The next batch waits on this lock, and its session is ended while it waits.
        locker.execute(sa.text("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE"))
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(app_increment, app)
            wait_until(lambda: len(terminate_backends(app, waiting_on_a_lock=True)) == 1)
            with pytest.raises(sa.exc.DBAPIError) as failure:
                blocked.result()
        locker.rollback()
    assert failure.value.connection_invalidated
    assert app_increment(app) == 2
    assert read(app) == 2
    assert history_total(app) == 2


def test_batches_of_several_processes_never_deadlock(make_app, pg_url):
    """Each process's writer commits its batches on a connection of its own; two whose
    batches hold the same counters, queued in opposite orders (a hit then an error, an error
    then a hit), take the rows' locks in one order, so PostgreSQL never has to cancel one."""
    apps = [make_app(SQLALCHEMY_DATABASE_URI=pg_url, COUNTER_SLOTS=1) for _ in range(2)]
    orders = [{"hits": 1, "errors": 1, "usage:1": 1}, {"usage:1": 1, "errors": 1, "hits": 1}]
    rounds = 300

    def batches(app, amounts):
        with app.app_context():
            writer = storage.writer_for(storage.db.engine, app.config)
            try:
                for _ in range(rounds):
                    writer(amounts, time.monotonic())
            finally:
                writer.close()

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(batches, *pair) for pair in zip(apps, orders, strict=True)]:
            done.result()
    with apps[0].app_context():
        assert [storage.read_counter(n) for n in ("hits", "errors", "usage:1")] == [600] * 3
