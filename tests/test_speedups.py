"""The speed layer, api/speedups/: each override checked against the library version it was
written for, and its answer held to the library's own.

An upgrade of any library below fails the version test with the overrides to review; read
each one beside the new release's code, measure it again (``python -m bench.overrides``) and
update ``CHECKED_AGAINST`` once it holds.
"""

import asyncio
import time
from importlib.metadata import version

import flask
import flask_limiter
import flask_restful
import pytest
from flask_cors.core import set_cors_headers
from flask_restful.representations.json import output_json as restful_output_json
from limits.storage import MemoryStorage

from api import auth, errors, speedups, storage
from api.resources import base
from api.speedups import cors, limiter, responses, restful
from bench import overrides
from harness.servers import ROOT


def test_every_library_an_override_reaches_into_is_the_version_it_was_checked_against():
    review = speedups.to_review(version)
    assert not review, "review these overrides in api/speedups/: " + "; ".join(
        f"{library}: {', '.join(overrides)}" for library, overrides in review.items()
    )


def test_an_upgrade_names_the_overrides_to_review():
    def upgraded(library):
        return "4.2.0" if library == "flask-limiter" else speedups.CHECKED_AGAINST[library]

    assert speedups.to_review(upgraded) == {
        "flask-limiter 4.2.0 (checked against 4.1.1)": [
            "limiter.RequestLimiter.context",
            "limiter.ParsedOnce",
        ]
    }


def test_every_library_checked_against_is_pinned():
    """requirements.txt pins each library whose code an override copies or reaches into."""
    pinned = {}
    for entry in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, pin = entry.partition("==")
        if pin:
            pinned[name.split("[")[0].strip().lower()] = pin.strip()
    assert {lib: pinned.get(lib) for lib in speedups.CHECKED_AGAINST} == speedups.CHECKED_AGAINST


# Each fast path answers as the library's own does.


@pytest.mark.parametrize("path", ["/api/pizza", "/", "/api/nothing", "/api/teapot", "/nowhere"])
def test_finished_responses_reach_the_server_with_werkzeugs_own_headers(app, path):
    with app.test_request_context(path):
        environ = flask.request.environ
        response = app.full_dispatch_request()
        assert isinstance(response, responses.FinishedResponse)
        fast = list(response.get_wsgi_headers(environ))
        own = list(flask.Response.get_wsgi_headers(response, environ))
    assert fast == own


def test_the_coroutine_check_is_flasks_own_answer(app):
    def hook():
        return None

    async def view():
        return "done"

    assert app.ensure_sync(hook) is flask.Flask.ensure_sync(app, hook) is hook
    # An async function still takes Flask's own path: without its async extra, its refusal.
    assert asyncio.iscoroutinefunction(view)
    with pytest.raises(RuntimeError, match="async") as ours:
        app.ensure_sync(view)
    with pytest.raises(RuntimeError, match="async") as flasks:
        flask.Flask.ensure_sync(app, view)
    assert str(ours.value) == str(flasks.value)


def test_the_limiter_keeps_one_state_per_request_as_the_librarys_own_does(app):
    found = next(iter(app.extensions["limiter"]))
    assert isinstance(found, limiter.RequestLimiter)
    with app.test_request_context("/api/pizza"):
        first = found.context
        assert found.context is first
        assert type(first) is type(flask_limiter.Limiter.context.fget(found))
    with app.test_request_context("/api/pizza"):
        assert found.context is not first


def test_limits_parsed_once_are_the_librarys_limits():
    def key():
        return "client"

    settings = {"scope": "requests", "key_function": key, "error_message": "slow down"}
    parsed = limiter.ParsedOnce("3 per minute; 10 per hour", **settings)
    own = flask_limiter.ApplicationLimit("3 per minute; 10 per hour", **settings)
    assert [limiter.fields_of(limit) for limit in parsed] == [
        limiter.fields_of(limit) for limit in own
    ]
    # Parsed once: the same objects every time.
    assert list(parsed) == list(parsed)


def test_the_memory_store_counts_as_limits_own_does():
    ours, theirs = limiter.FixedWindowMemory(), MemoryStorage()
    steps = [("incr", "a", 60), ("incr", "a", 60), ("incr", "b", 60), ("get", "a"), ("get", "c")]
    steps += [("decr", "a"), ("get", "a"), ("clear", "a"), ("get", "a"), ("incr", "a", 60)]
    for name, *args in steps:
        assert getattr(ours, name)(*args) == getattr(theirs, name)(*args), (name, args)
    theirs.reset()


