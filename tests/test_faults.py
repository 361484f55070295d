"""Faults on real servers: killed workers, a killed server, and a database that goes away or
stops answering."""

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import sqlalchemy as sa

from api import create_app, storage

from . import servers
from .servers import wait_until

pytestmark = pytest.mark.server

CLIENTS = 8
UNAVAILABLE = {"type": "Error", "content": "Service unavailable"}
PROXIED = "api-behind-proxy"
KILLED = "api-killed"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request):
    """A migrated database of each kind the service runs on."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def test_sigkilled_worker_loses_no_acknowledged_hit(any_url, start_server, read_counter):
    server = start_server(any_url, WEB_CONCURRENCY=2)
    before = read_counter(any_url)

    with servers.Load([server.url + "/api/pizza"], CLIENTS) as load:
        load.wait_for(100)
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        killed_at = len(load.answers)
        # The other worker and the replacement the master forks go on serving.
        load.wait_for(200)

    statuses = [a.status for a in load.answers]
    acknowledged = statuses.count(200)
    unanswered = statuses.count(None)
    assert set(statuses) <= {200, None}, "no request may get an error for a worker's death"
    # Only requests sent to the killed worker may go unanswered: each client's request in
    # flight, and at most one more connection per client that the kernel had already queued
    # on the dying worker's listening socket (each worker listens on the port itself).
    assert unanswered <= 2 * CLIENTS
    assert statuses[killed_at:].count(200) >= 200
    # Every 200 was counted; an unanswered request may have been counted before the kill.
    assert acknowledged <= read_counter(any_url) - before <= acknowledged + unanswered
    wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids())
    assert servers.fetch(server.url + "/api/pizza").status == 200


def test_sigkilled_server_keeps_every_acknowledged_hit(any_url, start_server, read_counter):
    server = start_server(named(any_url, KILLED), WEB_CONCURRENCY=2)
    before = read_counter(any_url)

    with servers.Load([server.url + "/api/pizza"], CLIENTS) as load:
        load.wait_for(200)
        # The wait below would hold nothing if the server's sessions went unnamed.
        assert any_url.startswith("sqlite") or sessions(any_url, KILLED) > 0
        server.kill()
    if any_url.startswith("postgresql"):
        # A statement the server sent before it died still runs: PostgreSQL ends those
        # sessions only once it has answered what they had already received.
        wait_until(lambda: sessions(any_url, KILLED) == 0)

    statuses = [a.status for a in load.answers]
    acknowledged = statuses.count(200)
    assert set(statuses) <= {200, None}
    counted = read_counter(any_url) - before
    # At most one request per client was in flight when everything died.
    assert acknowledged <= counted <= acknowledged + CLIENTS

    restarted = start_server(any_url, WEB_CONCURRENCY=2)
    answer = servers.fetch(restarted.url + "/api?data=hits")
    assert answer.status == 200
    assert json.loads(answer.body)["content"] == before + counted + 1


class TcpProxy:
    """A relay to the database that a test can cut and restore, as a failing network would,
    or stall and resume, as a database that stops answering would.

    While cut, every relayed connection is shut down and new ones are accepted and closed at
    once, which is what a client sees when the database server is down. While stalled, every
    connection, new ones too, stays open and nothing is passed on: each direction holds what it
    had read and reads no more, so the kernel goes on acknowledging what both ends send, as a
    stopped host's kernel or a pooler that queues does.
    """

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.connected = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept)
        self._acceptor.start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            # Under the lock, so that a cut either sees this pair or stops it being relayed.
            with self._lock:
                relay = self.connected
                if relay:
                    self._sockets.update((client, server))
            if not relay:
                self._drop(client, server)
                continue
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets):
        for sock in sockets:
            with self._lock:
                self._sockets.discard(sock)
            try:
                # shutdown wakes a recv blocked in the other pump thread; close alone would not.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self):
        """Break every open connection and refuse new ones."""
        with self._lock:
            self.connected = False
            sockets = list(self._sockets)
        self._drop(*sockets)

    def restore(self):
        """Relay new connections again."""
        self.connected = True

    def stall(self):
        """Pass nothing on, in either direction, and keep every connection open."""
        self._flowing.clear()

    def resume(self):
        """Pass on what was held, and everything after it."""
        self._flowing.set()

    def close(self):
        self.resume()
        self.cut()
        self._closed.set()
        self._acceptor.join()
        self.listener.close()


@pytest.fixture
def proxy(pg_url):
    url = sa.engine.make_url(pg_url)
    relay = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield relay
    relay.close()


@pytest.fixture
def proxied_url(pg_url, proxy):
    """This test's PostgreSQL database, reached through the proxy."""
    url = sa.engine.make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    return named(url.render_as_string(hide_password=False), PROXIED)


