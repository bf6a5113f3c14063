"""Benign suppressions: a scoped, expiring statement that some events of one detection are benign.

A suppressed event is still stored and counted; it is only not posted. Suppressions come from
two places: responders (the Mark benign modal, source "slack") and rules/benign.yml (source
"rules", enabled entries only). Both are the same value here and match the same way.

Pure: imports only yaml, the standard library and bot.core.*.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

import yaml

from bot.core.catalogue import normalise_name
from bot.core.events import RowError, parse_audit_row, parse_time
from bot.core.findings import LINEAGE_KEYS, Finding, lineage_of

SCOPE_KINDS = ("instance", "cluster", "workspace", "everywhere")
SOURCES = ("slack", "rules")
MAX_PATTERN_LINES = 20
MAX_GLOB_CHARS = 500
MAX_REASON_CHARS = 1000
MAX_DATE_AHEAD = timedelta(days=366)
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
EXPIRY_CHOICES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DATE_CHOICE = "date"
NEVER_CHOICE = "never"


class SuppressionError(ValueError):
    """A suppression (or its input) that cannot be used; the message names the field or line."""


@dataclass(frozen=True)
class Scope:
    """Where a suppression applies: every id that is set must equal the event's."""

    workspace_id: str | None = None
    cluster_id: str | None = None
    instance_id: str | None = None

    @property
    def kind(self) -> str:
        """The narrowest constraint: instance, cluster, workspace or everywhere."""
        if self.instance_id:
            return "instance"
        if self.cluster_id:
            return "cluster"
        return "workspace" if self.workspace_id else "everywhere"

    @property
    def value(self) -> str | None:
        return {"instance": self.instance_id, "cluster": self.cluster_id, "workspace": self.workspace_id}.get(self.kind)

    def describe(self) -> str:
        return "everywhere" if self.kind == "everywhere" else f"{self.kind} {self.value}"

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("workspace_id", self.workspace_id), ("cluster_id", self.cluster_id),
                                  ("instance_id", self.instance_id)) if v}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Scope":
        return cls(**{k: str(data[k]) for k in ("workspace_id", "cluster_id", "instance_id") if data.get(k)})


def scope_for(kind: str, finding: Finding) -> Scope:
    """The scope a responder means by 'this instance / cluster / workspace / everywhere'."""
    workspace = finding.first_event.workspace_id or None
    if kind == "instance":
        instance = finding.first_event.instance_id
        if not instance:
            raise SuppressionError("scope: this finding has no instance id")
        return Scope(workspace_id=workspace, instance_id=instance)
    if kind == "cluster":
        if not finding.cluster_id:
            raise SuppressionError("scope: this finding's cluster is not known")
        return Scope(workspace_id=workspace, cluster_id=finding.cluster_id)
    if kind == "workspace":
        if not workspace:
            raise SuppressionError("scope: this finding has no workspace id")
        return Scope(workspace_id=workspace)
    if kind == "everywhere":
        return Scope()
    raise SuppressionError(f"scope: unknown scope {kind[:40]!r}; expected one of {', '.join(SCOPE_KINDS)}")


@dataclass(frozen=True)
class Suppression:
    id: str  # "b<n>" for Slack-made ones, the YAML slug for rules
    detection: str
    scope: Scope
    match: Mapping[str, tuple[str, ...]]  # field -> globs; all fields, any glob
    reason: str
    created_by: str
    created_at: datetime | None = None
    expires_at: datetime | None = None
    finding_key: str | None = None  # the finding it was made from (its count shows there)
    source: str = "slack"

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", MappingProxyType({k: tuple(v) for k, v in self.match.items()}))

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class SuppressionExists(Exception):
    """An active suppression already hides the same events (same detection, scope and
    patterns): the store keeps one, and `existing` is it."""

    def __init__(self, existing: Suppression):
        super().__init__(f"suppression {existing.id} already hides these events")
        self.existing = existing


def same_events_key(s: Suppression) -> str:
    """What a suppression hides, as a digest: two with the same detection (as matching compares
    names), scope and patterns (in any order) hide the same events, whatever their reason or
    expiry. The store allows one active suppression per key."""
    document = {
        "detection": normalise_name(s.detection),
        "scope": s.scope.to_json(),
        "match": {name: sorted(set(globs)) for name, globs in s.match.items()},
    }
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ------------------------------------------------------------------------------- matching


