"""The 7-day chart of events per detection, as a PNG (matplotlib, Agg: no display needed).

Pure: counts in, bytes out; no file is written. It takes a fraction of a second of CPU, so
callers run it in a worker thread (asyncio.to_thread), never on the event loop.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, timedelta

MAX_SERIES = 8  # more detections than this are summed as "other"


def days_ending(last: date, count: int = 7) -> list[str]:
    return [(last - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def series(rows: Sequence[tuple[str, str, int]], days: Sequence[str]) -> dict[str, list[int]]:
    """(day, detection, events) rows as one list of daily counts per detection, the busiest
    detections first; beyond MAX_SERIES they are summed into "other"."""
    per: dict[str, list[int]] = {}
    index = {day: i for i, day in enumerate(days)}
    for day, detection, events in rows:
        if day in index:
            per.setdefault(detection, [0] * len(days))[index[day]] += events
    ranked = sorted(per.items(), key=lambda item: (-sum(item[1]), item[0]))
    kept = dict(ranked[:MAX_SERIES])
    if len(ranked) > MAX_SERIES:
        kept["other"] = [sum(values[i] for _, values in ranked[MAX_SERIES:]) for i in range(len(days))]
    return kept


def events_chart_png(days: Sequence[str], counts: dict[str, list[int]], title: str = "Events per detection, last 7 days") -> bytes:
    """A stacked bar chart: one bar per day, one colour per detection."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot()
    labels = [day[5:] for day in days]  # MM-DD
    bottom = [0] * len(days)
    for detection, values in counts.items():
        axes.bar(labels, values, bottom=bottom, label=detection[:40])
        bottom = [b + v for b, v in zip(bottom, values)]
    if not counts:
        axes.text(0.5, 0.5, "no events", transform=axes.transAxes, ha="center", va="center", color="#616061")
    axes.set_title(title, fontsize=11)
    axes.set_ylabel("events")
    axes.spines[["top", "right"]].set_visible(False)
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if counts:
        axes.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
