"""Process metrics in the Prometheus text exposition format (version 0.0.4), by hand.

One registry of named counters, gauges and histograms, each with optional labels; `render()`
writes them for `GET /metrics`. Pure Python, no I/O: the places that already count things
(the pipeline's SyncReport, the outbox worker, the dispatcher, the enricher, the Slack adapter)
increment the module-level metrics below. Values only ever grow within a process, so tests
compare before and after.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]


def _labels(names: Sequence[str], values: dict[str, object]) -> Labels:
    if set(values) != set(names):
        raise ValueError(f"labels {sorted(values)} do not match {sorted(names)}")
    return tuple((name, str(values[name])) for name in names)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        self._values: dict[Labels, float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = _labels(self.label_names, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        return self._values.get(_labels(self.label_names, labels), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_label_text(k)} {_number(v)}" for k, v in sorted(self._values.items())]


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()):
        super().__init__(name, help_text, labels)
        self._values: dict[Labels, float] = {} if labels else {(): 0.0}

    def set(self, value: float, **labels: object) -> None:
        with self._lock:
            self._values[_labels(self.label_names, labels)] = float(value)

    def value(self, **labels: object) -> float:
        return self._values.get(_labels(self.label_names, labels), 0.0)

    def samples(self) -> list[str]:
        return [f"{self.name}{_label_text(k)} {_number(v)}" for k, v in sorted(self._values.items())]


DEFAULT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Iterable[float] = DEFAULT_BUCKETS):
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self.count += 1
            self.sum += value
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1

    def samples(self) -> list[str]:
        lines = [
            f"{self.name}_bucket{_label_text((), (('le', _number(bound)),))} {count}"
            for bound, count in zip(self.buckets, self._counts)
        ]
        return lines + [f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self.add(Counter(name, help_text, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self.add(Gauge(name, help_text, labels))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
        return self.add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n"


REGISTRY = Registry()

EVENTS = REGISTRY.counter(
    "esm_events_total", "Capsule8 events stored, by disposition (new_finding, repeat, ignored, suppressed)",
    ["disposition"],
)
EVENTS_FETCHED = REGISTRY.counter("esm_events_fetched_total", "Audit rows read from the audit source (before de-duplication)")
FINDINGS_POSTED = REGISTRY.counter("esm_findings_posted_total", "Finding parent messages posted to Slack")
SLACK_MESSAGES = REGISTRY.counter("esm_slack_messages_total", "Outbox items delivered to Slack, by kind", ["kind"])
SUPPRESSED = REGISTRY.counter("esm_suppressed_total", "Events hidden by a benign suppression")
ACTIONS = REGISTRY.counter("esm_actions_total", "Response actions (buttons) by action and outcome", ["action", "outcome"])
SLACK_ERRORS = REGISTRY.counter(
    "esm_slack_errors_total", "Failed Slack Web API calls, by method and error", ["method", "error"]
)
SLACK_RETRIES = REGISTRY.counter("esm_slack_retries_total", "Outbox items scheduled for another attempt after a Slack failure")
DATABRICKS_ERRORS = REGISTRY.counter(
    "esm_databricks_errors_total", "Failed or timed-out Databricks lookups (API or warehouse), by lookup", ["lookup"]
)
DATABRICKS_LOOKUPS = REGISTRY.counter(
    "esm_databricks_lookups_total", "Databricks lookups made by the enricher (cache misses), by lookup", ["lookup"]
)
SYNCS = REGISTRY.counter("esm_syncs_total", "Syncs run, by result (ok, error)", ["result"])
SYNC_SECONDS = REGISTRY.histogram("esm_sync_duration_seconds", "Wall time of one sync")
OUTBOX_DEPTH = REGISTRY.gauge("esm_outbox_depth", "Slack outbox items waiting to be sent (read at scrape time)")
WEBHOOKS = REGISTRY.counter("esm_webhooks_total", "Databricks SQL alert webhooks accepted")
DEGRADED = REGISTRY.gauge("esm_degraded_parts", "Parts of the bot (state store, audit source, Slack) failing longer than ESM_DEGRADED_AFTER")
SWEEPS = REGISTRY.counter("esm_late_sweeps_total", "Late-arrival sweeps run")
SWEEP_ROWS = REGISTRY.counter("esm_late_sweep_rows_read_total", "Rows the late-arrival sweeps read (ids, then whole rows)")
SWEEP_SECONDS = REGISTRY.histogram("esm_late_sweep_duration_seconds", "Wall time of one late-arrival sweep")
LATE_ROWS = REGISTRY.counter("esm_late_rows_total", "Rows the late-arrival sweep stored: they landed after newer rows were read")
CONNECTIONS_OPEN = REGISTRY.gauge("esm_connections_open", "HTTP connections open now (at most ESM_MAX_CONNECTIONS)")
CONNECTIONS_CLOSED = REGISTRY.counter(
    "esm_connections_closed_total",
    "HTTP connections the server closed: header_timeout (headers not complete within ESM_HEADER_TIMEOUT), "
    "evicted (waiting for headers when the limit was reached), refused (every connection busy)", ["reason"])


def render() -> str:
    return REGISTRY.render()


__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Registry", "REGISTRY", "render"]
