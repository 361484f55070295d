"""Settings for a Procfile platform: database URLs, pool sizing, no SQLite on ephemeral disks."""

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from api import config, create_app, storage
from api.storage import engine

from . import servers
from .conftest import admin_execute, mint

# A PostgreSQL URL that is never connected to: building an app opens no connection.
UNUSED_POSTGRES = "postgresql://user:secret@db.example:5432/app"


def engine_of(app):
    with app.app_context():
        return storage.db.engine


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://user:secret@db.example:5432/app",  # Heroku's form
        "postgresql://user:secret@db.example:5432/app",
    ],
)
def test_database_url_forms_use_psycopg_3(monkeypatch, raw):
    monkeypatch.setenv("DATABASE_URL", raw)
    url = engine_of(create_app()).url
    assert url.drivername == "postgresql+psycopg"
    assert url.render_as_string(hide_password=False).endswith("://user:secret@db.example:5432/app")


@pytest.mark.parametrize(
    ("env", "pool_size"),
    [
        ({}, 5),  # the default WEB_THREADS, and the counter writer
        ({"WEB_THREADS": "8"}, 9),
        ({"WEB_THREADS": "8", "DB_POOL_SIZE": "3"}, 4),
    ],
)
def test_pool_has_one_connection_per_request_thread(monkeypatch, env, pool_size):
    monkeypatch.setenv("DATABASE_URL", UNUSED_POSTGRES)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    engine = engine_of(create_app())
    assert engine.pool.size() == pool_size


def test_explicit_engine_options_win(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", UNUSED_POSTGRES)
    app = create_app({"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 11}})
    assert engine_of(app).pool.size() == 11


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///{tmp_path}/file.sqlite3"])
def test_sqlite_keeps_its_own_pool(tmp_path, url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url.format(tmp_path=tmp_path)})
    with app.app_context():
        with storage.db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        storage.db.engine.dispose()


def test_pool_never_opens_more_than_pool_size_plus_overflow(monkeypatch, pg_url):
    monkeypatch.setenv("DB_POOL_SIZE", "2")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "1")
    # Explicit options add to the sized ones; a short timeout fails fast instead of in 30 s.
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": pg_url, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_timeout": 0.2}}
    )
    with app.app_context():
        engine = storage.db.engine
        # The pool: two for requests and one for the counter writer; then one overflow.
        held = [engine.connect() for _ in range(2 + 1 + 1)]
        with pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        for conn in held:
            conn.close()
        storage.db.engine.dispose()


@pytest.fixture
def pg_client(pg_url, make_app):
    return make_app(SQLALCHEMY_DATABASE_URI=pg_url).test_client()


@pytest.mark.parametrize("kind", ["hits", "errors"])
def test_counts_on_postgresql_are_json_integers(pg_client, kind):
    pg_client.get("/api/nothing")  # one hit that is also an error
    headers = {"Authorization": f"Bearer {mint(pg_client.application, 'pg')}"}

    first = pg_client.get(f"/api?data={kind}", headers=headers)
    second = pg_client.get(f"/api?data={kind}", headers=headers)

    assert first.status_code == second.status_code == 200
    counts = first.get_json()["content"], second.get_json()["content"]
    assert all(type(count) is int for count in counts)
    assert counts[1] == counts[0] + (1 if kind == "hits" else 0)


def test_exhausted_pool_answers_503_not_500(make_app):
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1}
    )
    with app.app_context(), storage.db.engine.connect():
        # The only connection is taken, so the request's counting cannot get one.
        response = app.test_client().get("/api/pizza")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"type": "Error", "content": "Service unavailable"}


# --- Ephemeral disks ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", [None, "sqlite:///{tmp_path}/api.sqlite3"])
def test_sqlite_on_a_dyno_refuses_to_start(monkeypatch, tmp_path, database_url):
    monkeypatch.setenv("DYNO", "web.1")
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url.format(tmp_path=tmp_path))
    with pytest.raises(config.EphemeralDatabase) as refused:
        create_app()
    message = str(refused.value)
    assert "\n" not in message
    assert "DYNO" in message
    assert "DATABASE_URL" in message
    assert "ALLOW_EPHEMERAL_SQLITE=true" in message


def test_an_explicit_setting_allows_sqlite_on_a_dyno(monkeypatch, database_url):
    monkeypatch.setenv("DYNO", "web.1")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ALLOW_EPHEMERAL_SQLITE", "true")
    app = create_app()
    assert app.test_client().get("/api?data=1").status_code == 200
    with app.app_context():
        storage.db.engine.dispose()


def test_postgresql_on_a_dyno_starts(monkeypatch):
    monkeypatch.setenv("DYNO", "web.1")
    monkeypatch.setenv("DATABASE_URL", UNUSED_POSTGRES)
    assert engine_of(create_app()).dialect.name == "postgresql"


