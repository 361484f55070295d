"""The pages people read in a browser: the index, the docs and the traffic stats.

No page is built from the request's Host: the client writes it, and a shared cache could
hand a page built from a forged one to everyone after. The examples send their requests to
``PUBLIC_URL``, or to ``$BASE`` when it is unset. Every page is ``Cache-Control: no-cache``
(``api/security.py``): the index shows the live hit count, so a cache must ask again.

``/stats`` is built in layers that change at different rates. Within one window of the series
(``Window.key``: the counters shown, the window's length and its current hour), the completed
hours and days are fixed, so whatever is drawn from them alone is kept in the window's memo:
the bars and table rows of completed hours (per scale), and the whole page as a stencil with
holes for the totals, each chart's total and its open bars and rows (per scale, ticks, and
script root). Each view draws only what fills the holes. Memo keys start with the module's
name, since the series, the traffic rows, the charts and this module share one memo.
"""

import json
import re

from flask import Blueprint, current_app, render_template, request
from markupsafe import Markup

from .. import catalogue, counting, openapi
from ..auth import SCOPES, optional_token, sent_token
from ..config import require
from ..openapi import rendered
from . import charts, links, reference, stencils, traffic
from .example_requests import SHELL_BASE

bp = Blueprint("pages", __name__)

# An http(s) URL with nothing a shell or an HTML attribute would read specially, since the
# examples paste it into both.
PUBLIC_URL_SHAPE = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~%/-]*)?")


def examples_base():
    """Where the examples on a page send their requests: PUBLIC_URL, or the shell's $BASE."""
    public_url = current_app.config["PUBLIC_URL"]
    return {"base": public_url or SHELL_BASE, "public_url": public_url}


@bp.get("/")
def index():
    """The landing page: what this is, the live hit count, and where to read more."""
    return render_template("index.html", hits=counting.current_hits(), **examples_base())


@bp.get("/docs")
def docs():
    """The reference, rendered once per app, since nothing on it changes while the app runs
    (api/openapi/rendered.py); only its links' script root comes from the request."""
    return rendered.once("docs", render_docs, "text/html", variant=request.script_root).answer()


def render_docs():
    """The reference, rendered from the OpenAPI document so that it says what the code does."""
    spec = openapi.document()
    endpoints = reference.endpoints(spec)
    kinds = list(catalogue.KINDS.values())
    page = render_template(
        "docs.html",
        info=spec["info"],
        endpoints=endpoints,
        error_statuses=reference.error_statuses(spec),
        kinds=kinds,
        public_kind=next(kind for kind in kinds if not kind.private),
        private_kind=next((kind for kind in kinds if kind.private), None),
        token_prefix=current_app.config["TOKEN_PREFIX"],
        query_tokens=current_app.config["ALLOW_QUERY_TOKEN"],
        scopes=SCOPES,
        uncounted_paths=current_app.extensions["policies"].paths(current_app, counted=False),
        uncounted_methods=sorted(counting.UNCOUNTED_METHODS),
        static_path=current_app.static_url_path,
        **examples_base(),
    )
    return page.encode()


@bp.get("/stats")
@optional_token
def stats():
    """Traffic over time as server-drawn SVG; errors only for a valid token, as in the API,
    and that token's own requests.

    Within one window of the series, only the totals and the open hour's and day's bars
    change from view to view: the page is rendered once per window and scale as a stencil
    (api/pages/stencils.py), and each view fills in its own totals and open bars.
    """
    with_errors = traffic.errors_visible()
    token = sent_token()
    report = traffic.report(include_errors=with_errors, token=token)
    series = ("hits", "errors") if with_errors else ("hits",)
    totals = dict(report["totals"])
    if token is not None:
        series += ("token",)
        totals["token"] = report["token"][1]
    window = report["window"]
    # What is kept for a window is kept per token too: each holder sees only its own.
    holder = None if token is None else token.usage_counter

    def memo(key, build):
        return window.memo((*key, *window.key, holder), build)

    drawn = [
        charts.hourly_chart(traffic.rows(report, "hour"), series, window.done_hours, memo),
        charts.daily_chart(traffic.rows(report, "day"), series, window.done_days, memo),
    ]
    parts = {f"total-{name}": f"{count:,}" for name, count in totals.items()}
    for number, chart in enumerate(drawn, 1):
        parts[f"chart-{number}-total"] = f"{chart.total:,}"
        parts[f"chart-{number}-bars"], parts[f"chart-{number}-rows"] = draw(chart, memo)

    def stencil():
        page = render_template(
            "stats.html",
            totals={name: stencils.hole(f"total-{name}") for name in totals},
            charts=[
                (chart, {part: stencils.hole(f"chart-{n}-{part}") for part in CHART_PARTS})
                for n, chart in enumerate(drawn, 1)
            ],
            with_errors=with_errors,
        )
        return stencils.Stencil(page, parts)

    shape = tuple((chart.title, chart.top, chart.done, tuple(chart.ticks)) for chart in drawn)
    if not remembered_root(request.script_root):
        return stencil().fill(parts)
    return memo((__name__, "page", with_errors, request.script_root, shape), stencil).fill(parts)


# Script roots whose /stats stencils are kept: a trusted proxy may set the root per request
# (PROXY_FIX_X_PREFIX); one or two per deployment, but not something to let grow without bound.
MAX_SCRIPT_ROOTS = 8


def remembered_root(script_root):
    """Whether pages for this script root are kept; the first MAX_SCRIPT_ROOTS are."""
    roots = current_app.extensions.setdefault("api.stats_roots", set())
    if script_root in roots:
        return True
    if len(roots) < MAX_SCRIPT_ROOTS:
        roots.add(script_root)
        return True
    return False


# What the charts call each series.
SERIES_LABELS = {"hits": "hits", "errors": "errors", "token": "your token"}

# The parts of a chart that change from view to view.
CHART_PARTS = ("total", "bars", "rows")


def draw(chart, memo):
    """A chart's bars in order and its table's rows newest first, as markup: those of
    completed hours and days drawn once per scale, the open ones on every view."""
    macros = current_app.jinja_env.get_template("_chart.html").module

    def bars(start, stop):
        part = chart.bars[start:stop]
        drawn = Markup().join(macros.bar(bar, chart) for bar in part)
        rows = Markup().join(macros.row(bar, chart) for bar in reversed(part))
        return drawn, rows

    key = (__name__, "drawn", chart.title, chart.series, chart.top, chart.done)
    done_bars, done_rows = memo(key, lambda: bars(0, chart.done))
    open_bars, open_rows = bars(chart.done, len(chart.bars))
    return done_bars + open_bars, open_rows + done_rows


def json_text(value):
    """JSON as a client sees it, with the characters it holds rather than escapes."""
    return json.dumps(value, ensure_ascii=False)


def init_app(app):
    """Mount the pages beside the API, once PUBLIC_URL is known to fit in their examples."""
    require(
        app.config,
        "PUBLIC_URL",
        lambda url: not url or PUBLIC_URL_SHAPE.fullmatch(url),
        "empty, or an http(s) URL such as https://api.example.com",
    )
    app.register_blueprint(bp)
    links.init_app(app)
    app.jinja_env.globals["series_labels"] = SERIES_LABELS
    traffic.init_app(app)
    app.add_template_filter(json_text)
