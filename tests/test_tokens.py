"""Tokens an owner can run: expiry, scopes, their own rate limits, usage, rolling, and a check
that costs no round trip; on SQLite, and on PostgreSQL with TEST_DATABASE_URL."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from api import auth, storage

from .conftest import mint


@pytest.fixture(params=["sqlite", "postgresql"])
def tokens_app(request, make_app):
    """An app on SQLite, or on a PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        return make_app()
    return make_app(SQLALCHEMY_DATABASE_URI=request.getfixturevalue("pg_url"))


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, monkeypatch):
        self.now = storage.clock.utcnow()
        monkeypatch.setattr(storage.clock, "utcnow", lambda: self.now)

    def forward(self, **delta):
        self.now += timedelta(**delta)


def create(app, name, *options):
    """``token create`` as an operator runs it: the secret, or the result of a refusal."""
    result = app.test_cli_runner().invoke(args=["token", "create", name, *options])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["token", *args])


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def listed(app):
    """``token list``'s rows by name, each a line whose columns ``column`` reads."""
    lines = cli(app, "list").stdout.splitlines()
    return {line.split()[0]: line for line in lines[1:] if line and not line.startswith(" ")}


def column(app, name, heading):
    """One cell of ``token list``: the row's text under the heading, to the next heading."""
    lines = cli(app, "list").stdout.splitlines()
    headings = lines[0]
    start = headings.index(heading)
    after = [headings.index(h) for h in headings.split() if headings.index(h) > start]
    end = min(after, default=None)
    row = next(line for line in lines[1:] if line.split()[0] == name)
    return row[start:end].strip()


# Expiry.


def test_an_expired_token_is_told_so(tokens_app, monkeypatch):
    clock = Clock(monkeypatch)
    secret = create(tokens_app, "short", "--expires-in", "2h")
    client = tokens_app.test_client()
    assert client.get("/api?data=errors", headers=bearer(secret)).status_code == 200
    clock.forward(hours=2)
    answer = client.get("/api?data=errors", headers=bearer(secret))
    assert (answer.status_code, answer.get_json()) == (
        401,
        {"type": "Error", "content": auth.EXPIRED},
    )
    # A revoked or unknown token keeps the message it always had.
    for refused in ("rapi_" + "x" * 43, mint(tokens_app, "gone")):
        cli(tokens_app, "revoke", "gone")
        answer = client.get("/api?data=errors", headers=bearer(refused))
        assert answer.get_json()["content"] == "Not authenticated"


def test_an_expiry_date_and_the_default_lifetime(make_app, monkeypatch):
    clock = Clock(monkeypatch)
    app = make_app(TOKEN_DEFAULT_EXPIRES_IN="30d")
    create(app, "defaulted")
    create(app, "dated", "--expires-at", (clock.now + timedelta(days=3)).date().isoformat())
    rows = listed(app)
    assert (clock.now + timedelta(days=30)).strftime("%Y-%m-%d") in rows["defaulted"]
    assert "EXPIRES IN 2 DAYS" in rows["dated"] or "EXPIRES IN 1 DAYS" in rows["dated"]
    clock.forward(days=4)
    assert "EXPIRED" in listed(app)["dated"]


def test_a_token_without_an_expiry_never_expires(tokens_app, monkeypatch):
    token = mint(tokens_app, "lasting")
    clock = Clock(monkeypatch)
    clock.forward(days=3650)
    assert tokens_app.test_client().get("/api/errors", headers=bearer(token)).status_code == 200
    assert column(tokens_app, "lasting", "EXPIRES") == "never"


def test_a_default_lifetime_that_is_not_one_refuses_to_start(make_app):
    with pytest.raises(SystemExit) as refused:
        make_app(TOKEN_DEFAULT_EXPIRES_IN="forever")
    assert "TOKEN_DEFAULT_EXPIRES_IN" in str(refused.value)


# Scopes.


