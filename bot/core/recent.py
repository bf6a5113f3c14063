"""`/esm recent [DURATION] [FILTERS]`: parse the words, group the rows. The answer's Block Kit
is bot/render/recent.py.

Pure: the words come already shell-split (a quoted value is one word); the rows come from
`AuditSource.recent_summary` (one per detection × host × workspace), the instance -> cluster map
from the bot's own events table. User values only ever reach SQL as bound parameters; here they
are validated loosely (shape and length), which keeps error messages useful, not the SQL safe.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.core.catalogue import Catalogue
from bot.core.findings import UNCATEGORISED, Detection, Severity
from bot.core.text import clip

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=30)
ROW_LIMIT = 2000  # rows (detection × host × workspace) read per query
MAX_ID_CHARS = 200
MAX_DETECTION_CHARS = 200
MAX_TOKEN_SHOWN = 80

_DURATION = re.compile(r"([0-9]{1,6})([smhd])", re.ASCII | re.IGNORECASE)
_FILTER = re.compile(r"([A-Za-z_]+)\s*(>=|=)(.*)", re.ASCII | re.DOTALL)
_WORKSPACE = re.compile(r"[0-9]{1,19}", re.ASCII)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ALIASES = {"host": "instance", "instance_id": "instance", "cluster_id": "cluster", "workspace_id": "workspace"}
FILTERS = ("cluster", "instance", "detection", "category", "severity", "workspace")
BIGINT_MAX = 2**63 - 1


class RecentArgumentError(ValueError):
    """A word of `/esm recent` is wrong; the message names it."""


@dataclass(frozen=True)
class RecentQuery:
    window: timedelta = DEFAULT_WINDOW
    cluster_id: str | None = None
    instance_id: str | None = None
    detection: str | None = None
    category: str | None = None
    severity: Severity | None = None
    severity_at_least: bool = True  # `severity>=high` (True) or `severity=high` (False)
    workspace_id: int | None = None

    def filters(self) -> list[tuple[str, str]]:
        """(label, value) of every filter in use, for the answer's header line."""
        found = [("cluster", self.cluster_id), ("instance", self.instance_id), ("detection", self.detection),
                 ("category", self.category)]
        pairs = [(label, value) for label, value in found if value is not None]
        if self.severity is not None:
            pairs.append(("severity " + ("≥" if self.severity_at_least else "="), self.severity.label))
        if self.workspace_id is not None:
            pairs.append(("workspace", str(self.workspace_id)))
        return pairs

    def wants_severity(self, severity: Severity) -> bool:
        if self.severity is None:
            return True
        return severity >= self.severity if self.severity_at_least else severity == self.severity


# ---------------------------------------------------------------------------------- parsing


def parse_recent(words: Sequence[str], catalogue: Catalogue) -> RecentQuery:
    """The query the words ask for; RecentArgumentError naming the first wrong word."""
    query, seen = RecentQuery(), set()
    for word in words:
        key, query = _apply(word, query, catalogue)
        if key in seen:
            raise _error(word, f"repeats `{key}`; give each filter at most once")
        seen.add(key)
    return query


def _apply(word: Any, query: RecentQuery, catalogue: Catalogue) -> tuple[str, RecentQuery]:
    if not isinstance(word, str):
        raise RecentArgumentError(f"cannot read the word {type(word).__name__!r}")
    duration = _DURATION.fullmatch(word.strip())
    if duration:
        return "duration", replace(query, window=_window(word, *duration.groups()))
    matched = _FILTER.fullmatch(word.strip())
    if not matched:
        raise _error(word, f"is neither a duration (30m, 6h, 7d) nor a filter ({', '.join(f + '=…' for f in FILTERS)})")
    key, op, value = matched.group(1).lower(), matched.group(2), matched.group(3).strip()
    key = _ALIASES.get(key, key)
    if key not in FILTERS:
        raise _error(word, f"`{key}` is not a filter; use one of {', '.join(FILTERS)}")
    if op == ">=" and key != "severity":
        raise _error(word, "only `severity` takes `>=`; the other filters take `=`")
    if not value:
        raise _error(word, f"gives `{key}` no value")
    return key, _FILTER_SETTERS[key](word, op, value, query, catalogue)


def _window(word: str, amount: str, unit: str) -> timedelta:
    window = timedelta(**{_UNITS[unit.lower()]: int(amount)})
    if window <= timedelta(0):
        raise _error(word, "is not a duration longer than zero")
    if window > MAX_WINDOW:
        raise _error(word, f"is longer than the {window_label(MAX_WINDOW)} `/esm recent` can look back")
    return window


def _set_id(field_name: str) -> Any:
    def setter(word: str, op: str, value: str, query: RecentQuery, catalogue: Catalogue) -> RecentQuery:
        if len(value) > MAX_ID_CHARS or not all(c.isprintable() and not c.isspace() for c in value):
            raise _error(word, f"is not an id: at most {MAX_ID_CHARS} characters, no spaces or control characters")
        return replace(query, **{field_name: value})  # type: ignore[arg-type]  # an id field: str

    return setter


def _set_detection(word: str, op: str, value: str, query: RecentQuery, catalogue: Catalogue) -> RecentQuery:
    name = " ".join(value.split())
    if len(name) > MAX_DETECTION_CHARS or not all(c.isprintable() for c in name):
        raise _error(word, f"is not a detection name: at most {MAX_DETECTION_CHARS} characters, no control characters")
    entry = catalogue.entry_for(name)  # the catalogue's spelling; unknown names are searched as given
    return replace(query, detection=entry.name if entry is not None else name)


