"""The pages people read: index, docs and the HTML error page."""

import re

import pytest

from api import catalogue, errors


def test_index_explains_the_api_and_shows_the_count(client, hits):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/docs"' in html
    assert "/api?data=" in html
    assert re.search(rf'id="hits">{hits()}<', html)
    assert 'href="/static/style.css"' in html


def test_docs_document_every_kind_endpoint_status_and_both_token_ways(client):
    html = client.get("/docs").get_data(as_text=True)
    for kind in catalogue.KINDS.values():
        assert f"<code>{kind.name}</code>" in html
        assert f"<code>{kind.type}</code>" in html
    for endpoint in ("/api", "/api/{kind}", "/api/teapot", "/healthz"):
        assert endpoint in html
    for status in (200, *errors.ERROR_STATUSES):
        assert f"<td>{status}</td>" in html
    assert "application/problem+json" in html
    assert "Retry-After" in html
    assert "Authorization: Bearer" in html
    assert "token=" in html
    assert "token create" in html


def test_docs_table_of_contents_points_at_real_sections(client):
    html = client.get("/docs").get_data(as_text=True)
    targets = re.findall(r'href="#([\w-]+)"', html)
    assert targets
    for target in targets:
        assert f'id="{target}"' in html


@pytest.mark.parametrize(("path", "status"), [("/nowhere", 404), ("/docs/", 404)])
def test_browser_errors_get_the_html_page(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert f'<p class="status">{status}</p>' in html
    assert "Not Found" in html
    assert 'href="/static/style.css"' in html


def test_page_method_not_allowed_is_html(client):
    response = client.post("/docs")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "GET" in response.headers["Allow"]


def test_stylesheet_is_served(client):
    with client.get("/static/style.css") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
