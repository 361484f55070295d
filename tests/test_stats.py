"""Traffic over time: the hourly history reads, /api/stats, the /stats page and its charts."""

import re
from datetime import date, datetime, timedelta

import pytest

from api import storage
from api.pages import charts, traffic

NOW = datetime(2026, 3, 10, 14, 25, 7)


@pytest.fixture
def at(app, monkeypatch):
    """Increment counters as if at a given moment, the way requests at that time would."""

    def increment(moment, name="hits", amount=1):
        monkeypatch.setattr(storage.clock, "utcnow", lambda: moment)
        with app.app_context():
            storage.increment_counter(name, amount)
        monkeypatch.undo()

    return increment


@pytest.fixture
def read(app):
    def call(function, *args, **kwargs):
        with app.app_context():
            return function(*args, **kwargs)

    return call


def test_hours_are_zero_filled_oldest_first_and_bounded(at, read):
    first = datetime(2026, 3, 8, 15)  # 47 hours before the current hour
    at(first - timedelta(minutes=1), amount=100)  # the hour before the window
    at(first, amount=2)
    at(first + timedelta(minutes=59, seconds=59), amount=3)
    at(NOW - timedelta(hours=5), amount=7)
    at(NOW, amount=4)
    at(NOW, name="errors", amount=9)

    series = read(storage.counts_per_hour, "hits", 48, now=NOW)

    assert len(series) == 48
    assert series[0] == (first, 5)
    assert series[-1] == (datetime(2026, 3, 10, 14), 4)
    assert series[-6] == (datetime(2026, 3, 10, 9), 7)
    assert [hour for hour, _ in series] == [first + timedelta(hours=i) for i in range(48)]
    assert sum(count for _, count in series) == 5 + 7 + 4


def test_days_sum_their_hours_and_are_bounded(at, read):
    at(datetime(2026, 2, 8, 23, 59), amount=100)  # the day before the 30-day window
    at(datetime(2026, 2, 9, 0, 0), amount=1)
    at(datetime(2026, 2, 9, 23, 30), amount=2)
    at(datetime(2026, 3, 10, 0, 5), amount=3)
    at(NOW, amount=4)

    series = read(storage.counts_per_day, "hits", 30, now=NOW)

    assert len(series) == 30
    assert series[0] == (date(2026, 2, 9), 3)
    assert series[-1] == (date(2026, 3, 10), 7)
    assert sum(count for _, count in series) == 10


def test_history_sums_to_the_total(at, read):
    for hours_ago in range(0, 200, 7):
        at(NOW - timedelta(hours=hours_ago), amount=hours_ago + 1)
    total = read(storage.read_counter, "hits")
    assert sum(count for _, count in read(storage.counts_per_day, "hits", 30, now=NOW)) == total


def test_api_stats_shows_hits_to_everyone(client, hits):
    response = client.get("/api/stats")
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "Stats"
    content = body["content"]
    assert content["totals"] == {"hits": hits()}
    assert len(content["per_hour"]) == traffic.HOURS
    assert len(content["per_day"]) == traffic.DAYS
    assert "errors" not in response.get_data(as_text=True)
    # This request is in the current hour and today.
    assert content["per_hour"][-1]["hits"] == hits()
    assert content["per_day"][-1]["hits"] == hits()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", content["per_hour"][-1]["hour"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", content["per_day"][-1]["day"])


@pytest.mark.parametrize("how", ["header", "query"])
def test_api_stats_shows_errors_with_a_valid_token(client, hits, token, how):
    client.get("/api/nothing")
    kwargs = (
        {"headers": {"Authorization": f"Bearer {token}"}}
        if how == "header"
        else {"query_string": {"token": token}}
    )
    content = client.get("/api/stats", **kwargs).get_json()["content"]
    # With the token's own requests: this one.
    assert content["totals"] == {"hits": hits(), "errors": hits("errors"), "token": 1}
    assert content["per_hour"][-1]["errors"] == hits("errors") == 1
    assert content["per_day"][-1]["errors"] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"Authorization": "Bearer rapi_wrong"}},
        {"query_string": {"token": "rapi_wrong"}},
    ],
)
def test_api_stats_refuses_a_wrong_token(client, kwargs):
    response = client.get("/api/stats", **kwargs)
    assert response.status_code == 401
    assert response.get_json() == {"type": "Error", "content": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_stats_page_draws_both_charts_without_errors_for_the_public(client, hits):
    response = client.get("/stats")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count('<svg class="bars"') == 2
    # Each chart's value axis is a column of its own beside the bars.
    assert html.count('<svg class="value-axis"') == 2
    assert f'id="total-hits">{hits():,}<' in html
    assert 'id="total-errors"' not in html
    assert "series-errors" not in html
    # One bar per hour and per day, each with its tooltip.
    assert html.count('<rect class="series-hits"') == traffic.HOURS + traffic.DAYS
    assert html.count("<title>") == traffic.HOURS + traffic.DAYS + 1  # and the page's own


def test_stats_page_shows_errors_with_a_token(client, token, hits):
    client.get("/nowhere")
    html = client.get("/stats", query_string={"token": token}).get_data(as_text=True)
    assert f'id="total-errors">{hits("errors")}<' in html
    assert html.count('<rect class="series-errors"') == traffic.HOURS + traffic.DAYS


def test_stats_page_refuses_a_wrong_token_with_the_html_error_page(client):
    response = client.get("/stats", headers={"Authorization": "Bearer rapi_wrong"})
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert '<p class="status">401</p>' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("largest", "lines"),
    [
        (0, [1]),
        (1, [1]),
        (5, [2, 4, 6]),
        (10, [5, 10]),
        (101, [50, 100, 150]),
        (4000, [1000, 2000, 3000, 4000]),
    ],
)
def test_axis_steps_are_round_and_cover_the_largest_value(largest, lines):
    assert charts.axis(largest) == lines


def test_bars_are_proportional_and_fill_the_width():
    rows = [
        {"day": date(2026, 3, d), "hits": h, "errors": e}
        for d, h, e in [(1, 0, 0), (2, 5, 1), (3, 10, 10)]
    ]
    chart = charts.daily_chart(rows, ("hits", "errors"))
    plot = charts.BOTTOM - chart.gridlines[-1].y
    heights = [bar.rects["hits"][1] for bar in chart.bars]
    assert heights == [0, plot / 2, plot]
    assert chart.bars[2].rects["errors"] == chart.bars[2].rects["hits"]
    assert chart.bars[-1].slot_x + chart.bars[-1].slot_width == pytest.approx(100)
    assert all(bar.x + bar.width <= bar.slot_x + bar.slot_width for bar in chart.bars)
    assert [tick.label for tick in chart.ticks] == ["03 Mar"]
    assert chart.total == 15