@pytest.mark.parametrize("process", ["web", "release"])
def test_procfile_processes_refuse_sqlite_on_a_dyno(database_url, process):
    env = servers.clean_env(DYNO="web.1", DATABASE_URL=database_url, PORT=servers.free_port())
    result = subprocess.run(
        servers.procfile_command(process),
        cwd=servers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # The refusal is the process's one line of output, with no traceback around it.
    assert output.strip().splitlines() == [engine.EPHEMERAL_SQLITE_MESSAGE]


# --- The suite's own PostgreSQL fixtures -------------------------------------------------------

# Any PostgreSQL test will do; this one is quick.
A_POSTGRES_TEST = "tests/test_migrations.py::test_release_upgrades_a_database_already_at_head"


def run_pytest(**env):
    environment = servers.clean_env(**env)
    for name in ("TEST_DATABASE_URL", "FAIL_ON_SKIP"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", A_POSTGRES_TEST],
        cwd=servers.ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgres_tests_skip_with_a_reason_without_test_database_url():
    result = run_pytest()
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "TEST_DATABASE_URL is not set" in result.stdout


def test_postgres_tests_fail_when_test_database_url_is_unreachable():
    closed = f"postgresql://postgres@127.0.0.1:{servers.free_port()}/test"
    result = run_pytest(TEST_DATABASE_URL=closed)
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "TEST_DATABASE_URL is set but PostgreSQL there is unreachable" in result.stdout


# --- A PostgreSQL that answers but cannot serve ---------------------------------------------


def end_sessions(server_url, pg_url):
    """End every session on the test's database, as a failover or a restart would."""
    name = sa.make_url(pg_url).database
    admin_execute(
        server_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own name
        f"WHERE datname = '{name}'",
    )


def test_a_read_only_database_answers_503_and_the_service_recovers(
    make_app, postgres_server, pg_url
):
    """After a failover the old primary may answer as a read-only standby: the service
    cannot count there, so it says 503, and comes back once the database takes writes."""
    client = make_app(SQLALCHEMY_DATABASE_URI=pg_url).test_client()
    assert client.get("/api/pizza").status_code == 200
    name = sa.make_url(pg_url).database
    admin_execute(
        postgres_server, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
    )
    end_sessions(postgres_server, pg_url)

    for path in ("/api/pizza", "/"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
    # The health check sees it too, however often it is asked.
    assert [client.get("/healthz").status_code for _ in range(3)] == [503] * 3

    admin_execute(postgres_server, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    # No session opened while it was read-only is used again: the next requests succeed.
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/pizza").status_code == 200


def test_a_stuck_database_answers_503_within_the_statement_timeout(make_app, pg_url):
    client = make_app(SQLALCHEMY_DATABASE_URI=pg_url, DB_STATEMENT_TIMEOUT_MS=300).test_client()
    assert client.get("/api/pizza").status_code == 200
    blocker = sa.create_engine(pg_url)
    locked = threading.Event()

    def hold_every_counter_row(seconds=5):
        """Another session holds the counters for a while; each hit waits on its lock."""
        with blocker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            conn.execute(sa.text(f"SELECT pg_sleep({seconds})"))
            conn.rollback()

    holder = threading.Thread(target=hold_every_counter_row)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        response = client.get("/api/pizza")
        waited = time.monotonic() - started
    finally:
        holder.join()
        blocker.dispose()
    assert response.status_code == 503
    assert waited < 3
    assert client.get("/api/pizza").status_code == 200


def test_a_pool_of_one_still_serves_reads_beside_the_counter_writer(make_app, pg_url):
    """The counter writer keeps a connection of its own, so DB_POOL_SIZE=1 leaves one for
    the requests' reads, such as the token check."""
    app = make_app(SQLALCHEMY_DATABASE_URI=pg_url, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    headers = {"Authorization": f"Bearer {mint(app, 'pool')}"}
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/errors", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COUNTER_SLOTS", "0", "COUNTER_SLOTS is 0; it must be from 1 to 32767."),
        ("COUNTER_SLOTS", "-1", "COUNTER_SLOTS is -1; it must be from 1 to 32767."),
        ("COUNTER_SLOTS", "32768", "COUNTER_SLOTS is 32768; it must be from 1 to 32767."),
        (
            "DB_STATEMENT_TIMEOUT_MS",
            "-5",
            "DB_STATEMENT_TIMEOUT_MS is -5; it must be 0 (no limit) or more.",
        ),
    ],
)
def test_settings_out_of_range_refuse_to_start(monkeypatch, capsys, name, value, message):
    monkeypatch.setenv("DATABASE_URL", UNUSED_POSTGRES)
    monkeypatch.setenv(name, value)
    with pytest.raises(config.InvalidSetting) as refused:
        create_app()
    assert str(refused.value) == f"Refusing to start: {message}"
    # 3: the status a process manager reads as "failed to boot", not worth a restart.
    assert refused.value.code == 3
    assert capsys.readouterr().err == f"Refusing to start: {message}\n"


@pytest.mark.parametrize("name", ["WEB_THREADS", "PORT", "REQUEST_BODY_TIMEOUT", "COUNTER_SLOTS"])
def test_a_setting_that_is_not_a_number_refuses_to_start_with_one_line(monkeypatch, capsys, name):
    monkeypatch.setenv(name, "lots")
    with pytest.raises(config.InvalidSetting) as refused:
        create_app()
    assert refused.value.code == 3
    assert capsys.readouterr().err == (
        f"Refusing to start: {name} is 'lots'; it must be a "
        f"{'number' if name == 'REQUEST_BODY_TIMEOUT' else 'whole number'}.\n"
    )
