"""The OpenAPI document: it covers every route, its examples are real, and the app does what it
says, checked by schemathesis on every operation with a token and without."""

import re
from datetime import datetime

import jsonschema_rs
import pytest
import schemathesis
from flask_restful import Resource
from hypothesis import HealthCheck, settings

from api import auth, catalogue, create_app, errors, openapi, security, storage, token_hashing
from api.pages import example_requests, reference
from api.resources import data
from api.resources import metrics as metrics_resource
from api.web import edge

from .conftest import mint

# Routes for people or files, which the API spec leaves out on purpose.
NOT_IN_SPEC = {"/", "/docs", "/stats", "/static/<path:filename>"}
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}

# Every operation the spec has; a new route must be added here and documented.
OPERATIONS = {
    ("/api", "get"),
    ("/api", "post"),
    ("/api/{kind}", "get"),
    ("/api/teapot", "get"),
    ("/api/stats", "get"),
    ("/api/openapi.json", "get"),
    ("/healthz", "get"),
    ("/metrics", "get"),
}


def spec_path(rule):
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def inventory_mismatch(app, spec):
    """Routes the spec lacks and spec operations no route serves, as (path, method) pairs."""
    routed = {
        (spec_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule not in NOT_IN_SPEC
        for method in rule.methods - IMPLICIT_METHODS
    }
    documented = {(path, method) for path, method, _ in reference.operations(spec)}
    return routed - documented, documented - routed


@pytest.fixture
def spec(app):
    return app.extensions["openapi"]


def test_every_route_is_in_the_spec_and_every_operation_has_a_route(app, spec):
    assert inventory_mismatch(app, spec) == (set(), set())
    assert {(path, method) for path, method, _ in reference.operations(spec)} == OPERATIONS


def test_inventory_finds_a_route_the_spec_lacks(make_app):
    app = make_app()
    app.add_url_rule("/api/undocumented", "undocumented", lambda: "")
    assert inventory_mismatch(app, app.extensions["openapi"]) == (
        {("/api/undocumented", "get")},
        set(),
    )


def test_a_resource_without_a_declaration_fails_the_build(make_app):
    class Undeclared(Resource):
        def get(self):
            return {}

    app = make_app()
    app.add_url_rule("/api/undeclared", view_func=Undeclared.as_view("undeclared"))
    with pytest.raises(LookupError, match="Undeclared.get"):
        openapi.build_document(app)


def test_the_served_document_is_the_built_one(client, spec):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == spec
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] and spec["info"]["description"]


def test_the_spec_server_is_relative_unless_public_url_is_set(spec, make_app):
    assert [server["url"] for server in spec["servers"]] == ["/"]
    assert "relative to the document" in spec["servers"][0]["description"]
    public = make_app(PUBLIC_URL="https://api.example.com/v1").extensions["openapi"]
    assert [server["url"] for server in public["servers"]] == ["https://api.example.com/v1"]


def test_kinds_come_from_the_catalogue(spec):
    kinds = list(catalogue.KINDS)
    get, post = spec["paths"]["/api"]["get"], spec["paths"]["/api"]["post"]
    assert get["parameters"][0]["name"] == "data"
    assert get["parameters"][0]["schema"]["enum"] == kinds
    assert get["parameters"][0]["required"] is True
    kind = spec["paths"]["/api/{kind}"]["get"]["parameters"][0]
    assert (kind["name"], kind["in"], kind["schema"]["enum"]) == ("kind", "path", kinds)
    # POST /api?data=<kind> with no body is served, so both are optional there.
    assert (post["parameters"][0]["name"], post["parameters"][0]["required"]) == ("data", False)
    assert post["parameters"][0]["schema"]["enum"] == kinds
    assert post["requestBody"]["required"] is False
    for media_type in ("application/x-www-form-urlencoded", "application/json"):
        body = post["requestBody"]["content"][media_type]["schema"]
        assert body["properties"]["data"]["enum"] == kinds
        assert "required" not in body
    any_kind = spec["components"]["schemas"]["AnyKind"]["oneOf"]
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in any_kind] == [
        k.type for k in catalogue.KINDS.values()
    ]
    examples = get["responses"]["200"]["content"]["application/json"]["examples"]
    assert {name: example["value"]["type"] for name, example in examples.items()} == {
        k.name: k.type for k in catalogue.KINDS.values()
    }


