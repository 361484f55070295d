"""Bar charts as plain geometry, for SVG drawn on the server: no JavaScript, no chart library.

Horizontal positions are percentages of the chart's width and vertical ones are pixels, so
the SVG fills any screen while its text keeps its size.
"""

import math
from dataclasses import dataclass

HEIGHT = 220
TOP = 20
BOTTOM = HEIGHT - 28
# Share of each slot a bar fills; the rest is the gap between bars.
BAR_SHARE = 0.76
# The value axis's labels are 12 px text: a digit or comma is at most this wide, and the
# column keeps this much room beside them.
LABEL_CHAR_PX = 8
LABEL_GAP_PX = 10


@dataclass
class Bar:
    x: float
    width: float
    slot_x: float
    slot_width: float
    label: str
    values: dict
    # name -> (y, height) in pixels
    rects: dict


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str


@dataclass(frozen=True)
class Gridline:
    y: float
    label: str


@dataclass
class Chart:
    title: str
    series: tuple
    bars: list
    ticks: list
    gridlines: list
    height: int = HEIGHT
    baseline: int = BOTTOM
    # The first ``done`` bars are final; ``top`` is the value axis's top.
    done: int = 0
    top: int = 1

    @property
    def total(self):
        """The sum of the first series over the whole chart."""
        return sum(bar.values[self.series[0]] for bar in self.bars)

    @property
    def axis_width(self):
        """Pixels for the value axis's column: its longest label whole, however many digits."""
        longest = max((len(line.label) for line in self.gridlines), default=1)
        return longest * LABEL_CHAR_PX + LABEL_GAP_PX


def nice_step(value):
    """The smallest of 1, 2 or 5 times a power of ten that is at least value, so axes read well."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5):
        if value <= step * power:
            return step * power
    return 10 * power


def axis(largest):
    """Gridline values: at most four round steps, the top one at or above the largest value."""
    step = nice_step(largest / 4)
    return [step * i for i in range(1, max(math.ceil(largest / step), 1) + 1)]


def no_memo(_key, build):
    return build()


def bar_chart(title, rows, key, series, label, tick, done=0, memo=no_memo):
    """Bars for rows like ``{key: when, "hits": 3, "errors": 1}``, drawn one series over another.

    ``label(when)`` names a bar for its tooltip; ``tick(index, when)`` returns an axis label
    or None for bars without one. The first ``done`` rows are final: their bars are drawn
    once per scale, through ``memo(key, build)``.
    """
    lines = axis(max((row[name] for row in rows for name in series), default=0))
    top = lines[-1]
    slot = 100 / max(len(rows), 1)
    plot = BOTTOM - TOP

    def draw(start, stop):
        bars, ticks = [], []
        for index in range(start, stop):
            row = rows[index]
            x = index * slot
            rects = {}
            for name in series:
                height = plot * row[name] / top
                rects[name] = (round(BOTTOM - height, 2), round(height, 2))
            bars.append(
                Bar(
                    x=round(x + slot * (1 - BAR_SHARE) / 2, 3),
                    width=round(slot * BAR_SHARE, 3),
                    slot_x=round(x, 3),
                    slot_width=round(slot, 3),
                    label=label(row[key]),
                    values={name: row[name] for name in series},
                    rects=rects,
                )
            )
            text = tick(index, row[key])
            if text:
                center = x + slot / 2
                anchor = "start" if center < 6 else "end" if center > 94 else "middle"
                edge = {"start": x, "end": x + slot, "middle": center}[anchor]
                ticks.append(Tick(round(edge, 3), text, anchor))
        return bars, ticks

    done_bars, done_ticks = memo((__name__, title, series, top, done), lambda: draw(0, done))
    bars, ticks = draw(done, len(rows))
    gridlines = [Gridline(round(BOTTOM - plot * value / top, 2), f"{value:,}") for value in lines]
    return Chart(
        title=title,
        series=series,
        bars=done_bars + bars,
        ticks=done_ticks + ticks,
        gridlines=gridlines,
        done=done,
        top=top,
    )


def hour_tick(_index, _count, hour):
    """The date at each midnight, the time at each noon."""
    if hour.hour == 0:
        return hour.strftime("%d %b")
    return hour.strftime("%H:00") if hour.hour == 12 else None


def day_tick(index, count, day):
    """Every seventh day, counted back from today."""
    return day.strftime("%d %b") if (count - 1 - index) % 7 == 0 else None


# Each chart's title (given the number of bars), the tooltip label's format, and its ticks.
CHARTS = {
    "hour": ("Per hour, last {} hours (UTC)", "%a %d %b %H:00 UTC", hour_tick),
    "day": ("Per day, last {} days (UTC)", "%a %d %b %Y", day_tick),
}


def series_chart(key, rows, series, done=0, memo=no_memo):
    """Hits (and errors) per UTC hour or day, from rows keyed by ``key``."""
    title, label, tick = CHARTS[key]
    count = len(rows)
    return bar_chart(
        title.format(count),
        rows,
        key,
        series,
        label=lambda when: when.strftime(label),
        tick=lambda index, when: tick(index, count, when),
        done=done,
        memo=memo,
    )


def hourly_chart(rows, series, done=0, memo=no_memo):
    """Hits (and errors) per UTC hour, with the date at each midnight and noon marked."""
    return series_chart("hour", rows, series, done, memo)


def daily_chart(rows, series, done=0, memo=no_memo):
    """Hits (and errors) per UTC day, with every seventh day counted back from today marked."""
    return series_chart("day", rows, series, done, memo)
