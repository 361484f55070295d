"""The pages in a real browser: Debian's Chromium, driven by Playwright, against the real server."""

import math
from datetime import timedelta

import pytest

from api import create_app, storage

from . import servers
from .conftest import mint

pytestmark = [pytest.mark.browser, pytest.mark.server]


SCREENSHOTS = servers.ROOT / "test-artifacts" / "screenshots"
WIDTHS = (1280, 390)
HEIGHT = 900
# name -> (path, the status the page itself answers with)
PAGES = {
    "index": ("/", 200),
    "docs": ("/docs", 200),
    "stats": ("/stats", 200),
    "not-found": ("/no-such-page", 404),
}


def seed_history(url, days=30):
    """A month of daily-rhythm traffic, written through the real increments, so that the
    charts have something to draw: every hour of the last two days, one hour a day before."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    now = storage.clock.utcnow()
    real_clock = storage.clock.utcnow
    try:
        with app.app_context():
            for hours_ago in range(days * 24, 0, -1):
                moment = now - timedelta(hours=hours_ago)
                hits = round(40 + 30 * math.sin(math.pi * moment.hour / 12) + hours_ago % 11)
                if hours_ago > 48:
                    if moment.hour != 12:
                        continue
                    hits *= 24
                storage.clock.utcnow = lambda moment=moment: moment
                storage.increment_counter("hits", hits)
                storage.increment_counter("errors", hits // 12)
            storage.clock.utcnow = real_clock
            token = mint(app, "browser")
            storage.db.engine.dispose()
    finally:
        storage.clock.utcnow = real_clock
    return token


@pytest.fixture
def server(start_server, tmp_path):
    url = f"sqlite:///{tmp_path}/browser.sqlite3"
    servers.run_release(servers.clean_env(DATABASE_URL=url))
    server = start_server(url)
    return server


@pytest.fixture
def seeded_server(start_server, tmp_path):
    """A server with a month of history and a token for it."""
    url = f"sqlite:///{tmp_path}/browser.sqlite3"
    servers.run_release(servers.clean_env(DATABASE_URL=url))
    token = seed_history(url)
    return start_server(url), token


class PageWatch:
    """Everything a page does wrong while it loads: console errors, script errors and
    requests that fail or answer an error, except the status the page is expected to have."""

    def __init__(self, page, url, status):
        self.problems = []
        self.url, self.status = url, status
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self.on_response)

    def on_console(self, message):
        if message.type != "error":
            return
        # Chromium reports the document's own error status on the console; that status is
        # what the page is meant to answer, and it is checked on the response itself.
        expected = f"the server responded with a status of {self.status}"
        if (
            self.status >= 400
            and message.location.get("url") == self.url
            and expected in message.text
        ):
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    def on_response(self, response):
        if response.url == self.url:
            if response.status != self.status:
                self.problems.append(f"{response.url} answered {response.status}")
        elif response.status >= 400:
            self.problems.append(f"{response.url} answered {response.status}")


def visit(browser, url, status, width):
    """Open url in a fresh page of the given width; return the page and its watcher."""
    page = browser.new_page(viewport={"width": width, "height": HEIGHT})
    watch = PageWatch(page, url, status)
    response = page.goto(url, wait_until="networkidle")
    assert response.status == status
    return page, watch


def test_pages_load_cleanly_at_both_widths(browser, seeded_server, capsys):
    server, token = seeded_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, written = [], []
    pages = {**PAGES, "stats-with-token": (f"/stats?token={token}", 200)}
    for name, (path, status) in pages.items():
        for width in WIDTHS:
            page, watch = visit(browser, server.url + path, status, width)
            shot = SCREENSHOTS / f"{name}-{width}.png"
            page.screenshot(path=shot, full_page=True)
            written.append(shot)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            if overflow > 0:
                watch.problems.append(f"{overflow}px of horizontal overflow")
            name_in_report = path.replace(token, "<token>")
            problems += [f"{name_in_report} at {width}px: {p}" for p in watch.problems]
            page.close()
    with capsys.disabled():
        print(f"\nscreenshots written to {SCREENSHOTS}/")
    assert problems == []
    assert all(shot.stat().st_size > 0 for shot in written)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_contents_link_on_docs_scrolls_to_its_section(browser, server, width):
    page, watch = visit(browser, server.url + "/docs", 200, width)
    links = page.locator("nav.toc a")
    targets = [href.removeprefix("#") for href in links.evaluate_all("a => a.map(e => e.hash)")]
    assert len(targets) >= 10
    for index, target in enumerate(targets):
        page.evaluate("window.scrollTo(0, 0)")
        links.nth(index).click()
        page.wait_for_function(f"location.hash === '#{target}'")
        placement = page.evaluate(
            """id => {
                const section = document.getElementById(id);
                const top = section.getBoundingClientRect().top;
                const atBottom = scrollY + innerHeight >= document.documentElement.scrollHeight - 1;
                const margin = parseFloat(getComputedStyle(section).scrollMarginTop);
                return {top, atBottom, margin, height: innerHeight};
            }""",
            target,
        )
        # At its scroll margin from the top, or as near as the end of the page allows.
        at_top = abs(placement["top"] - placement["margin"]) <= 2
        in_view = 0 <= placement["top"] < placement["height"]
        assert at_top or (placement["atBottom"] and in_view), (target, placement)
    assert watch.problems == []
    page.close()


# How tall /docs may be: read in one sitting, on a desktop and on a phone. It was 9,000 and
# 14,000 before tokens had lifetimes, scopes and their own use, and the metrics endpoint came:
# each took a few hundred pixels more, and the rest was cut to make room.
DOCS_HEIGHT_LIMITS = {1280: 10500, 390: 16000}


@pytest.mark.parametrize("width", WIDTHS)
def test_docs_read_in_one_sitting(browser, server, width):
    page, watch = visit(browser, server.url + "/docs", 200, width)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < DOCS_HEIGHT_LIMITS[width], f"/docs is {height} px tall at {width} px"
    assert watch.problems == []
    page.close()


def test_the_token_parameter_on_stats_stays_on_one_line(browser, server):
    page, watch = visit(browser, server.url + "/stats", 200, 390)
    lines = page.evaluate(
        """() => [...document.querySelectorAll('.note code')].map(code => {
            const rects = code.getClientRects();
            return [code.textContent, new Set([...rects].map(r => Math.round(r.top))).size];
        })"""
    )
    assert ["?token=<token>", 1] in lines, lines
    assert all(count == 1 for _, count in lines), lines
    assert watch.problems == []
    page.close()


def test_docs_fit_a_phone_without_sideways_scrolling(browser, server):
    page, watch = visit(browser, server.url + "/docs", 200, 390)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    # No single element pokes out past the right edge, even where the page clips it.
    wide = page.evaluate(
        """() => [...document.querySelectorAll('main *')]
            .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .filter(e => !e.closest('pre, table, svg'))
            .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').slice(0, 40))"""
    )
    assert wide == []
    assert watch.problems == []
    page.close()


def test_chart_labels_stay_whole_when_counts_grow_large(browser, start_server, tmp_path):
    """A busy service's axis reads 150,000,000: the label column widens instead of cutting it."""
    url = f"sqlite:///{tmp_path}/busy.sqlite3"
    servers.run_release(servers.clean_env(DATABASE_URL=url))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        storage.increment_counter("hits", 150_000_000)
        storage.db.engine.dispose()
    server = start_server(url)
    page, watch = visit(browser, server.url + "/stats", 200, 390)
    labels = page.evaluate(
        """() => Array.from(document.querySelectorAll('.grid-label')).map(t => {
            const r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
            return {text: t.textContent, inside: r.left >= s.left && r.right <= s.right};
        })"""
    )
    assert "150,000,000" in [label["text"] for label in labels]
    assert [label["text"] for label in labels if not label["inside"]] == []
    assert watch.problems == []
    page.close()