def test_both_ways_to_send_a_token_are_security_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["queryToken"] == {
        **schemes["queryToken"],
        "type": "apiKey",
        "in": "query",
        "name": "token",
    }
    # The document's default: an optional token; operations that read none say so.
    assert spec["security"] == [{}, {"bearerToken": []}, {"queryToken": []}]
    # An operation that keeps something private names the scope a token needs for it.
    assert spec["paths"]["/api"]["get"]["security"] == [
        {},
        {"bearerToken": ["errors"]},
        {"queryToken": ["errors"]},
    ]
    assert "security" not in spec["paths"]["/api/teapot"]["get"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_without_query_tokens_the_spec_offers_only_the_header(make_app):
    spec = make_app(ALLOW_QUERY_TOKEN=False).extensions["openapi"]
    assert list(spec["components"]["securitySchemes"]) == ["bearerToken"]
    assert spec["security"] == [{}, {"bearerToken": []}]
    bad_requests = spec["paths"]["/api"]["get"]["responses"]["400"]["content"]
    messages = [
        e["value"]["content"] for e in bad_requests["application/json"]["examples"].values()
    ]
    assert auth.QUERY_STRING_DISABLED in messages


def referenced_responses(spec):
    """The names of the shared responses that some operation refers to."""
    return {
        response["$ref"].rsplit("/", 1)[1]
        for _, _, operation in reference.operations(spec)
        for response in operation["responses"].values()
        if "$ref" in response
    }


def test_every_shared_error_response_is_used_and_has_the_envelope_and_an_example(spec):
    responses = spec["components"]["responses"]
    # Only what operations refer to: the statuses every request can meet, and those an
    # operation answers with nothing particular to say (400s and 404s always have something).
    assert set(responses) == referenced_responses(spec)
    assert {414, 431, 500, 503, 429, 408, 411, 413} <= {
        int(name.removeprefix("Error")) for name in responses
    }
    assert set(int(name.removeprefix("Error")) for name in responses) <= set(errors.STATUSES)
    for status, response in responses.items():
        media = response["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Error"}, status
        assert media["examples"], status
    for path, method, operation in reference.operations(spec):
        statuses = set(operation["responses"])
        assert {"414", "431", "500", "503"} <= statuses, (path, method)
        assert [tag for tag in operation["tags"]] and set(operation["tags"]) <= set(openapi.TAGS)
        for status, response in operation["responses"].items():
            response = openapi.resolve(spec, response)
            if status == "304":
                # Not modified: the one answer without a body.
                assert "content" not in response and "ETag" in response["headers"]
                continue
            if (path, status) == ("/metrics", "200"):
                # Prometheus' text format, for a scraper: the one answer that is not JSON.
                assert response["content"]["text/plain"]["example"]
                continue
            media = response["content"]["application/json"]
            assert media["examples"], (path, method, status)
            if int(status) >= 400 and path != "/healthz":
                assert media["schema"] == {"$ref": "#/components/schemas/Error"}
                for example in media["examples"].values():
                    assert set(example["value"]) == {"type", "content"}
                    assert example["value"]["type"] == "Error"


# How to produce each documented error that is particular to one operation.
PARTICULAR_ERRORS = {
    ("get_data_query", 400, data.NO_DATA): {"method": "GET", "path": "/api"},
    ("get_data_query", 404, data.UNKNOWN_DATA): {"method": "GET", "path": "/api?data=nothing"},
    ("post_data_query", 400, data.NO_DATA): {"method": "POST", "path": "/api"},
    ("post_data_query", 400, data.INVALID_JSON): {
        "method": "POST",
        "path": "/api",
        "data": "{",
        "content_type": "application/json",
    },
    ("post_data_query", 400, data.NOT_AN_OBJECT): {"method": "POST", "path": "/api", "json": [1]},
    ("post_data_query", 400, data.NOT_A_STRING): {
        "method": "POST",
        "path": "/api",
        "json": {"data": 1},
    },
    ("post_data_query", 400, data.TOO_DEEP): {
        "method": "POST",
        "path": "/api",
        "data": "[" * 60_000,
        "content_type": "application/json",
    },
    ("post_data_query", 404, data.UNKNOWN_DATA): {
        "method": "POST",
        "path": "/api",
        "data": {"data": "nothing"},
    },
    ("get_typed_data", 404, data.UNKNOWN_TYPE): {"method": "GET", "path": "/api/nothing"},
}


def request_kwargs(example, token=None):
    """Flask test client arguments for one of the spec's example requests."""
    kwargs = {"method": example.method, "path": example.path}
    if example.media_type:
        kwargs.update(data=example.encoded_body(), content_type=example.media_type)
    if token:
        kwargs["headers"] = {"Authorization": f"Bearer {token}"}
    return kwargs


def trigger(spec, operation_id, status, message, token):
    """The request that makes one operation answer one documented error."""
    if (operation_id, status, message) in PARTICULAR_ERRORS:
        return PARTICULAR_ERRORS[operation_id, status, message]
    path, method, operation = next(
        (p, m, o) for p, m, o in reference.operations(spec) if o["operationId"] == operation_id
    )
    requests = example_requests.example_requests(spec, path, method, operation)
    public = request_kwargs(requests[0])
    separator = "&" if "?" in public["path"] else "?"
    if message == auth.SENT_TWO_WAYS:
        return {
            **public,
            "path": f"{public['path']}{separator}token={token}",
            "headers": {"Authorization": f"Bearer {token}"},
        }
    if message == auth.MALFORMED_HEADER:
        return {**public, "headers": {"Authorization": f"Basic {token}"}}
    if message == security.HOST_REFUSED:
        return {**public, "headers": {"Host": "a..b"}}
    if message == edge.UNREADABLE_FORWARDED:
        return {**public, "headers": {"X-Forwarded-For": ""}}
    if message in (
        auth.EXPIRED,
        metrics_resource.OFF,
        *(auth.lacks_scope(scope) for scope in auth.SCOPES),
    ):
        # The private request, with a token that does not do for it.
        return request_kwargs(next(r for r in requests if r.with_token), token)
    if status == 401:
        private = next(r for r in requests if r.with_token)
        # Without a token; a sent but wrong one where the data has a public part.
        kwargs = request_kwargs(private)
        if private.path == public["path"]:
            kwargs["headers"] = {"Authorization": "Bearer rapi_wrong"}
        return kwargs
    raise LookupError(f"nothing in this test produces {operation_id} {status} {message!r}")


def stored_token(app, name, **terms):
    """A token stored with terms the CLI would refuse (an expiry in the past, say)."""
    secret = f"rapi_{name}_" + "s" * 32
    with app.app_context():
        storage.create_token(name, token_hashing.hash_token(secret), **terms)
    return secret


def documented_errors(spec):
    """(operationId, status, message) for every error example written out in an operation."""
    for _, _, operation in reference.operations(spec):
        for status, response in operation["responses"].items():
            if "$ref" in response or int(status) < 400:
                continue
            for example in response["content"]["application/json"]["examples"].values():
                if example["value"].get("type") == "Error":
                    yield operation["operationId"], int(status), example["value"]["content"]


# Parametrizing and schemathesis need the spec at collection time, before any fixture exists.
# schemathesis 4.32's from_fixture loader sets Node._nodeid, which pytest 9.2 no longer has.
COLLECTION_SPEC = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"}).extensions[
    "openapi"
]


