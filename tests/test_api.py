"""The API contract, row by row, through the Flask test client."""

import shutil
import sqlite3
import subprocess

import pytest

from api import catalogue

PIZZA = "There are 10 pizzas being made in the pizzeria"
PEOPLE = "There are 3 people making the pizzas in the pizzeria"

PUBLIC = [
    ("1", "Data", "Yay! Request successful!"),
    ("pizza", "Pizza", PIZZA),
    ("people", "People", PEOPLE),
]


def envelope(response):
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"type", "content"}
    return body["type"], body["content"]


@pytest.mark.parametrize(("kind", "type_", "content"), PUBLIC)
@pytest.mark.parametrize("url", ["/api?data={}", "/api/{}"])
def test_public_kinds(client, url, kind, type_, content):
    response = client.get(url.format(kind))
    assert response.status_code == 200
    assert envelope(response) == (type_, content)


@pytest.mark.parametrize(("kind", "type_", "content"), PUBLIC)
def test_post_with_data_in_query(client, kind, type_, content):
    response = client.post(f"/api?data={kind}")
    assert response.status_code == 200
    assert envelope(response) == (type_, content)


@pytest.mark.parametrize(
    "body",
    [{"data": {"data": "pizza"}}, {"json": {"data": "pizza"}}],
    ids=["form", "json"],
)
def test_post_with_data_in_body(client, body):
    response = client.post("/api", **body)
    assert response.status_code == 200
    assert envelope(response) == ("Pizza", PIZZA)


@pytest.mark.parametrize("url", ["/api?data=hits", "/api/hits"])
def test_hits_include_this_request(client, hits, url):
    before = hits()
    response = client.get(url)
    assert response.status_code == 200
    assert envelope(response) == ("HitCount", before + 1)
    assert hits() == before + 1


@pytest.mark.parametrize("url", ["/api", "/api?other=1", "/api?Data=1"])
def test_no_data_requested(client, url):
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 400
        assert envelope(response) == ("Error", "No data requested")


@pytest.mark.parametrize("data", ["nothing", "PIZZA", "hit", "", " 1"])
def test_unknown_data(client, data):
    response = client.get("/api", query_string={"data": data})
    assert response.status_code == 404
    assert envelope(response) == ("Error", "Data specified does not exist")


@pytest.mark.parametrize("kind", ["nothing", "PIZZA", "hit"])
def test_unknown_type(client, kind):
    response = client.get(f"/api/{kind}")
    assert response.status_code == 404
    assert envelope(response) == ("Error", "Type not available")


def test_teapot(client):
    response = client.get("/api/teapot")
    assert response.status_code == 418
    assert envelope(response) == ("Error", "I'm a teapot")


@pytest.mark.parametrize("path", ["/api/pizza/extra", "/api/a/b/c", "/apix"])
def test_other_paths_under_api(client, path):
    response = client.get(path)
    assert response.status_code == 404
    if path.startswith("/api/"):
        assert envelope(response) == ("Error", "Not found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api", {"GET", "POST"}),
        ("delete", "/api", {"GET", "POST"}),
        ("post", "/api/pizza", {"GET"}),
        ("patch", "/api/teapot", {"GET"}),
    ],
)
def test_method_not_allowed(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert envelope(response) == ("Error", "Method not allowed")
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "{not json", "content_type": "application/json"}, "not valid JSON"),
        ({"json": ["pizza"]}, "must be an object"),
        ({"json": "pizza"}, "must be an object"),
        ({"json": {"data": 1}}, "data must be a string"),
        ({"json": {"data": ["pizza"]}}, "data must be a string"),
        ({"json": {"data": None}}, "data must be a string"),
        ({"json": {}}, "No data requested"),
    ],
)
def test_bad_post_bodies(client, kwargs, message):
    response = client.post("/api", **kwargs)
    assert response.status_code == 400
    type_, content = envelope(response)
    assert type_ == "Error"
    assert message in content


def test_malformed_body_is_not_ignored_when_query_names_data(client):
    response = client.post("/api?data=1", data="{", content_type="application/json")
    assert response.status_code == 400


def test_unexpected_exception_is_a_500_envelope(app, client, monkeypatch):
    def explode():
        raise RuntimeError("secret internals")

    kind = catalogue.KINDS["pizza"]
    monkeypatch.setitem(
        catalogue.KINDS, "pizza", kind.__class__(kind.name, kind.type, explode, kind.summary)
    )
    response = client.get("/api/pizza")
    assert response.status_code == 500
    assert envelope(response) == ("Error", "Internal server error")
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data


def test_healthz(client, hits):
    before = hits()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert hits() == before


def test_healthz_without_database(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing/dir/db.sqlite3")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}


def test_api_without_database_is_503_envelope(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing/dir/db.sqlite3")
    response = app.test_client().get("/api?data=1")
    assert response.status_code == 503
    assert envelope(response) == ("Error", "Service unavailable")
    assert response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "text/html", "text/plain", "application/xml"]
)
def test_any_accept_header_gets_json(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/api/pizza", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert envelope(response) == ("Pizza", "There are 10 pizzas being made in the pizzeria")


def test_errors_are_written_like_the_answers_that_succeed(client):
    """One envelope, one way of writing it: "type" first, as the tutorial shows it."""
    assert client.get("/api/pizza").data.startswith(b'{"type": "Pizza", "content": ')
    assert client.get("/api/coffee").data == b'{"type": "Error", "content": "Type not available"}\n'


def test_healthz_fails_when_the_database_cannot_take_a_write(make_app, database_path):
    """SQLite answers a SELECT while another process holds its write lock, or its disk is full;
    counting would fail then, so the health check does too."""
    app = make_app(SQLITE_BUSY_TIMEOUT_MS=100)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    holder = sqlite3.connect(database_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert client.get("/healthz").status_code == 503
        assert client.get("/api?data=1").status_code == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert client.get("/healthz").status_code == 200


@pytest.fixture
def small_disk(tmp_path, migrated_template):
    """A migrated SQLite file on a filesystem of its own, 2 MiB, and a way to fill it."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {mounted.stderr!r}")
    filler = mount / "filler"

    def fill():
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass

    try:
        shutil.copy(migrated_template, mount / "api.sqlite3")
        yield mount / "api.sqlite3", fill, filler.unlink
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_healthz_fails_when_the_disk_is_full(make_app, small_disk):
    path, fill, free = small_disk
    client = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}").test_client()
    # The database is open, its write-ahead log in place, when the disk fills up.
    assert client.get("/api?data=1").status_code == 200
    fill()
    # A write may still fit where a failed one had already taken room in the log: each
    # check writes as a hit does, so both fail together, if not at each single try.
    assert 503 in [client.get("/api?data=1").status_code for _ in range(5)]
    assert 503 in [client.get("/healthz").status_code for _ in range(5)]
    free()
    assert client.get("/healthz").status_code == 200
    assert client.get("/api?data=1").status_code == 200
