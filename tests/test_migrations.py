"""The migrations build exactly the models' schema, on SQLite and PostgreSQL, however often run."""

import subprocess
import time
from datetime import datetime

import flask_migrate
import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from api import create_app, storage, token_hashing

from . import servers
from .conftest import migrate


@pytest.fixture
def sqlite_empty_url(tmp_path):
    return f"sqlite:///{tmp_path}/empty.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request):
    """An empty database of each kind the service runs on."""
    return request.getfixturevalue(
        "sqlite_empty_url" if request.param == "sqlite" else "pg_empty_url"
    )


def schema_state(url, metadata=None):
    """What autogenerate would change to reach the models, and the revisions the database is at."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        try:
            with storage.db.engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"compare_type": True, "compare_server_default": True}
                )
                diff = compare_metadata(context, metadata or storage.db.metadata)
                return diff, set(context.get_current_heads()), set(script.get_heads())
        finally:
            storage.db.engine.dispose()


def test_upgrade_from_empty_matches_the_models(empty_url):
    migrate(empty_url)
    diff, current, heads = schema_state(empty_url)
    assert diff == []
    assert current == heads


def test_upgrade_twice_changes_nothing(empty_url):
    migrate(empty_url)
    migrate(empty_url)
    diff, current, heads = schema_state(empty_url)
    assert diff == []
    assert current == heads


def test_the_schema_check_sees_a_model_the_migrations_lack(sqlite_empty_url):
    migrate(sqlite_empty_url)
    metadata = sa.MetaData()
    for table in storage.db.metadata.tables.values():
        table.to_metadata(metadata)
    sa.Table("unmigrated", metadata, sa.Column("id", sa.Integer, primary_key=True))

    diff, _, _ = schema_state(sqlite_empty_url, metadata)

    assert [change[0] for change in diff] == ["add_table"]


def waiting_for_migration_lock(conn):
    """How many sessions on this database are queued behind the migration lock."""
    return conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()[0]


def test_two_releases_at_once_leave_one_correct_schema(pg_empty_url):
    conninfo = sa.engine.make_url(pg_empty_url).render_as_string(hide_password=False)
    # Requests may run a statement for 0.1 s; a release waits as long as it must.
    env = servers.clean_env(DATABASE_URL=pg_empty_url, DB_STATEMENT_TIMEOUT_MS="100")
    with psycopg.connect(conninfo, autocommit=True) as holder:
        # Hold the lock ourselves until both releases queue behind it, so that they truly race.
        holder.execute("SELECT pg_advisory_lock(%s)", (storage.MIGRATION_LOCK_KEY,))
        releases = [
            subprocess.Popen(
                servers.procfile_command("release"),
                cwd=servers.ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while waiting_for_migration_lock(holder) < 2:
            assert all(r.poll() is None for r in releases), "a release ran without the lock"
            assert time.monotonic() < deadline, "the releases never queued for the lock"
            time.sleep(0.05)
        time.sleep(0.5)  # well past the statement timeout
        holder.execute("SELECT pg_advisory_unlock(%s)", (storage.MIGRATION_LOCK_KEY,))
        outputs = [r.communicate(timeout=60)[0] for r in releases]

    assert [r.returncode for r in releases] == [0, 0], outputs
    # One release built the schema; the other found it at head and did nothing.
    assert sorted("Running upgrade  -> 0001" in out for out in outputs) == [False, True], outputs
    diff, current, heads = schema_state(pg_empty_url)
    assert diff == []
    assert current == heads


def test_release_upgrades_a_database_already_at_head(pg_url):
    servers.run_release(servers.clean_env(DATABASE_URL=pg_url))
    diff, current, heads = schema_state(pg_url)
    assert (diff, current) == ([], heads)


def test_the_release_upgrades_tokens_and_counts_made_before_token_lifetimes(empty_url):
    """A database at 0002 holding a token, hits and hours: the release brings it to head, and
    the token works as before, every scope and no expiry; the counts are all still there."""
    env = servers.clean_env(DATABASE_URL=empty_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_url})
    with app.app_context():
        flask_migrate.upgrade(revision="0002")
        with storage.db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tokens (name, token_hash, created_at) "
                    "VALUES ('old-client', :hash, :now)"
                ),
                {
                    "hash": token_hashing.hash_token("rapi_old" + "a" * 40),
                    "now": datetime(2026, 1, 1),
                },
            )
            conn.execute(sa.text("INSERT INTO counters (name, slot, value) VALUES ('hits', 0, 41)"))
            conn.execute(
                sa.text(
                    "INSERT INTO counter_hours (name, hour, slot, value) "
                    "VALUES ('hits', :hour, 0, 41)"
                ),
                {"hour": datetime(2026, 1, 1, 12)},
            )
        storage.db.engine.dispose()
    servers.run_release(env)
    diff, current, heads = schema_state(empty_url)
    assert (diff, current) == ([], heads)
    upgraded = create_app({"SQLALCHEMY_DATABASE_URI": empty_url, "TESTING": True})
    client = upgraded.test_client()
    answer = client.get("/api?data=hits", headers={"Authorization": "Bearer rapi_old" + "a" * 40})
    assert answer.get_json()["content"] == 42
    for private in ("/api?data=errors", "/api/stats"):
        answer = client.get(private, headers={"Authorization": "Bearer rapi_old" + "a" * 40})
        assert answer.status_code == 200
    with upgraded.app_context():
        ((row, _day, _month),) = storage.list_tokens()
        assert (row.expires_at, row.scopes, row.rate_limit) == (None, None, None)
        assert (
            sum(count for _, count in storage.counts_per_day("hits", 400, datetime(2026, 1, 2)))
            == 41
        )
        storage.db.engine.dispose()