@pytest.mark.parametrize(
    ("operation_id", "status", "message"), sorted(documented_errors(COLLECTION_SPEC))
)
def test_every_documented_error_is_what_the_app_answers(
    app, client, make_app, spec, token, operation_id, status, message
):
    if message == edge.UNREADABLE_FORWARDED:
        # Only behind a trusted proxy; granian hands over a non-ASCII header as empty.
        client = make_app(PROXY_FIX_X_FOR=1).test_client()
    if message == auth.EXPIRED:
        token = stored_token(app, "expired", expires_at=datetime(2026, 1, 1))
    elif status == 403:
        # A token with every scope but the one the operation needs.
        needed = message.rsplit(" ", 1)[-1]
        token = stored_token(app, "lacking", scopes=set(auth.SCOPES) - {needed})
    elif message == metrics_resource.OFF:
        client = make_app(METRICS_ENABLED=False).test_client()
    response = client.open(**trigger(spec, operation_id, status, message, token))
    assert response.status_code == status
    assert response.get_json() == {"type": "Error", "content": message}
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_every_particular_error_is_documented(spec):
    assert set(PARTICULAR_ERRORS) <= set(documented_errors(spec))


def test_a_body_that_names_no_known_kind_is_an_error_even_when_the_query_names_one(client):
    # Otherwise the spec's enum on the body would be a rule the server does not keep.
    for body in ({"data": "nothing"}, {"data": None}, {"data": 1}):
        response = client.post("/api?data=1", json=body)
        assert response.status_code in (400, 404), body
    assert client.post("/api?data=1", json={}).get_json()["type"] == "Data"
    assert client.post("/api?data=1", data={"data": "pizza"}).get_json()["type"] == "Data"


