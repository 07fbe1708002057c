"""An inline SVG bar chart of devices losing service, week by week.

The chart is drawn on the server as plain SVG markup, so it needs no
script and no style attribute (the console's Content-Security-Policy
allows neither inline). Colours come from the console's stylesheet
through class names. The SVG carries a title and a description for
screen readers, and the page shows the same figures in a table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from fleetgate.forecast import WeekForecast

WIDTH = 720
HEIGHT = 240
MARGIN_LEFT = 52
MARGIN_BOTTOM = 28
MARGIN_TOP = 12
GAP = 2


@dataclasses.dataclass(frozen=True)
class Bar:
    """One week's bar, in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    week: WeekForecast


@dataclasses.dataclass(frozen=True)
class Tick:
    """A labelled line of the vertical axis or a week label under the bars."""

    position: float
    label: str


@dataclasses.dataclass(frozen=True)
class ExpiryChart:
    """The geometry of the chart; the template turns it into SVG."""

    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    peak: int


def lay_out(weeks: Sequence[WeekForecast]) -> ExpiryChart:
    """Place one bar per week, scaled to the busiest week."""
    if not weeks:
        raise ValueError("cannot draw an expiry chart without weeks")
    peak = max(week.devices for week in weeks)
    # A scale of at least 1 keeps an empty fleet's axis readable.
    scale_top = max(peak, 1)
    plot_width = WIDTH - MARGIN_LEFT - 8
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    plot_bottom = HEIGHT - MARGIN_BOTTOM
    slot = plot_width / len(weeks)

    bars = []
    for index, week in enumerate(weeks):
        height = plot_height * week.devices / scale_top
        bars.append(
            Bar(
                x=round(MARGIN_LEFT + index * slot + GAP / 2, 2),
                y=round(plot_bottom - height, 2),
                width=round(max(slot - GAP, 1), 2),
                height=round(height, 2),
                week=week,
            )
        )
    y_ticks = [
        Tick(round(plot_bottom - plot_height * value / scale_top, 2), str(value))
        for value in sorted({0, scale_top // 2, scale_top})
    ]
    # A label every 13 weeks: about one a quarter.
    x_ticks = [
        Tick(
            round(MARGIN_LEFT + index * slot, 2),
            weeks[index].start.strftime("%d %b"),
        )
        for index in range(0, len(weeks), 13)
    ]
    return ExpiryChart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=MARGIN_LEFT,
        plot_bottom=plot_bottom,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        peak=peak,
    )
