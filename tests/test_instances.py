"""Several dynos, one PostgreSQL: two servers from the Procfile agree on everything."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import servers

pytestmark = pytest.mark.server

REQUESTS = 600


def flask_cli(database_url, *args):
    """Run `flask --app api ...` as an operator would on a one-off dyno; return its stdout."""
    result = subprocess.run(
        ["flask", "--app", "api", *args],
        cwd=servers.ROOT,
        env=servers.clean_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture
def two_servers(pg_url, start_server):
    """Two servers of two workers each on one database, one given Heroku's postgres:// form."""
    heroku_form = "postgres://" + pg_url.partition("://")[2]
    return start_server(heroku_form, WEB_CONCURRENCY=2), start_server(pg_url, WEB_CONCURRENCY=2)


def test_hits_split_across_servers_are_counted_exactly(pg_url, two_servers, read_counter):
    before = read_counter(pg_url)
    urls = [two_servers[n % 2].url + "/api/pizza" for n in range(REQUESTS)]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(servers.fetch, urls))

    assert [a.status for a in answers] == [200] * REQUESTS
    assert read_counter(pg_url) == before + REQUESTS


def test_token_works_and_is_revoked_on_both_servers_at_once(pg_url, two_servers):
    token = flask_cli(pg_url, "token", "create", "shared").strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}

    for server in two_servers:
        answer = servers.fetch(server.url + "/api?data=errors", headers)
        assert answer.status == 200, answer
        assert json.loads(answer.body)["type"] == "ErrorCount"

    flask_cli(pg_url, "token", "revoke", "shared")

    for server in two_servers:
        answer = servers.fetch(server.url + "/api?data=errors", headers)
        assert answer.status == 401
        assert json.loads(answer.body) == {"type": "Error", "content": "Not authenticated"}
