"""The pages people read: index, docs and the HTML error page."""

import html
import re

import pytest
from markupsafe import escape

from api import catalogue, counting, errors
from api.config import InvalidSetting
from api.pages import example_requests, reference


@pytest.mark.parametrize("path", ["/", "/docs", "/stats", "/nowhere", "/docs/"])
def test_pages_are_revalidated_by_caches(client, path):
    # The index shows the live count; every page is asked for again rather than served stale.
    assert client.get(path).headers["Cache-Control"] == "no-cache"


def test_examples_use_public_url_when_it_is_set(make_app):
    client = make_app(PUBLIC_URL="https://api.example.com").test_client()
    for path in ("/", "/docs"):
        text = html.unescape(client.get(path, headers={"Host": "other.example"}).text)
        assert 'curl "https://api.example.com/api?data=1"' in text
        assert "$BASE" not in text and "other.example" not in text


def test_without_public_url_examples_read_the_address_from_the_shell(client):
    docs = html.unescape(client.get("/docs").text)
    assert "<code>BASE</code> being this server's address" in section(docs, "quick-start")
    assert 'BASE = os.environ["BASE"]' in docs
    assert 'curl "$BASE/api?data=1"' in html.unescape(client.get("/").text)


@pytest.mark.parametrize(
    "url", ["ftp://api.example.com", "https://api.example.com/$(id)", 'https://a.example/"', "api"]
)
def test_a_public_url_the_examples_cannot_hold_refuses_to_start(make_app, url):
    with pytest.raises(InvalidSetting, match="PUBLIC_URL"):
        make_app(PUBLIC_URL=url)


def test_index_explains_the_api_and_shows_the_count(client, hits):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/docs"' in html
    assert 'href="/stats"' in html
    assert "/api?data=" in html
    assert f'id="hits">{hits():,}<' in html
    assert 'href="/static/style.css"' in html


def section(html, anchor):
    """The HTML of one section of the docs, from its id to the next section."""
    start = html.index(f'id="{anchor}"')
    following = re.search(r'<section[^>]* id="', html[start + 1 :])
    return html[start : start + 1 + following.start()] if following else html[start:]


def test_docs_document_every_kind_and_both_token_ways(client):
    html = client.get("/docs").get_data(as_text=True)
    for kind in catalogue.KINDS.values():
        assert f"<code>{kind.name}</code>" in html
        assert f"<code>{kind.type}</code>" in html
    auth = section(html, "authentication")
    assert "flask --app api token create" in auth
    assert 'curl -H "Authorization: Bearer $TOKEN"' in auth
    assert "&amp;token=$TOKEN" in auth
    assert "Prefer the header" in auth
    quick_start = section(html, "quick-start")
    assert "curl " in quick_start
    assert "import requests" in quick_start


def test_each_endpoint_links_the_statuses_it_shares_instead_of_repeating_them(app, client):
    html = client.get("/docs").get_data(as_text=True)
    for endpoint in reference.endpoints(app.extensions["openapi"]):
        part = section(html, endpoint.anchor)
        assert "Retry-After: 30" not in part
        for status in endpoint.shared_statuses:
            assert f'<a href="#status-{status}">{status}</a>' in part


def test_docs_have_a_section_and_a_contents_link_for_every_operation(app, client):
    html = client.get("/docs").get_data(as_text=True)
    spec = app.extensions["openapi"]
    operations = list(reference.operations(spec))
    assert len(operations) == 8
    start = html.index('<nav class="toc"')
    contents = html[start : html.index("</nav>", start)]
    for path, method, operation in operations:
        anchor = reference.anchor(method, path)
        assert f'href="#{anchor}"' in contents
        body = section(html, anchor)
        assert f">{method.upper()}</span>" in body
        assert f"<code>{path}</code>" in body
        for status, response in operation["responses"].items():
            # An error with messages of its own shows them beside a link to the status's one
            # description; a shared one only the link; anything else is shown in full.
            media = response.get("content", {}).get("application/json", {})
            messages = [
                e["value"]["content"]
                for e in media.get("examples", {}).values()
                if e["value"].get("type") == "Error"
            ]
            if "$ref" in response or messages:
                assert f'#status-{status}">{status}</a>' in body, (path, status)
            else:
                assert f">{status}</span>" in body, (path, status)
            for message in messages:
                assert f'<code class="message">{escape(message)}</code>' in body
        for example in example_requests.example_requests(spec, path, method, operation):
            assert escape(example.curl(example_requests.SHELL_BASE)) in body