def named(url, name):
    """The URL with PostgreSQL sessions that carry ``name``, so a test can tell them apart."""
    if not url.startswith("postgresql"):
        return url
    url = sa.engine.make_url(url).update_query_dict({"application_name": name})
    return url.render_as_string(hide_password=False)


def sessions(pg_url, name):
    """How many sessions named ``name`` on this test's database are still alive."""
    conninfo = sa.engine.make_url(pg_url).set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (name,),
        ).fetchone()[0]


def test_an_outage_between_requests_costs_no_request(proxied_url, proxy, start_server):
    server = start_server(proxied_url, WEB_CONCURRENCY=1)
    # Concurrent requests leave several connections in the worker's pool.
    with servers.Load([server.url + "/api/pizza"], CLIENTS) as load:
        load.wait_for(50)
    assert set(a.status for a in load.answers) == {200}

    proxy.cut()
    proxy.restore()

    # Each pooled connection is now dead; each is tested and replaced before a request uses it.
    assert [servers.fetch(server.url + "/api/pizza").status for _ in range(20)] == [200] * 20


def test_service_answers_503_while_the_database_is_away_and_recovers_by_itself(
    pg_url, proxied_url, proxy, start_server, read_counter
):
    server = start_server(proxied_url, WEB_CONCURRENCY=2)
    wait_until(lambda: len(server.worker_pids()) == 2)
    workers = server.worker_pids()
    before = read_counter(pg_url)
    paths = ["/api/pizza", "/api?data=hits", "/api?data=1", "/"]

    with servers.Load([server.url + p for p in paths], CLIENTS) as load:
        load.wait_for(100)
        assert sessions(pg_url, PROXIED) > 0
        proxy.cut()
        wait_until(lambda: servers.fetch(server.url + "/healthz").status == 503)
        health = servers.fetch(server.url + "/healthz")
        assert (health.retry_after, json.loads(health.body)) == ("5", {"status": "unavailable"})
        # A COMMIT relayed just before the cut may still be running; once every session that
        # came through the proxy has ended, nothing more can be counted.
        wait_until(lambda: sessions(pg_url, PROXIED) == 0)
        frozen = read_counter(pg_url)
        load.wait_for(100, status=503)
        # Nothing reaches the database while it is away, so nothing more is counted.
        assert read_counter(pg_url) == frozen
        assert servers.fetch(server.url + "/api/pizza").status == 503

        proxy.restore()
        wait_until(lambda: servers.fetch(server.url + "/healthz").status == 200)
        load.wait_for(100)

    health = servers.fetch(server.url + "/healthz")
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
    statuses = [a.status for a in load.answers]
    assert set(statuses) == {200, 503}, "only answers and the 503 envelope, never a 500"
    for answer in load.answers:
        if answer.status == 503:
            assert answer.retry_after == "5"
            if answer.body.startswith(b"{"):
                assert json.loads(answer.body) == UNAVAILABLE
            else:
                assert b"Service unavailable" in answer.body  # the HTML page for "/"
        assert b"Traceback" not in answer.body
    api_503 = [a for a in load.answers if a.status == 503 and a.body.startswith(b"{")]
    assert api_503, "the API must have answered with the envelope while the database was away"

    # Recovered without a restart: the same master and the same workers.
    assert server.process.poll() is None
    assert server.worker_pids() == workers
    # Counts continue from where they were: every 200 counted, and at most one per client
    # that the cut broke after its increment had committed.
    counted = read_counter(pg_url) - before
    acknowledged = statuses.count(200)
    assert acknowledged <= counted <= acknowledged + CLIENTS
    answer = servers.fetch(server.url + "/api?data=hits")
    assert json.loads(answer.body)["content"] == before + counted + 1


