"""Fixtures: a migrated SQLite file per test, the app on it, its clients, and a real token."""

import os
import shutil

import flask_migrate
import pytest

from api import create_app, storage

from . import servers

# Settings the suite controls itself, so that a developer's shell cannot change results.
APP_ENV = (
    "DATABASE_URL",
    "ALLOW_QUERY_TOKEN",
    "TOKEN_PREFIX",
    "LOG_LEVEL",
    "DYNO",
    "PORT",
    "WEB_CONCURRENCY",
    "MAX_CONTENT_LENGTH",
    "RATELIMIT_ENABLED",
    "RATELIMIT_STORAGE_URI",
    "RATELIMIT_KEY_PREFIX",
    "RATELIMIT_STRATEGY",
    "RATELIMIT_PER_CLIENT",
    "RATELIMIT_PER_TOKEN",
    "RATELIMIT_FAILED_TOKENS",
    "RATELIMIT_HEADERS_ALWAYS",
    "PROXY_FIX_X_FOR",
    "PROXY_FIX_X_PROTO",
    "PROXY_FIX_X_HOST",
    "PROXY_FIX_X_PORT",
    "PROXY_FIX_X_PREFIX",
    "CORS_ORIGINS",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for name in APP_ENV:
        monkeypatch.delenv(name, raising=False)


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


@pytest.fixture
def make_app(database_url):
    """Build apps on this test's database; each is disposed of when the test ends."""
    apps = []

    def build(**config):
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, **config})
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


@pytest.fixture
def token(runner):
    """A real token, minted through the CLI exactly as an operator would."""
    result = runner.invoke(args=["token", "create", "test-client"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


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
def start_server(tmp_path):
    """Start real gunicorn servers from the Procfile; all are stopped when the test ends."""
    started = []

    def start(database_url, **env):
        port = env.pop("PORT", None) or servers.free_port()
        environment = servers.clean_env(DATABASE_URL=database_url, PORT=port, **env)
        server = servers.Server(environment, tmp_path / f"gunicorn-{port}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under .ci/run (FAIL_ON_SKIP=1) a skipped test is a failure: every service is there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under FAIL_ON_SKIP=1: {report.longrepr}"
