"""Fixtures: a migrated database per test (SQLite, or PostgreSQL when TEST_DATABASE_URL is set),
the app on it, its clients, and a real token."""

import os
import shutil
import uuid

import flask_migrate
import psycopg
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from api import create_app, storage

from . import servers, spec_check

# Settings the suite controls itself, so that a developer's shell cannot change results.
APP_ENV = (
    "DATABASE_URL",
    "ALLOW_QUERY_TOKEN",
    "TOKEN_PREFIX",
    "TOKEN_DEFAULT_EXPIRES_IN",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_ENABLED",
    "METRICS_PUBLIC_FROM",
    "DYNO",
    "PORT",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "WEB_MAX_CONNECTIONS",
    "HOST",
    "ACCESS_LOG",
    "REQUEST_BODY_TIMEOUT",
    "GRACEFUL_TIMEOUT",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_CONNECT_TIMEOUT",
    "DB_STATEMENT_TIMEOUT_MS",
    "ALLOW_EPHEMERAL_SQLITE",
    "COUNTER_SLOTS",
    "COUNTER_HOURS_RETENTION_DAYS",
    "MAX_CONTENT_LENGTH",
    "RATELIMIT_ENABLED",
    "RATELIMIT_STORAGE_URI",
    "RATELIMIT_KEY_PREFIX",
    "RATELIMIT_STRATEGY",
    "RATELIMIT_PER_CLIENT",
    "RATELIMIT_PER_TOKEN",
    "RATELIMIT_FAILED_TOKENS",
    "RATELIMIT_HEADERS_ALWAYS",
    "RATELIMIT_STORAGE_TIMEOUT",
    "PROXY_FIX_X_FOR",
    "PROXY_FIX_X_PROTO",
    "PROXY_FIX_X_HOST",
    "PROXY_FIX_X_PORT",
    "PROXY_FIX_X_PREFIX",
    "CORS_ORIGINS",
    "TRUSTED_HOSTS",
    "PUBLIC_URL",
    "SQLITE_BUSY_TIMEOUT_MS",
)

# Apps built in this process keep every hour: a process prunes old hours on a thread of its
# own at its first increment, and hundreds of short-lived test apps would each start one on
# a database their test is about to drop. The retention tests ask for it; real servers started
# by the tests run with the default (harness/servers.py drops this setting).
IN_PROCESS_ENV = {"COUNTER_HOURS_RETENTION_DAYS": "0"}


# Gone before any test module is imported, too: some build an app at collection time.
for _name in APP_ENV:
    os.environ.pop(_name, None)
os.environ.update(IN_PROCESS_ENV)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for name in APP_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in IN_PROCESS_ENV.items():
        monkeypatch.setenv(name, value)


def migrate(url):
    """Bring the database at url to the newest migration, as the release phase does."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        flask_migrate.upgrade()
        storage.db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """One migrated SQLite file, copied for each test: real migrations, run only once."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_path(tmp_path, migrated_template):
    path = tmp_path / "api.sqlite3"
    shutil.copy(migrated_template, path)
    return path


@pytest.fixture
def database_url(database_path):
    return f"sqlite:///{database_path}"


def with_database(url, name):
    """The same server URL, naming another database; the password stays in."""
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def admin_execute(server_url, *statements):
    """Run statements outside a transaction, as CREATE/DROP DATABASE require."""
    conninfo = sa.engine.make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    ) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="session")
def postgres_server():
    """The PostgreSQL at TEST_DATABASE_URL: skip without it, fail if it is set but away."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set; this test needs a real PostgreSQL")
    try:
        admin_execute(url, "SELECT 1")
    except psycopg.Error as e:
        pytest.fail(
            f"TEST_DATABASE_URL is set but PostgreSQL there is unreachable: {e}", pytrace=False
        )
    return url


def create_database(server_url, template="template0"):
    """A new, uniquely named database on the server, so that tests never share one."""
    name = f"apitest_{uuid.uuid4().hex[:16]}"
    admin_execute(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(server_url, name):
    """Drop a test database; FORCE ends the sessions of servers a test killed, not stopped."""
    admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """One migrated PostgreSQL database, cloned for each test: real migrations, run only once."""
    name = create_database(postgres_server)
    migrate(with_database(postgres_server, name))
    yield name
    drop_database(postgres_server, name)


@pytest.fixture
def pg_url(postgres_server, postgres_template):
    """A fresh PostgreSQL database of this test's own, migrated to head."""
    name = create_database(postgres_server, template=postgres_template)
    yield with_database(postgres_server, name)
    drop_database(postgres_server, name)


@pytest.fixture
def pg_empty_url(postgres_server):
    """A fresh, empty PostgreSQL database of this test's own, for migrations to start from."""
    name = create_database(postgres_server)
    yield with_database(postgres_server, name)
    drop_database(postgres_server, name)


@pytest.fixture
def read_counter():
    """Read a counter straight from the database at a URL, as another process would."""
    apps = {}

    def read(url, name="hits"):
        if url not in apps:
            apps[url] = create_app({"SQLALCHEMY_DATABASE_URI": url})
        with apps[url].app_context():
            return storage.read_counter(name)

    yield read
    for app in apps.values():
        with app.app_context():
            storage.db.engine.dispose()


class CheckedClient(FlaskClient):
    """The test client, with every answer checked against the app's own spec (spec_check)."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        app = self.application
        checker = app.extensions.get("spec_check")
        if checker is None:
            checker = app.extensions["spec_check"] = spec_check.SpecCheck(app.extensions["openapi"])
        request = response.request
        checker.check(
            request.method, request.url, response.status_code, response.headers, response.data
        )
        return response


@pytest.fixture
def make_app(database_url):
    """Build apps on this test's database; each is disposed of when the test ends."""
    apps = []

    def build(**config):
        # No access log: the test client's requests would only fill the captured output.
        settings = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "ACCESS_LOG": False}
        app = create_app({**settings, **config})
        app.test_client_class = CheckedClient
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            storage.db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def mint(app, name):
    """A real token for app's database, minted through the CLI exactly as an operator would."""
    result = app.test_cli_runner().invoke(args=["token", "create", name])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def token(app):
    return mint(app, "test-client")


@pytest.fixture
def auth_headers(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def hits(app):
    """Read a counter straight from the database, outside any request."""

    def read(name="hits"):
        with app.app_context():
            return storage.read_counter(name)

    return read


@pytest.fixture
def statements():
    """Every SQL statement any engine runs while the test does, the counter writer's aside
    (it runs on the driver's own connection)."""
    seen = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


@pytest.fixture
def start_server(tmp_path):
    """Start real servers from the Procfile; all are stopped when the test ends."""
    started = []

    def start(database_url, **env):
        port = env.pop("PORT", None) or servers.free_port()
        environment = servers.clean_env(DATABASE_URL=database_url, PORT=port, **env)
        server = servers.Server(environment, tmp_path / f"server-{port}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file migrated by the Procfile's release line, for real servers to share."""
    url = f"sqlite:///{tmp_path}/server.sqlite3"
    servers.run_release(servers.clean_env(DATABASE_URL=url))
    return url


# Playwright cannot download its own browser here; these flags let Debian's run in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, one per test module."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not on PATH: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under .ci/run (FAIL_ON_SKIP=1) a skipped test is a failure: every service is there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under FAIL_ON_SKIP=1: {report.longrepr}"


def pytest_sessionfinish(session, exitstatus):
    """A run that collected no tests fails (pytest's own status 5 passes through make as a
    generic 2): a suite that silently found nothing to run must not look like a pass."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