@pytest.mark.parametrize("origins", [["*"], ["https://app.example"]])
@pytest.mark.parametrize("origin", [None, "https://app.example", "https://other.example"])
def test_cors_headers_are_flask_cors_own(app, origins, origin):
    simple = cors.SimpleCors(app, origins, send_wildcard=True, supports_credentials=False)
    headers = {"Origin": origin} if origin else {}
    with app.test_request_context("/api/pizza", headers=headers):
        fast, own = app.response_class("x"), app.response_class("x")
        simple.add_headers(fast, "GET")
        set_cors_headers(own, simple.options)
        if origins != ["*"]:
            own.vary.add("Origin")
    assert list(fast.headers) == list(own.headers)


@pytest.mark.parametrize("data", [{"type": "Data", "content": "é"}, {"a": [1, 2]}])
def test_json_answers_are_flask_restfuls_own(app, data):
    with app.test_request_context("/api"):
        app.config.setdefault("RESTFUL_JSON", {})
        fast = restful.json_answer(errors.json_body)(data, 201, {"X-A": "1"})
        own = restful_output_json(data, 201, {"X-A": "1"})
        api = restful.JsonOnlyApi()
        api.representations = {"application/json": restful_output_json}
        negotiated = flask_restful.Api.make_response(api, data, 201)
    assert fast.get_data() == own.get_data() == negotiated.get_data()
    # Flask-RESTful's representation answers text/html, which its Api then relabels.
    assert (fast.status_code, fast.mimetype) == (negotiated.status_code, negotiated.mimetype)
    assert fast.headers["X-A"] == own.headers["X-A"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api?data=1", {}),
        ("/api?data=errors", {}),
        ("/api?data=errors", {"Authorization": "Bearer rapi_wrong"}),
        ("/api?data=errors&token=rapi_wrong", {}),
    ],
)
def test_the_token_check_answers_as_flask_httpauth_own(make_app, monkeypatch, path, headers):
    fast = make_app().test_client().get(path, headers=headers)
    # Flask-HTTPAuth's optional login around every view, whether a token came or not.
    every_time = auth.auth.login_required(optional=True)(lambda view, *a, **k: view(*a, **k))
    monkeypatch.setattr(base, "with_optional_token", every_time)
    monkeypatch.setattr(auth, "with_optional_token", every_time)
    own = make_app().test_client().get(path, headers=headers)
    assert (fast.status_code, fast.get_data()) == (own.status_code, own.get_data())


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request):
    """A migrated database of each kind the service supports."""
    return request.getfixturevalue("database_url" if request.param == "sqlite" else "pg_url")


def test_the_writer_on_the_driver_adds_as_sqlalchemy_core_does(make_app, any_url):
    """The counter writer runs its SQL on the driver's connection (speedups/dbapi.py);
    ``bench/overrides.py`` measures it against the same statements through Core, which must
    then add and read exactly alike."""
    app = make_app(SQLALCHEMY_DATABASE_URI=any_url)
    with app.app_context():
        engine = storage.db.engine
        shipped = storage.writer_for(engine, app.config)
        core = overrides.CORE[engine.dialect.name](engine, app.config)
        batches = [({"hits": 2, "errors": 1}, ["never"]), ({"hits": 1}, ["errors"])]
        for amounts, reads in batches:
            first = shipped(amounts, time.monotonic(), (), reads)
            second = core(amounts, time.monotonic(), (), reads)
            assert set(first) == set(second) == {*amounts, *reads}
            for name in first:
                assert second[name] - first[name] == amounts.get(name, 0)
        assert storage.read_counter("hits") == 6
        assert storage.read_counter("errors") == 2
        shipped.close()
        core.close()


def test_each_override_measured_answers_as_the_library_would_without_it(
    postgres_server, monkeypatch, tmp_path
):
    """``python -m bench.overrides`` builds each app with and without each override and
    compares their answers before it times them: every pair answers alike, on both
    databases, so the tool that measures what an override buys still runs."""
    monkeypatch.setattr(overrides, "PG_URL", postgres_server)
    databases = overrides.Databases(tmp_path)
    try:
        runs = databases.runs()
        pairs = list(zip(runs[::2], runs[1::2], strict=True))
        measured = {item.name for (item, *_), _ in pairs}
        assert measured == {item.name for item in overrides.ITEMS}
        assert [found for pair in pairs if (found := overrides.unlike(*pair))] == []
    finally:
        databases.close()