def test_every_example_request_succeeds(client, spec, token):
    for path, method, operation in reference.operations(spec):
        expected = [int(s) for s in operation["responses"] if s.startswith("2")] or [418]
        for example in example_requests.example_requests(spec, path, method, operation):
            response = client.open(**request_kwargs(example, token if example.with_token else None))
            assert response.status_code in expected, (path, method, example)


def test_every_operation_answers_503_while_the_database_is_away(make_app, tmp_path, spec, token):
    away = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing/dir/api.sqlite3")
    client = away.test_client()
    for path, method, operation in reference.operations(spec):
        example = example_requests.example_requests(spec, path, method, operation)[0]
        # An operation with no public part reads its token, which needs the database.
        response = client.open(**request_kwargs(example, token if example.with_token else None))
        documented = openapi.resolve(spec, operation["responses"]["503"])
        examples = documented["content"]["application/json"]["examples"]
        assert response.status_code == 503, path
        assert response.get_json() in [e["value"] for e in examples.values()], path
        assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)


def test_a_fault_answers_the_documented_500(client, spec, monkeypatch):
    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setitem(catalogue.KINDS, "pizza", catalogue.Kind("pizza", "Pizza", broken, ""))
    response = client.get("/api/pizza")
    assert response.status_code == 500
    documented = spec["components"]["responses"]["Error500"]["content"]["application/json"]
    assert response.get_json() in [e["value"] for e in documented["examples"].values()]
    assert "a bug" not in response.get_data(as_text=True)


# Each schemathesis test calls its own app, built by the fixtures like every other test's.
schema = schemathesis.openapi.from_dict(
    COLLECTION_SPEC,
    config=schemathesis.Config.from_dict(
        {
            "operations": [
                {
                    # A valid request to the teapot is answered 418 and nothing else.
                    "include-path": "/api/teapot",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["418"]}},
                },
                {
                    # /metrics needs a token, in one of two ways the spec lists as
                    # alternatives; schemathesis 4.32 sends it both ways at once for an
                    # operation that needs one, which the service refuses with its 400.
                    "include-path": "/metrics",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "403", "429"]
                        }
                    },
                },
                {
                    # The data may come in the query string or the body, and both are
                    # optional in the spec, which cannot say "one of the two": a POST that
                    # names it in neither is valid by the spec and answered 400.
                    "include-operation-id": "post_data_query",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "404"]
                        }
                    },
                },
            ]
        }
    ),
)