def matches(suppression: Suppression, item: Any, now: datetime) -> bool:
    """Does the suppression hide this classified event (bot.core.decide.Classified) at `now`?"""
    if not suppression.active(now):
        return False
    if normalise_name(item.detection.name) != normalise_name(suppression.detection):
        return False
    return _in_scope(suppression.scope, item) and all(
        _field_matches(field_value(item.row, name), globs) for name, globs in suppression.match.items()
    )


def first_match(suppressions: Iterable[Suppression], item: Any, now: datetime) -> Suppression | None:
    return next((s for s in suppressions if matches(s, item, now)), None)


def _in_scope(scope: Scope, item: Any) -> bool:
    row = item.row
    cluster = item.cluster_id or row.cluster_id
    wanted = ((scope.workspace_id, row.workspace_id), (scope.cluster_id, cluster), (scope.instance_id, row.instance_id))
    return all(want is None or want == str(have or "") for want, have in wanted)


def field_value(row: Any, name: str) -> str | None:
    """origin and lineage names through lineage_of (every key spelling); else a raw param."""
    if name == "origin" or name in LINEAGE_KEYS:
        value = getattr(lineage_of(row), name)
        if isinstance(value, tuple):
            value = " > ".join(value) if value else None
        return value or None
    raw = row.request_params.get(name)
    return None if raw in (None, "") else str(raw)


def _field_matches(value: str | None, globs: Sequence[str]) -> bool:
    return value is not None and any(fnmatchcase(value, glob) for glob in globs)


# -------------------------------------------------------------------------- modal input


def parse_patterns(text: str | None) -> dict[str, tuple[str, ...]]:
    """One `field=glob` per line (blank lines and `# comments` skipped); a field given on
    several lines matches when any of its globs does. Errors name the line."""
    found: dict[str, list[str]] = {}
    lines = (text or "").splitlines()
    meaningful = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]
    if len(meaningful) > MAX_PATTERN_LINES:
        raise SuppressionError(f"at most {MAX_PATTERN_LINES} pattern lines, got {len(meaningful)}")
    for number, line in meaningful:
        name, glob = _pattern_line(number, line)
        found.setdefault(name, []).append(glob)
    return {name: tuple(globs) for name, globs in found.items()}


def _pattern_line(number: int, line: str) -> tuple[str, str]:
    name, sep, glob = line.partition("=")
    name, glob = name.strip(), glob.strip()
    if not sep:
        raise SuppressionError(f"line {number}: expected field=glob, e.g. file_path=/etc/ssl/certs/*")
    if not FIELD_NAME.match(name):
        raise SuppressionError(f"line {number}: {name[:40]!r} is not a field name (letters, digits, _ . -)")
    if not glob:
        raise SuppressionError(f"line {number}: the glob after '{name}=' is empty")
    if len(glob) > MAX_GLOB_CHARS:
        raise SuppressionError(f"line {number}: the glob is longer than {MAX_GLOB_CHARS} characters")
    return name, glob


def format_patterns(match: Mapping[str, Sequence[str]]) -> str:
    return "\n".join(f"{name}={glob}" for name, globs in match.items() for glob in globs)


def parse_expiry(
    choice: str | None, now: datetime, *, on_date: date | str | None = None, confirm_never: bool = False
) -> datetime | None:
    """1h / 24h / 7d / 30d from now; "date": the end of that UTC day (today or later, within a
    year); "never" only with an explicit confirmation. Returns None for never."""
    choice = (choice or "").strip()
    picked = _date(on_date)
    if picked is not None and choice != DATE_CHOICE:
        raise SuppressionError("a date is picked but the expiry is not 'until a date': choose one")
    if choice in EXPIRY_CHOICES:
        return now + EXPIRY_CHOICES[choice]
    if choice == DATE_CHOICE:
        return _until_date(picked, now)
    if choice == NEVER_CHOICE:
        if not confirm_never:
            raise SuppressionError("'never' hides these events for good: tick the confirmation to choose it")
        return None
    raise SuppressionError(f"unknown expiry {choice[:20]!r}; expected 1h, 24h, 7d, 30d, date or never")