def test_docs_list_every_status_once_with_its_example(app, client):
    html = client.get("/docs").get_data(as_text=True)
    errors_section = section(html, "errors")
    for status in [200, *errors.STATUSES]:
        assert f'status-{str(status)[0]}xx">{status}</span>' in errors_section
    for status in errors.STATUSES:
        assert html.count(f'id="status-{status}"') == 1
    # The 429's headers read as one sentence, each named once.
    assert "Comes with <code>Retry-After: 30</code>, <code>RateLimit-Limit: 120</code>" in html
    shared = app.extensions["openapi"]["components"]["responses"]
    for name in shared:
        examples = shared[name]["content"]["application/json"]["examples"]
        for example in examples.values():
            message = example["value"]["content"]
            assert f'<code class="message">{escape(message)}</code>' in errors_section


def test_docs_state_the_counting_rules_from_the_code(app, client):
    counting_section = section(client.get("/docs").get_data(as_text=True), "counting")
    uncounted = app.extensions["policies"].paths(app, counted=False)
    assert uncounted == ["/healthz", "/metrics"]
    for path in uncounted:
        assert f"<code>{path}</code>" in counting_section
    for method in counting.UNCOUNTED_METHODS:
        assert f"<code>{method}</code>" in counting_section
    assert "<code>/static/</code>" in counting_section


def test_docs_without_query_tokens_show_only_the_header(make_app):
    html = make_app(ALLOW_QUERY_TOKEN=False).test_client().get("/docs").get_data(as_text=True)
    assert "&amp;token=" not in html
    assert "refuses tokens in the query string" in html


def test_docs_table_of_contents_points_at_real_sections(client):
    html = client.get("/docs").get_data(as_text=True)
    targets = re.findall(r'href="#([\w-]+)"', html)
    assert len(set(targets)) >= 13
    for target in targets:
        assert f'id="{target}"' in html


@pytest.mark.parametrize("path", ["/", "/docs", "/stats", "/nowhere"])
def test_pages_need_no_inline_script_or_style(client, path):
    """A strict Content-Security-Policy (default-src 'self') must not break any page."""
    html = client.get(path).get_data(as_text=True)
    assert "<script" not in html
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    # Everything the page loads comes from this server: no CDN, no data: URLs.
    for loaded in re.findall(r'<(?:link|img|script|iframe)[^>]*(?:href|src)="([^"]*)"', html):
        assert loaded.startswith("/") and not loaded.startswith("//"), loaded


@pytest.mark.parametrize(("path", "status"), [("/nowhere", 404), ("/docs/", 404)])
def test_browser_errors_get_the_html_page(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert f'<p class="status">{status}</p>' in html
    assert "Not Found" in html
    assert 'href="/static/style.css"' in html


@pytest.mark.parametrize(
    ("accept", "mimetype"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("text/html, application/json", "text/html"),
        ("application/json", "application/json"),
        ("application/json, text/html;q=0.5", "application/json"),
        ("application/problem+json", "application/problem+json"),
    ],
)
def test_outside_the_api_a_client_that_asks_for_json_gets_it(client, accept, mimetype):
    response = client.get("/apii", headers={"Accept": accept} if accept else {})
    assert response.status_code == 404
    assert response.mimetype == mimetype
    if mimetype == "application/json":
        assert response.get_json() == {"type": "Error", "content": "Not found"}


def test_page_method_not_allowed_is_html(client):
    response = client.post("/docs")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "GET" in response.headers["Allow"]


def test_stylesheet_is_served(client):
    with client.get("/static/style.css") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
