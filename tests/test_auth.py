"""The token matrix: every way a token can arrive, or fail to."""

import json
import logging
from urllib.parse import urlencode

import pytest

from api import auth

from . import servers

PRIVATE_URLS = ["/api?data=errors", "/api/errors"]


def sent(how, token):
    """Request arguments that send token the given way."""
    if how == "header":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {"token": token}


def get(client, url, token=None, **kwargs):
    """GET url, adding a query-string token to whatever query it already has."""
    if token is not None:
        url += ("&" if "?" in url else "?") + urlencode({"token": token})
    return client.get(url, **kwargs)


@pytest.mark.parametrize("url", PRIVATE_URLS)
@pytest.mark.parametrize("how", ["header", "query"])
def test_valid_token(client, token, url, how):
    response = get(client, url, **sent(how, token))
    assert response.status_code == 200
    assert response.get_json()["type"] == "ErrorCount"
    assert isinstance(response.get_json()["content"], int)


@pytest.mark.parametrize("url", PRIVATE_URLS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        sent("header", "rapi_wrong"),
        sent("query", "rapi_wrong"),
        sent("query", ""),
    ],
    ids=["none", "wrong-header", "wrong-query", "empty-query"],
)
def test_not_authenticated(client, token, url, kwargs):
    response = get(client, url, **kwargs)
    assert response.status_code == 401
    assert response.get_json() == {"type": "Error", "content": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("how", ["header", "query"])
def test_revoked_token_fails_on_the_next_request(client, runner, token, how):
    assert get(client, "/api/errors", **sent(how, token)).status_code == 200
    result = runner.invoke(args=["token", "revoke", "test-client"])
    assert result.exit_code == 0
    assert get(client, "/api/errors", **sent(how, token)).status_code == 401


def test_error_count_is_exact(client, auth_headers):
    first = client.get("/api/errors", headers=auth_headers).get_json()["content"]
    client.get("/api/nothing")
    client.get("/api?data=nothing")
    second = client.get("/api/errors", headers=auth_headers).get_json()["content"]
    assert second == first + 2


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "", "Bearer a b", "Token abc"]
)
def test_malformed_authorization_header(client, header):
    response = client.get("/api?data=1", headers={"Authorization": header})
    assert response.status_code == 400
    assert response.get_json()["type"] == "Error"
    assert "Authorization" in response.get_json()["content"]


def test_token_sent_two_ways(client, token):
    response = client.get(
        "/api/errors", query_string={"token": token}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    assert "not both" in response.get_json()["content"]


def test_query_tokens_can_be_switched_off(make_app, runner, token):
    app = make_app(ALLOW_QUERY_TOKEN=False)
    client = app.test_client()
    response = client.get("/api/errors", query_string={"token": token})
    assert response.status_code == 400
    assert "disabled" in response.get_json()["content"]
    assert (
        client.get("/api/errors", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )


def test_public_data_needs_no_token(client):
    assert client.get("/api/pizza").status_code == 200


def test_rejected_token_is_logged_without_its_secret(client, caplog):
    secret = "rapi_ThisIsNotARealTokenButLongEnoughToMatter1234"
    with caplog.at_level(logging.WARNING, logger="api"):
        client.get("/api/errors", headers={"Authorization": f"Bearer {secret}"})
    # The prefix and four characters, enough to tell tokens apart, and not one more.
    assert "rejected token rapi_This... from 127.0.0.1" in caplog.text
    assert "rapi_ThisI" not in caplog.text


@pytest.mark.parametrize("name", ["%74oken", "t%6Fken", "%74%6F%6B%65%6E"])
def test_percent_encoded_parameter_name_is_the_token(client, token, name):
    """The app decodes parameter names, so an encoded ``token`` is a token like any other."""
    response = client.get(f"/api/errors?{name}={token}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get(f"/api/errors?{name}=rapi_wrong").status_code == 401


def test_public_data_with_a_malformed_header_is_refused(client):
    """Public data ignores a wrong token, but a header it cannot read is still a 400."""
    response = client.get("/api/pizza", headers={"Authorization": "Bearer"})
    assert response.status_code == 400
    assert "Malformed Authorization header" in response.get_json()["content"]


@pytest.mark.parametrize(
    "template",
    [
        "bearer {}",
        "BEARER {}",
        "bEaReR {}",
        "Bearer  {}",
        "Bearer\t{}",
        " Bearer {} ",
        "Bearer {}\t",
    ],
    ids=["lower", "upper", "mixed", "two spaces", "tab", "padded", "trailing tab"],
)
def test_the_scheme_in_any_case_and_any_whitespace_around_the_token(client, token, template):
    response = client.get("/api/errors", headers={"Authorization": template.format(token)})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("post", {"data": {"data": "errors", "token": "{token}"}}),
        ("post", {"json": {"data": "errors", "token": "{token}"}}),
        ("get", {"query_string": "data=errors&token[]={token}"}),
        ("get", {"query_string": "data=errors&token%5B%5D={token}"}),
        ("get", {"query_string": "data=errors&TOKEN={token}"}),
    ],
    ids=["form body", "json body", "token[]", "encoded token[]", "TOKEN"],
)
def test_a_token_anywhere_else_is_no_token(client, token, method, kwargs):
    kwargs = {
        key: value.format(token=token)
        if isinstance(value, str)
        else {k: v.format(token=token) for k, v in value.items()}
        for key, value in kwargs.items()
    }
    response = getattr(client, method)("/api", **kwargs)
    assert response.status_code == 401


def test_an_empty_query_token_is_no_token_on_public_data(client):
    response = client.get("/api/pizza?token=")
    assert response.status_code == 200


def test_a_revoked_token_gets_the_same_401_as_a_wrong_one(client, runner, token):
    def attempt(secret):
        response = client.get("/api/errors", headers={"Authorization": f"Bearer {secret}"})
        kept = ("Content-Type", "Content-Length", "WWW-Authenticate", "Cache-Control", "Vary")
        return response.status_code, response.data, [response.headers.get(h) for h in kept]

    wrong = attempt("rapi_" + "x" * 43)
    assert runner.invoke(args=["token", "revoke", "test-client"]).exit_code == 0
    assert attempt(token) == wrong
    assert wrong[0] == 401


@pytest.mark.server
def test_two_authorization_headers_are_a_400_from_the_real_server(start_server, sqlite_url):
    """granian joins repeated headers with a comma, so two tokens read as one malformed
    header: refused, never a choice between them."""
    secret = servers.mint_token(servers.clean_env(DATABASE_URL=sqlite_url), "twice")
    server = start_server(sqlite_url)
    for path in ("/api/errors", "/api/pizza"):
        for other in (secret, "rapi_wrong"):
            raw = (
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                f"Authorization: Bearer {other}\r\n\r\n"
            )
            status, _, body = servers.parse_answer(servers.exchange(server.port, raw.encode()))
            assert status == 400, (path, other)
            assert json.loads(body) == {"type": "Error", "content": auth.MALFORMED_HEADER}