def _set_category(word: str, op: str, value: str, query: RecentQuery, catalogue: Catalogue) -> RecentQuery:
    options = list(dict.fromkeys([*catalogue.categories(), UNCATEGORISED]))
    wanted = " ".join(value.split()).casefold()
    exact = [c for c in options if c.casefold() == wanted]
    partial = exact or [c for c in options if wanted in c.casefold()]
    if len(partial) == 1:
        return replace(query, category=partial[0])
    problem = f"matches {_listing(partial)}" if partial else "matches no category"
    raise _error(word, f"{problem}; the categories are {_listing(options)}")


def _set_severity(word: str, op: str, value: str, query: RecentQuery, catalogue: Catalogue) -> RecentQuery:
    try:
        severity = Severity.parse(value)
    except ValueError:
        raise _error(word, f"names no severity; use one of {', '.join(s.label for s in Severity)}") from None
    return replace(query, severity=severity, severity_at_least=op == ">=")


def _set_workspace(word: str, op: str, value: str, query: RecentQuery, catalogue: Catalogue) -> RecentQuery:
    if not _WORKSPACE.fullmatch(value) or int(value) > BIGINT_MAX:
        raise _error(word, "is not a workspace id (digits only)")
    return replace(query, workspace_id=int(value))


_FILTER_SETTERS = {
    "cluster": _set_id("cluster_id"),
    "instance": _set_id("instance_id"),
    "detection": _set_detection,
    "category": _set_category,
    "severity": _set_severity,
    "workspace": _set_workspace,
}


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def shown_token(word: str) -> str:
    """A word as an error message quotes it: one line, printable, bounded, in backticks."""
    printable = "".join(c if c.isprintable() else "?" for c in word).replace("`", "ˋ")
    return f"`{clip(printable, MAX_TOKEN_SHOWN)}`"


def _error(word: str, problem: str) -> RecentArgumentError:
    return RecentArgumentError(f"{shown_token(word)} {problem}")


def window_label(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds > (86400 if unit == "d" else 0):  # a day reads "24h"
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ------------------------------------------------------------------------------- summarising


@dataclass(frozen=True)
class RecentRow:
    """One row of the source's aggregate: a detection on one host in one workspace."""

    detection: str
    instance_id: str | None
    workspace_id: str | None
    events: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class RecentGroup:
    detection: Detection
    cluster_id: str | None  # the cluster, when the bot knows the hosts' cluster
    instance_id: str | None  # the host, when it does not (None: the row named no host)
    events: int
    hosts: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class RecentSummary:
    groups: tuple[RecentGroup, ...] = ()
    hidden: int = 0  # liveness events (catalogue `ignore`) left out
    truncated: bool = False  # the source returned as many rows as it was allowed to
    row_limit: int = ROW_LIMIT
    hosts: int = 0  # distinct hosts across the groups

    @property
    def events(self) -> int:
        return sum(g.events for g in self.groups)


@dataclass
class _Acc:
    detection: Detection
    cluster_id: str | None
    instance_id: str | None
    events: int = 0
    hosts: set[str | None] = field(default_factory=set)
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def add(self, row: RecentRow) -> None:
        self.events += max(int(row.events), 0)
        self.hosts.add(row.instance_id or None)
        first, last = _aware(row.first_seen), _aware(row.last_seen)
        self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
        self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    def group(self) -> RecentGroup:
        assert self.first_seen is not None and self.last_seen is not None
        return RecentGroup(self.detection, self.cluster_id, self.instance_id, self.events, len(self.hosts),
                           self.first_seen, self.last_seen)


def summarise(
    rows: Sequence[RecentRow],
    query: RecentQuery,
    catalogue: Catalogue,
    cluster_of: Mapping[str, str],
    *,
    row_limit: int = ROW_LIMIT,
) -> RecentSummary:
    """Rows filtered by category, severity and cluster, grouped by (detection, cluster or host),
    newest first. Liveness detections are counted, not shown, unless asked for by name."""
    groups: dict[tuple[str, str, str | None], _Acc] = {}
    hidden = 0
    for row in rows:
        detection = catalogue.lookup(row.detection)
        if detection.ignore and query.detection is None:
            hidden += max(int(row.events), 0)
            continue
        cluster = cluster_of.get(row.instance_id) if row.instance_id else None
        if not _wanted(row, detection, cluster, query, catalogue):
            continue
        key = (detection.name, "cluster", cluster) if cluster else (detection.name, "host", row.instance_id or None)
        if key not in groups:
            groups[key] = _Acc(detection, cluster, None if cluster else (row.instance_id or None))
        groups[key].add(row)
    ordered = sorted((acc.group() for acc in groups.values()), key=_newest_first)
    hosts = len(set().union(*(acc.hosts for acc in groups.values())))
    return RecentSummary(tuple(ordered), hidden, len(rows) >= row_limit, row_limit, hosts)


def _wanted(row: RecentRow, detection: Detection, cluster: str | None, query: RecentQuery, catalogue: Catalogue) -> bool:
    if query.cluster_id is not None and cluster != query.cluster_id:
        return False
    if not query.wants_severity(detection.severity):
        return False
    return query.category is None or in_category(row.detection, query.category, catalogue)


def in_category(name: str, category: str, catalogue: Catalogue) -> bool:
    entry = catalogue.entry_for(name)
    if entry is None:
        return category == UNCATEGORISED
    return entry.in_category(category)


def _newest_first(group: RecentGroup) -> tuple[float, int, str, str]:
    return (-group.last_seen.timestamp(), -group.events, group.detection.name, group.cluster_id or group.instance_id or "")


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