def test_health_check_fails_while_another_process_holds_the_sqlite_write_lock(
    sqlite_url, start_server
):
    """SQLite still answers a SELECT then, but no hit can be committed: the platform must
    hear that this server cannot count."""
    server = start_server(sqlite_url, SQLITE_BUSY_TIMEOUT_MS=300)
    assert servers.fetch(server.url + "/healthz").status == 200
    holder = sqlite3.connect(sa.engine.make_url(sqlite_url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        health = servers.fetch(server.url + "/healthz")
        assert (health.status, health.retry_after) == (503, "5")
        assert servers.fetch(server.url + "/api?data=1").status == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert servers.fetch(server.url + "/healthz").status == 200


# The stall test's statement timeout and connect timeout, short so that the test is; the
# bound it holds every request to is the watchdog's (DB_STATEMENT_TIMEOUT_MS plus a second,
# looked at every quarter of a second) with room for a loaded machine.
STALL_STATEMENT_TIMEOUT_MS = 2000
STALL_BOUND = STALL_STATEMENT_TIMEOUT_MS / 1000 + 3


def timed(url, **options):
    """An answer and how many seconds it took."""
    started = time.monotonic()
    answer = servers.fetch(url, timeout=STALL_BOUND + 10, **options)
    return answer, time.monotonic() - started


def test_a_database_that_stops_answering_costs_each_request_a_bounded_wait(
    pg_url, proxied_url, proxy, start_server, read_counter
):
    """A database that stays connected but answers nothing (a stopped host whose kernel still
    acknowledges, a pooler that queues): no server-side timeout fires and TCP sees nothing
    wrong, yet every request answers 503 within the bound, counting nothing; once it answers
    again the service recovers by itself and counts exactly. Work off the request path, here
    the daily pruning, waits the stall out instead."""
    server = start_server(
        proxied_url,
        WEB_CONCURRENCY=1,
        WEB_THREADS=16,
        DB_STATEMENT_TIMEOUT_MS=STALL_STATEMENT_TIMEOUT_MS,
        DB_CONNECT_TIMEOUT=2,
    )
    token = servers.mint_token(servers.clean_env(DATABASE_URL=pg_url), "stall")
    bearer = {"Authorization": f"Bearer {token}"}
    hits, data, checked = (
        server.url + "/api?data=hits",
        server.url + "/api?data=1",
        server.url + "/api?data=errors",
    )
    # Connections in the pool and the counter writer's, all through the proxy; a HEAD is not
    # counted, so its only database work is the token check.
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: servers.fetch(hits).status, range(16))) == {200}
    assert servers.fetch(checked, bearer, method="HEAD").status == 200
    before = read_counter(pg_url)
    pruner = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": proxied_url,
            "DB_STATEMENT_TIMEOUT_MS": STALL_STATEMENT_TIMEOUT_MS,
        }
    )
    with pruner.app_context():
        engine = storage.db.engine
    assert storage.prune_counter_hours(engine, 40) is not None

    proxy.stall()
    requests = [(hits, {})] * 10 + [(data, {}), (checked, {"headers": bearer, "method": "HEAD"})]
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        pruning = pool.submit(storage.prune_counter_hours, engine, 40)
        try:
            answers = list(pool.map(lambda request: timed(request[0], **request[1]), requests))
            health, waited = timed(server.url + "/healthz")
            pruned_in_the_stall = pruning.done()
        finally:
            # Else the pruning thread would hold this block, and the test, until the end.
            proxy.resume()
        assert (pruned_in_the_stall, pruning.result(timeout=10)) == (False, 0)
    engine.dispose()
    assert [answer.status for answer, _ in answers] == [503] * len(requests)
    assert max(seconds for _, seconds in answers) < STALL_BOUND
    assert (health.status, health.retry_after) == (503, "5")
    assert waited < STALL_BOUND
    for answer, _ in answers[:-1]:
        assert (answer.retry_after, json.loads(answer.body)) == ("5", UNAVAILABLE)
    assert read_counter(pg_url) == before

    # The batches the watchdog cut reached the server on resuming, late: they wrote nothing.
    wait_until(lambda: servers.fetch(server.url + "/healthz").status == 200)
    assert servers.fetch(checked, bearer, method="HEAD").status == 200
    numbers = [json.loads(servers.fetch(hits).body)["content"] for _ in range(5)]
    assert numbers == list(range(before + 1, before + 6))
    assert read_counter(pg_url) == before + 5
