"""Metrics, scraped from a real multi-worker server and read with Prometheus' own parser."""

import json
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import servers

pytestmark = pytest.mark.server

REQUESTS = 60


def fetch(url, token=None):
    """(status, body) of a GET on a connection of its own, so that any worker may answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def samples(text):
    """Every sample of a scrape: {(name, frozenset of labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0)


@pytest.fixture
def scraped(sqlite_url, start_server):
    """A server of two workers, some traffic, and a token that may read the metrics."""
    env = servers.clean_env(DATABASE_URL=sqlite_url)
    scraper = servers.mint_token(env, "scraper")
    server = start_server(
        sqlite_url,
        WEB_CONCURRENCY=2,
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT="1000 per minute",
        RATELIMIT_FAILED_TOKENS="2 per minute",
    )
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: fetch(server.url + "/api/pizza")[0], range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    return server, scraper


def test_the_request_counter_is_the_same_whichever_worker_answers(scraped):
    server, scraper = scraped
    seen = set()
    for _ in range(8):
        status, text = fetch(server.url + "/metrics", scraper)
        assert status == 200
        found = samples(text)
        seen.add(
            value(found, "api_requests_total", route="/api/<kind>", method="GET", status="200")
        )
        # The scrape in progress is the one request in flight, on whichever worker.
        assert value(found, "api_requests_in_flight") == 1
        assert value(found, "api_request_duration_seconds_count", route="/api/<kind>") == REQUESTS
        # Every hit was committed in some batch, of at least one increment each.
        assert value(found, "api_counter_batch_size_sum") >= REQUESTS
        assert value(found, "api_counter_commit_seconds_count") >= 1
    assert seen == {REQUESTS}


def test_refusals_and_token_checks_are_counted(scraped):
    server, scraper = scraped
    for _ in range(3):
        fetch(server.url + "/api?data=errors", "rapi_wrong_wrong_wrong")
    status, text = fetch(server.url + "/metrics", scraper)
    found = samples(text)
    # Each wrong token is checked and refused: 401, or 429 once a worker's budget of two is
    # spent (each worker counts alone with memory://).
    assert value(found, "api_token_checks_total", outcome="unknown") == 3
    refused = value(found, "api_requests_total", route="/api", method="GET", status="401")
    limited = value(found, "api_requests_total", route="/api", method="GET", status="429")
    assert refused + limited == 3
    assert value(found, "api_rate_limited_total", budget="failed-tokens") == limited
    # The scraper's own token, checked on each scrape.
    assert value(found, "api_token_checks_total", outcome="valid") >= 1


def test_the_metrics_are_never_public_by_default(sqlite_url, start_server):
    env = servers.clean_env(DATABASE_URL=sqlite_url)
    created = subprocess.run(
        ["flask", "--app", "api", "token", "create", "no-metrics", "--scope", "errors,stats"],
        cwd=servers.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    without_scope = created.stdout.strip().splitlines()[-1]
    server = start_server(sqlite_url)
    assert fetch(server.url + "/metrics")[0] == 401
    assert fetch(server.url + "/metrics", "rapi_not_a_token_at_all")[0] == 401
    status, body = fetch(server.url + "/metrics", without_scope)
    assert (status, json.loads(body)["content"]) == (403, "This token lacks the scope metrics")


def test_a_private_network_may_scrape_without_a_token(sqlite_url, start_server):
    server = start_server(sqlite_url, METRICS_PUBLIC_FROM="127.0.0.0/8")
    status, text = fetch(server.url + "/metrics")
    assert status == 200 and "api_requests_total" in text


def test_metrics_turned_off_answer_404(sqlite_url, start_server):
    env = servers.clean_env(DATABASE_URL=sqlite_url)
    scraper = servers.mint_token(env, "scraper")
    server = start_server(sqlite_url, METRICS_ENABLED="false")
    assert fetch(server.url + "/metrics", scraper)[0] == 404
