"""In a real browser: pages work under their CSP, and another origin can call the API."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from . import servers

pytestmark = [pytest.mark.browser, pytest.mark.server]


# The page background from static/style.css; seeing it proves the stylesheet loaded.
PAPER = "rgb(253, 252, 249)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the module, with a token minted by the CLI."""
    running = servers.serve_released(tmp_path_factory.mktemp("browser"), "browser")
    yield running
    running.stop()


class ClientPage(BaseHTTPRequestHandler):
    """A page of some other site: its own origin, on loopback like the API."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_origin():
    """Serve a page from another origin; returns a function that sets its HTML and its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ClientPage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def serve(html):
        ClientPage.body = html.encode()
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield serve
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/docs", 200), ("/nowhere", 404)])
def test_pages_work_under_their_csp(browser, server, path, status):
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    response = page.goto(server.url + path)
    assert response.status == status
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("networkidle")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == PAPER
    assert page.locator("header.site a.brand").is_visible()
    # Only 404 pages may log their own failed load; nothing may be blocked.
    assert not [p for p in problems if "404" not in p], problems
    page.close()


def test_another_origin_can_call_the_api_with_a_token(browser, server, other_origin):
    """A page on another origin fetches private data: a real CORS preflight, then the call."""
    page = browser.new_page()
    page.goto(other_origin("<!doctype html><p>a client of the API"))
    result = page.evaluate(
        """async ([url, token]) => {
            const response = await fetch(url, {headers: {Authorization: 'Bearer ' + token}});
            return {status: response.status, body: await response.json()};
        }""",
        [server.url + "/api/errors", server.token],
    )
    assert result["status"] == 200
    assert result["body"]["type"] == "ErrorCount"
    page.close()

    # Both the preflight and the call reached the server. A request is logged once it is
    # answered, so the lines may trail the answers by a moment.
    server.wait_for_output('"OPTIONS /api/errors HTTP/1.1" 200')
    server.wait_for_output('"GET /api/errors HTTP/1.1" 200')


def test_pages_cannot_be_framed(browser, server, other_origin):
    page = browser.new_page()
    page.goto(other_origin(f'<!doctype html><iframe src="{server.url}/"></iframe>'))
    page.wait_for_load_state("networkidle")
    frames = page.frames[1:]
    assert frames, "the iframe itself should exist"
    # Chromium refuses to render the framed page: the frame holds no content of ours.
    assert all("REST API" not in frame.content() for frame in frames)
    page.close()
