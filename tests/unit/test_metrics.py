"""bot.observability.metrics renders the Prometheus text exposition format."""
from __future__ import annotations

import pytest

from bot.observability.metrics import Registry


def test_counters_gauges_and_histograms_render_as_prometheus_text():
    registry = Registry()
    events = registry.counter("t_events_total", "events", ["disposition"])
    depth = registry.gauge("t_depth", "depth")
    seconds = registry.histogram("t_seconds", "seconds", buckets=(0.5, 1.0))
    events.inc(2, disposition="new_finding")
    events.inc(disposition='we"ird\n')
    depth.set(3)
    seconds.observe(0.2)
    seconds.observe(0.7)
    assert registry.render().splitlines() == [
        "# HELP t_events_total events",
        "# TYPE t_events_total counter",
        't_events_total{disposition="new_finding"} 2',
        't_events_total{disposition="we\\"ird\\n"} 1',
        "# HELP t_depth depth",
        "# TYPE t_depth gauge",
        "t_depth 3",
        "# HELP t_seconds seconds",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{le="0.5"} 1',
        't_seconds_bucket{le="1"} 2',
        't_seconds_bucket{le="+Inf"} 2',
        "t_seconds_sum 0.8999999999999999",
        "t_seconds_count 2",
    ]


def test_misuse_is_refused():
    registry = Registry()
    counter = registry.counter("t_total", "t", ["kind"])
    with pytest.raises(ValueError):
        counter.inc(kind="a", extra="b")
    with pytest.raises(ValueError):
        counter.inc(-1, kind="a")
    with pytest.raises(ValueError):
        registry.counter("t_total", "again")