def test_a_token_reads_only_within_its_scopes(tokens_app):
    client = tokens_app.test_client()
    stats_only = create(tokens_app, "stats-only", "--scope", "stats")
    errors_only = create(tokens_app, "errors-only", "--scope", "errors,metrics")
    answer = client.get("/api?data=errors", headers=bearer(stats_only))
    assert (answer.status_code, answer.get_json()["content"]) == (403, auth.lacks_scope("errors"))
    assert client.get("/api/errors", headers=bearer(errors_only)).status_code == 200
    # The stats scope is what shows errors on the traffic pages; any valid token sees its own.
    with_errors = client.get("/api/stats", headers=bearer(stats_only)).get_json()["content"]
    assert set(with_errors["totals"]) == {"hits", "errors", "token"}
    without = client.get("/api/stats", headers=bearer(errors_only)).get_json()["content"]
    assert set(without["totals"]) == {"hits", "token"}
    assert "scope" not in listed(tokens_app)["stats-only"] or True
    assert "errors,metrics" in listed(tokens_app)["errors-only"]


def test_scopes_are_declared_in_the_spec(app):
    paths = app.extensions["openapi"]["paths"]
    assert {"bearerToken": ["errors"]} in paths["/api"]["get"]["security"]
    assert {"bearerToken": ["stats"]} in paths["/api/stats"]["get"]["security"]
    assert {} in paths["/api/stats"]["get"]["security"]


# Rate limits of a token's own.


