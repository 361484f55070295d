"""The Procfile's web process, a real server: exact counts under load, and after a crash."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import servers

pytestmark = pytest.mark.server

REQUESTS = 2000
CLIENTS = 32


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def hammer(base_url, n=REQUESTS, path="/api?data=hits"):
    """Send n requests from CLIENTS threads at once; return (status, body) of each."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda _: get_json(base_url + path), range(n)))


def current_hits(server):
    """The hit count as the server reports it; the read itself is one hit."""
    return get_json(server.url + "/api?data=hits")[1]["content"]


def test_concurrent_hits_are_exact_unique_and_survive_sigkill(start_server, sqlite_url):
    server = start_server(sqlite_url, WEB_CONCURRENCY=4)
    before = current_hits(server)

    answers = hammer(server.url)

    assert [status for status, _ in answers] == [200] * REQUESTS
    # On SQLite every request gets a number of its own, and together they leave no gap.
    numbers = sorted(body["content"] for _, body in answers)
    assert numbers == list(range(before + 1, before + REQUESTS + 1))
    after = current_hits(server)
    # Both reads are hits themselves: the first counted itself, the second too.
    assert after == before + REQUESTS + 1

    server.kill()
    restarted = start_server(sqlite_url, WEB_CONCURRENCY=4)
    assert current_hits(restarted) == after + 1


def test_procfile_runs_release_then_the_web_process():
    assert servers.procfile_command("web") == ["python", "-m", "api.web"]
    assert servers.procfile_command("release") == ["flask", "--app", "api", "db", "upgrade"]


def test_release_is_idempotent(sqlite_url):
    servers.run_release(servers.clean_env(DATABASE_URL=sqlite_url))
