"""The token matrix: every way a token can arrive, or fail to."""

import logging
from urllib.parse import urlencode

import pytest

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