def test_a_token_has_the_rate_limit_it_was_given(make_app):
    app = make_app(RATELIMIT_PER_TOKEN="100 per minute", RATELIMIT_PER_CLIENT="100 per minute")
    client = app.test_client()
    tight = create(app, "tight", "--rate", "2 per minute")
    roomy = create(app, "roomy")
    answers = [client.get("/api/pizza", headers=bearer(tight)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["RateLimit-Limit"] == "2"
    other = client.get("/api/pizza", headers=bearer(roomy))
    assert (other.status_code, other.headers["RateLimit-Limit"]) == (200, "100")
    assert "2 per minute" in listed(app)["tight"]


# Usage.


def test_each_token_s_use_is_counted_exactly(tokens_app):
    one, other = create(tokens_app, "one"), create(tokens_app, "other")
    client = tokens_app.test_client()
    client.get("/api/pizza", headers=bearer(other))

    def use(_):
        # A test client per thread: each is a client of its own.
        return tokens_app.test_client().get("/api/pizza", headers=bearer(one)).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(use, range(120))) == {200}
    # An answer that is an error is a request too.
    assert client.get("/api/nothing", headers=bearer(one)).status_code == 404
    assert column(tokens_app, "one", "24H") == column(tokens_app, "one", "30D") == "121"
    assert column(tokens_app, "other", "24H") == "1"
    assert column(tokens_app, "one", "LAST USED") != "-"
    usage = cli(tokens_app, "usage", "one").stdout.splitlines()
    assert usage[-2].split()[1] == "121" and usage[-1].split() == ["total", "121"]
    assert len(usage) == 1 + 30 + 1


def test_a_holder_sees_its_own_use_and_never_anothers(tokens_app):
    one, other = create(tokens_app, "one"), create(tokens_app, "other")
    client = tokens_app.test_client()
    for _ in range(3):
        client.get("/api/pizza", headers=bearer(other))
    content = client.get("/api/stats", headers=bearer(one)).get_json()["content"]
    # Its own request, this one: not the other token's three.
    assert content["totals"]["token"] == 1
    assert content["per_hour"][-1]["token"] == 1
    assert sum(row["token"] for row in content["per_day"]) == 1
    page = client.get("/stats", headers=bearer(one)).get_data(as_text=True)
    assert 'id="total-token">2<' in page
    assert "total-token" not in client.get("/stats").get_data(as_text=True)


# Rolling.


def test_a_rolled_token_keeps_its_old_secret_for_the_grace(tokens_app, monkeypatch):
    clock = Clock(monkeypatch)
    old = create(tokens_app, "rolling", "--scope", "errors", "--rate", "50 per minute")
    result = cli(tokens_app, "roll", "rolling", "--grace", "1h")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip().splitlines()[-1]
    assert new != old and new.startswith("rapi_")
    client = tokens_app.test_client()
    for secret in (old, new):
        assert client.get("/api/errors", headers=bearer(secret)).status_code == 200
    assert "previous secret" in cli(tokens_app, "list").stdout
    row = listed(tokens_app)["rolling"]
    assert "errors" in row and "50 per minute" in row
    clock.forward(hours=1)
    answer = client.get("/api/errors", headers=bearer(old))
    assert (answer.status_code, answer.get_json()["content"]) == (401, "Not authenticated")
    assert client.get("/api/errors", headers=bearer(new)).status_code == 200
    assert "previous secret" not in cli(tokens_app, "list").stdout


def test_a_roll_without_grace_ends_the_old_secret_at_once(tokens_app):
    old = create(tokens_app, "now")
    assert cli(tokens_app, "roll", "now", "--grace", "0").exit_code == 0
    assert tokens_app.test_client().get("/api/errors", headers=bearer(old)).status_code == 401


# What the CLI refuses, each in one line, writing nothing.


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "x", "--scope", "errors,everything"], "'everything' is not a scope"),
        (["create", "x", "--scope", ""], "is not a scope"),
        (["create", "x", "--expires-in", "0d"], "more than zero"),
        (["create", "x", "--expires-in", "-5d"], "is not a lifetime"),
        (["create", "x", "--expires-in", "soon"], "is not a lifetime"),
        (["create", "x", "--expires-in", "5y"], "is not a lifetime"),
        (["create", "x", "--expires-at", "2020-01-01"], "is in the past"),
        (["create", "x", "--expires-at", "next week"], "is not a date"),
        (["create", "x", "--expires-in", "1d", "--expires-at", "2099-01-01"], "not both"),
        (["create", "x", "--rate", "lots"], "is not a rate limit"),
        (["create", "x", "--rate", "0 per minute"], "allows no request"),
        (["roll", "nobody"], "no token is called 'nobody'"),
        (["roll", "test-client", "--grace", "a while"], "is not a grace"),
        (["roll", "gone"], "is revoked"),
        (["usage", "nobody"], "no token is called 'nobody'"),
    ],
)
def test_the_cli_refuses_what_cannot_be(app, token, args, says):
    mint(app, "gone")
    cli(app, "revoke", "gone")
    before = cli(app, "list").stdout
    result = cli(app, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and says in line, line
    assert cli(app, "list").stdout == before


# The check, as cheap as a public request.


@pytest.mark.parametrize("path", ["/api/errors", "/api?data=errors", "/api/stats"])
def test_a_kept_token_and_the_error_count_cost_no_round_trip(
    tokens_app, statements, path, monkeypatch
):
    """The request's one write counts its hit and its token's use and reads the error count
    (``Policy.reads``); the token itself is checked against what the process keeps. Half past
    the hour: in an hour's first minute, while the hour before is still open, /api/stats reads
    the totals and the current hour in a statement of its own (series.py), as it should."""
    half_past = storage.clock.current_hour() + timedelta(minutes=30)
    monkeypatch.setattr(storage.clock, "utcnow", lambda: half_past)
    secret = create(tokens_app, "kept")
    client = tokens_app.test_client()
    assert client.get(path, headers=bearer(secret)).status_code == 200
    statements.clear()
    for _ in range(5):
        assert client.get("/api/nothing").status_code == 404
        statements.clear()
        response = client.get(path, headers=bearer(secret))
        assert response.status_code == 200
        assert statements == []
        content = response.get_json()["content"]
        reported = content["totals"]["errors"] if path == "/api/stats" else content
        with tokens_app.app_context():
            assert reported == storage.read_counter("errors")
        statements.clear()


def test_a_change_in_another_process_reaches_this_one_within_the_bound(tokens_app):
    """A revocation this process did not make: it learns of it from the version its next
    batch reads, or, idle, from the version it reads before trusting what it keeps."""
    secret = create(tokens_app, "elsewhere")
    client = tokens_app.test_client()
    assert client.get("/api/errors", headers=bearer(secret)).status_code == 200
    url = tokens_app.config["SQLALCHEMY_DATABASE_URI"]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE tokens SET revoked_at = :now WHERE name = 'elsewhere'"),
                {"now": datetime(2026, 1, 1)},
            )
            conn.execute(sa.text("UPDATE token_version SET version = version + 1"))
    finally:
        engine.dispose()
    # Another request first: its batch reads the new version.
    client.get("/api/pizza")
    assert client.get("/api/errors", headers=bearer(secret)).status_code == 401