# One app serves all of a test's examples, as one running service would.
EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def probed_app(make_app):
    """An app whose failed-token budget outlasts schemathesis's probes with wrong tokens, each
    of which must get its 401, not the 429 the budget gives past ten a minute."""
    return make_app(RATELIMIT_FAILED_TOKENS="100000 per minute")


@pytest.fixture
def probed_headers(probed_app):
    return {"Authorization": f"Bearer {mint(probed_app, 'schemathesis')}"}


@schema.parametrize()
@EXAMPLES
def test_the_app_conforms_without_a_token(case, probed_app):
    # The schema sends its own probes (an operation that needs a token, asked without one) to
    # the app it names: this test's.
    case.operation.schema.app = probed_app
    case.call_and_validate(app=probed_app)


@schema.parametrize()
@EXAMPLES
def test_the_app_conforms_with_a_valid_token(case, probed_app, probed_headers):
    case.operation.schema.app = probed_app
    case.call_and_validate(app=probed_app, headers=probed_headers)


def component_examples(spec, status):
    """The messages written out in one shared error response of the spec."""
    examples = spec["components"]["responses"][f"Error{status}"]["content"]["application/json"]
    return {example["value"]["content"] for example in examples["examples"].values()}


def test_every_example_is_valid_against_its_schema(spec):
    """An example that its own schema rejects teaches clients the wrong shape."""
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                response = openapi.resolve(spec, response)
                for media_type, content in response.get("content", {}).items():
                    schema = {**content["schema"], "components": spec["components"]}
                    validator = jsonschema_rs.Draft202012Validator(schema)
                    for name, example in content.get("examples", {}).items():
                        errors = [e.message for e in validator.iter_errors(example["value"])]
                        assert errors == [], (path, method, status, media_type, name, errors)
                        checked += 1
    assert checked > 20


def test_every_documented_header_has_an_example(spec):
    """/docs shows each header as `Name: example`; one without would read `Name:`."""
    documented = [
        (name, header)
        for response in spec["components"]["responses"].values()
        for name, header in response.get("headers", {}).items()
    ]
    assert documented
    assert [name for name, header in documented if "example" not in header] == []


def test_shared_limit_errors_are_what_the_app_answers(make_app):
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_PER_CLIENT="1/minute",
        RATELIMIT_FAILED_TOKENS="1/minute",
        MAX_CONTENT_LENGTH=1024,
    )
    spec = app.extensions["openapi"]
    client = app.test_client()

    too_large = client.post("/api", data={"data": "x" * 2048})
    assert too_large.status_code == 413
    assert too_large.get_json()["content"] in component_examples(spec, 413)

    client.get("/api/pizza")
    limited = client.get("/api/pizza")
    assert limited.status_code == 429
    assert limited.get_json()["content"] in component_examples(spec, 429)
    for header in spec["components"]["responses"]["Error429"]["headers"]:
        assert header in limited.headers


def test_problem_details_are_documented_for_every_error(app):
    spec = app.extensions["openapi"]
    for status, response in spec["components"]["responses"].items():
        if status.startswith("Error"):
            problem = response["content"]["application/problem+json"]
            assert problem["example"]["status"] == int(status[len("Error") :])
    client = app.test_client()
    answer = client.get("/api/nothing", headers={"Accept": "application/problem+json"})
    assert answer.mimetype == "application/problem+json"
    assert set(answer.get_json()) >= set(spec["components"]["schemas"]["Problem"]["required"])