def _date(value: date | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise SuppressionError(f"{str(value)[:20]!r} is not a date (YYYY-MM-DD)") from None


def _until_date(picked: date | None, now: datetime) -> datetime:
    if picked is None:
        raise SuppressionError("pick the date the suppression ends")
    end = datetime.combine(picked + timedelta(days=1), time(0), tzinfo=timezone.utc)
    if end <= now:
        raise SuppressionError(f"{picked.isoformat()} is in the past")
    if end - now > MAX_DATE_AHEAD:
        raise SuppressionError("a date more than a year ahead: choose 'never' (with its confirmation) instead")
    return end


def parse_reason(text: str | None) -> str:
    reason = " ".join((text or "").split())
    if not reason:
        raise SuppressionError("a reason is required: it is shown next to every suppressed count")
    if len(reason) > MAX_REASON_CHARS:
        raise SuppressionError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    return reason


# ------------------------------------------------------------------------------- display


def describe(s: Suppression, count: int | None = None) -> str:
    """One mrkdwn-free line: id, detection, scope, patterns, expiry, matches, reason."""
    patterns = "; ".join(f"{k}={'|'.join(v)}" for k, v in s.match.items()) or "any event"
    expiry = "never expires" if s.expires_at is None else f"expires {s.expires_at.strftime('%Y-%m-%d %H:%M UTC')}"
    counted = "" if count is None else f" · matched {count}"
    return f"{s.id} · {s.detection} · {s.scope.describe()} · {patterns} · {expiry}{counted} · {s.source}: {s.reason}"


# ----------------------------------------------------------------------- rules/benign.yml

ENTRY_FIELDS = frozenset({"id", "enabled", "detection", "scope", "match", "expires", "reason", "examples"})
SCOPE_FIELDS = frozenset({"workspace_id", "cluster_id", "instance_id"})
EXAMPLE_FIELDS = frozenset({"matches", "row"})
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class BenignExample:
    matches: bool
    row: Mapping[str, Any]


@dataclass(frozen=True)
class BenignRule:
    suppression: Suppression
    enabled: bool
    examples: tuple[BenignExample, ...] = field(default=())


def load_benign_rules(path: str | os.PathLike[str]) -> list[Suppression]:
    """The enabled entries of rules/benign.yml; a missing file means none."""
    source = os.fspath(path)
    if not os.path.exists(source):
        return []
    try:
        with open(source, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise SuppressionError(f"{source}: cannot be read: {exc}") from exc
    return parse_benign_rules(data, os.path.basename(source))


def parse_benign_rules(data: Any, source: str = "benign.yml") -> list[Suppression]:
    """Validate every entry; return the enabled ones as suppressions."""
    return [rule.suppression for rule in parse_benign_entries(data, source) if rule.enabled]


def parse_benign_entries(data: Any, source: str = "benign.yml") -> list[BenignRule]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise SuppressionError(f"{source}: must be a list of suppressions, got {type(data).__name__}")
    rules, seen = [], set()
    for index, raw in enumerate(data):
        rule = _rule(raw, source, index)
        if rule.suppression.id in seen:
            raise SuppressionError(f"{source}: entry {index} ({rule.suppression.id!r}): field 'id' is used twice")
        seen.add(rule.suppression.id)
        rules.append(rule)
    return rules


def _rule(raw: Any, source: str, index: int) -> BenignRule:
    where = f"{source}: entry {index}"
    if not isinstance(raw, Mapping):
        raise SuppressionError(f"{where}: must be a mapping")
    slug = raw.get("id")
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise SuppressionError(f"{where}: field 'id' must be a lowercase slug (a-z 0-9 . _ -)")
    where = f"{where} ({slug!r})"

    def bad(name: str, problem: str) -> SuppressionError:
        return SuppressionError(f"{where}: field '{name}' {problem}")

    unknown = sorted(set(raw) - ENTRY_FIELDS)
    if unknown:
        raise bad(unknown[0], f"is not a known field; expected one of {sorted(ENTRY_FIELDS)}")
    if not isinstance(raw.get("enabled"), bool):
        raise bad("enabled", "must be true or false")
    suppression = Suppression(
        id=slug,
        detection=_text(raw, "detection", bad),
        scope=_rule_scope(raw.get("scope"), bad),
        match=_rule_match(raw.get("match"), bad),
        reason=_text(raw, "reason", bad),
        created_by=f"rules/{source}",
        expires_at=_rule_expiry(raw.get("expires"), bad),
        source="rules",
    )
    return BenignRule(suppression, raw["enabled"], _rule_examples(raw.get("examples"), suppression.detection, bad))


def _text(raw: Mapping[str, Any], name: str, bad: Any) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad(name, "is missing" if value is None else "must be non-empty text")
    return " ".join(value.split())


def _rule_scope(value: Any, bad: Any) -> Scope:
    if value is None:
        return Scope()
    if not isinstance(value, Mapping):
        raise bad("scope", "must be a mapping (empty for everywhere)")
    for key, item in value.items():
        if key not in SCOPE_FIELDS:
            raise bad(f"scope.{key}", f"is not a known field; expected one of {sorted(SCOPE_FIELDS)}")
        if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
            raise bad(f"scope.{key}", "must be a non-empty id")
    return Scope(**{k: str(v).strip() for k, v in value.items()})


def _rule_match(value: Any, bad: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise bad("match", "must be a mapping of field: glob (or list of globs)")
    found = {}
    for name, globs in value.items():
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise bad(f"match.{name}", "is not a field name")
        items = [globs] if isinstance(globs, str) else globs
        if not isinstance(items, list) or not items or not all(isinstance(g, str) and g for g in items):
            raise bad(f"match.{name}", "must be a glob or a non-empty list of globs")
        found[name] = tuple(items)
    return found


def _rule_expiry(value: Any, bad: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime) and value.tzinfo is None or isinstance(value, str) and not re.search(r"(Z|[+-]\d\d:?\d\d)$", value.strip()):
        raise bad("expires", "must be null or an ISO-8601 timestamp with a zone")
    try:
        return parse_time(value, "expires")
    except RowError:
        raise bad("expires", "must be null or an ISO-8601 timestamp with a zone") from None


def _rule_examples(value: Any, detection: str, bad: Any) -> tuple[BenignExample, ...]:
    if not isinstance(value, list) or not value:
        raise bad("examples", "is missing" if value is None else "must be a non-empty list")
    examples = tuple(_rule_example(raw, f"examples[{i}]", bad) for i, raw in enumerate(value))
    if {e.matches for e in examples} != {True, False}:
        raise bad("examples", "needs at least one example that matches and one that does not")
    return examples


def _rule_example(raw: Any, label: str, bad: Any) -> BenignExample:
    if not isinstance(raw, Mapping):
        raise bad(label, "must be a mapping with 'matches' and 'row'")
    unknown = sorted(set(raw) - EXAMPLE_FIELDS)
    if unknown:
        raise bad(f"{label}.{unknown[0]}", "is not a known field")
    if not isinstance(raw.get("matches"), bool):
        raise bad(f"{label}.matches", "must be true or false")
    try:
        parse_audit_row(raw.get("row"))
    except RowError as exc:
        raise bad(f"{label}.row", f"is not a usable audit row: {exc}") from None
    return BenignExample(raw["matches"], MappingProxyType(dict(raw["row"])))


def check_benign_examples(rules: Iterable[BenignRule]) -> list[str]:
    """Every example whose row does not match (or matches) as it says, as if the entry were
    enabled; one line each. Shared by the test suite and `esm-bot rules check`."""
    from bot.core.decide import Classified
    from bot.core.findings import Detection, Severity

    problems = []
    for rule in rules:
        s = replace(rule.suppression, expires_at=None)
        for index, example in enumerate(rule.examples):
            row = parse_audit_row(example.row)
            item = Classified(row, Detection(row.action_name, "", Severity.INFO, "", ""), row.cluster_id)
            if matches(s, item, datetime.now(timezone.utc)) is not example.matches:
                problems.append(f"{s.id} example {index}: expected matches={example.matches}")
    return problems
