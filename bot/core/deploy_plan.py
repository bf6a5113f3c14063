"""`esm-bot deploy` as pure data: the Databricks objects esm-bot wants, and the plan to get there.

Per category of the detection catalogue (and one for ClamAV infections, one for detections the
catalogue does not know) esm-bot keeps, with the current SQL alerts (AlertsV2, `/api/2.0/alerts`),
one workspace object:

- an **alert** (Kind.ALERT_V2) holding its own SQL over `system.access.audit` (the category's
  detection names, benign rules that SQL can express left out, a lookback matched to the
  schedule), its evaluation (triggered when the `matching_events` column is > 0; an empty result
  is OK; never a notification on OK; re-notified once per run while rows keep coming), its
  subscription to the webhook destination, and its own quartz-cron schedule.

Where a workspace has no AlertsV2, the legacy API (`/api/2.0/sql/alerts`) needs three objects
per category instead: a SQL **query** (Kind.QUERY), a legacy **alert** on it (Kind.ALERT), and a
**job** (Kind.JOB) that evaluates the alert on the schedule and notifies the destination through
the Jobs API's `sql_task.alert`.

Either way there is one generic-webhook **notification destination** pointing at
`<public url>/webhooks/dbsql` with the bot's Basic-auth credentials. Every object's name starts
with MARKER ("[esm-bot] "), and queries and jobs also carry an `esm-bot` tag: the name prefix is
what deploy and `--remove` use to recognise their own objects, nothing else is ever touched.

Migration: the objects of the API not chosen are not wanted, so the diff deletes them. A legacy
query, alert or job whose section has a v2 alert of the same name (and the other way round) is
deleted *after* that alert exists: its Step names the replacement, which the applier checks.

Desired objects are JSON bodies in the API's own field names; references to other objects (an
alert's query, a job's alert and destination) are `Ref`s, resolved to ids when the plan is
diffed (against what exists) and when it is applied (against what was just created).

The SQL is stored in Databricks and run by the warehouse, never by the bot; the names in it are
the catalogue's own and are still quoted as Databricks string literals (backslash escapes).

Pure: imports only the standard library and bot.core.*.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from bot.core.catalogue import Catalogue
from bot.core.events import CAPSULE8_SERVICE, CLAMAV_CLEAN_SCAN, CLAMAV_INFECTION, CLAMAV_SERVICE
from bot.core.queries import sql_literal
from bot.core.suppressions import Suppression

MARKER = "[esm-bot] "
TAG = "esm-bot"  # query tag, and job tag key
TAG_VALUE = "managed"
MANAGED_NOTE = "Managed by esm-bot deploy: edits here are overwritten by the next deploy."
WEBHOOK_PATH = "/webhooks/dbsql"
CLAMAV_TITLE = "ClamAV Infections"
UNCATEGORISED_TITLE = "Uncategorised Capsule8 Detections"
COUNT_COLUMN = "matching_events"
ROW_LIMIT = 1000
MAX_NAME = 255


class Kind(StrEnum):
    DESTINATION = "destination"
    QUERY = "query"  # legacy: the query a legacy alert evaluates
    ALERT = "legacy alert"  # /api/2.0/sql/alerts
    JOB = "job"  # legacy: the job that schedules a legacy alert
    ALERT_V2 = "alert"  # /api/2.0/alerts: query, evaluation, subscription and schedule in one


LEGACY_KINDS = (Kind.QUERY, Kind.ALERT, Kind.JOB)
APPLY_ORDER = (Kind.DESTINATION, Kind.QUERY, Kind.ALERT, Kind.JOB, Kind.ALERT_V2)  # what refers to what


class Api(StrEnum):
    """Which SQL alerts API a deploy uses."""

    V2 = "v2"  # AlertsV2: /api/2.0/alerts
    LEGACY = "legacy"  # /api/2.0/sql/queries + /api/2.0/sql/alerts + a job per alert


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"


@dataclass(frozen=True)
class Schedule:
    """How often each alert is evaluated, and how far back its query looks.

    The lookback is longer than the interval on purpose: audit rows can land late, and the bot
    de-duplicates on event_id, so re-seeing a row costs nothing while missing one costs a finding.
    """

    every_minutes: int = 10
    lookback: timedelta = timedelta(hours=1)
    timezone_id: str = "UTC"

    def __post_init__(self) -> None:
        if not 1 <= self.every_minutes <= 60 or 60 % self.every_minutes:
            raise ValueError("the alert schedule must divide an hour: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60 minutes")
        if self.lookback < timedelta(minutes=self.every_minutes):
            raise ValueError("the query lookback must be at least the schedule interval")

    @classmethod
    def every(cls, interval: timedelta) -> "Schedule":
        """The schedule for an interval such as ESM_ALERT_SCHEDULE (a whole number of minutes)."""
        seconds = int(interval.total_seconds())
        if seconds % 60:
            raise ValueError("the alert schedule must be a whole number of minutes")
        minutes = seconds // 60
        return cls(every_minutes=minutes, lookback=max(timedelta(hours=1), timedelta(minutes=minutes)))

    @property
    def quartz_cron(self) -> str:
        if self.every_minutes == 60:
            return "0 0 * * * ?"
        return f"0 0/{self.every_minutes} * * * ?"

    @property
    def retrigger_seconds(self) -> int:
        # while new rows keep arriving the alert stays TRIGGERED: notify again once per run
        return self.every_minutes * 60

    @property
    def lookback_minutes(self) -> int:
        return int(self.lookback.total_seconds() // 60)


@dataclass(frozen=True)
class Ref:
    """Another managed object, by kind and name; becomes its id once it exists."""

    kind: Kind
    name: str


@dataclass(frozen=True)
class Desired:
    kind: Kind
    name: str
    body: Mapping[str, Any]  # the API's create/update body; may contain Refs
    secret_fields: tuple[str, ...] = ()  # dotted paths never read back: not compared


@dataclass(frozen=True)
class Existing:
    kind: Kind
    name: str
    id: str
    body: Mapping[str, Any]  # what the API returned, in its own field names


@dataclass(frozen=True)
class Step:
    action: Action
    kind: Kind
    name: str
    reason: str = ""
    desired: Desired | None = None
    existing_id: str | None = None
    # a delete that a new object replaces: done only once that object exists
    replaced_by: tuple[Kind, str] | None = None

    def describe(self) -> str:
        text = f"{self.action.value} {self.kind.value} {self.name}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class Webhook:
    public_url: str  # the bot's public base URL, e.g. https://esm-bot.example.com
    username: str
    password: str | None = None  # None: planning only (dry run, remove); never compared

    @property
    def url(self) -> str:
        return self.public_url.rstrip("/") + WEBHOOK_PATH

    @property
    def display_name(self) -> str:
        # The API never returns a webhook's url or credentials, so the (non-secret) target is
        # kept in the name: a changed public URL shows up as a changed name and is updated.
        target = self.url.split("://", 1)[-1]
        return _clip_name(f"{MARKER}Webhook → {target}")


@dataclass(frozen=True)
class Section:
    """One alert (v2), or one query/alert/job triple (legacy): its title and its SQL."""

    title: str
    sql: str
    description: str


# ------------------------------------------------------------------------------------ SQL


def sql_suppressible(s: Suppression, now: datetime) -> bool:
    """Can the warehouse apply this suppression? Only when it names a detection and at most a
    workspace (and/or an instance): clusters are not in the audit row, match globs need the
    lineage rules in Python."""
    return s.active(now) and not s.scope.cluster_id and not s.match


def _workspace_literal(workspace_id: str) -> str:
    # workspace_id is a BIGINT column: a numeric id compares as a number, anything else as text
    return workspace_id if workspace_id.isascii() and workspace_id.isdigit() else sql_literal(workspace_id)


def suppression_sql(s: Suppression) -> str:
    """`NOT (...)` for one SQL-expressible suppression."""
    parts = [f"lower(trim(action_name)) = {sql_literal(_normal(s.detection))}"]
    if s.scope.workspace_id:
        parts.append(f"workspace_id = {_workspace_literal(s.scope.workspace_id)}")
    if s.scope.instance_id:
        parts.append(f"request_params['instanceId'] = {sql_literal(s.scope.instance_id)}")
    if s.expires_at is not None:
        stamp = s.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        parts.append(f"current_timestamp() < TIMESTAMP {sql_literal(stamp + ' UTC')}")
    return f"NOT ({' AND '.join(parts)}) -- benign: {_comment(s.id)}"


def _normal(name: str) -> str:
    # the catalogue compares names case- and space-insensitively; lower(trim()) is the SQL side
    return " ".join(name.split()).lower()


def _comment(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)[:80]


def _in_list(names: Iterable[str]) -> str:
    literals = dict.fromkeys(sql_literal(_normal(n)) for n in names)  # one per line, no repeats
    return "\n      " + ",\n      ".join(literals) + "\n  "


def capsule8_sql(
    names: Sequence[str], suppressions: Sequence[Suppression], schedule: Schedule, *, negate: bool = False
) -> str:
    """Recent rows of the given detections (or, negated, of every other detection)."""
    names_line = f"lower(trim(action_name)) {'NOT IN' if negate else 'IN'} ({_in_list(names)})"
    lines = [
        "SELECT event_time, event_id, workspace_id, action_name,",
        "       request_params['instanceId'] AS instance_id,",
        "       request_params,",
        f"       count(*) OVER () AS {COUNT_COLUMN}",
        "FROM system.access.audit",
        f"WHERE service_name = {sql_literal(CAPSULE8_SERVICE)}",
        *_time_window(schedule),
        f"  AND {names_line}",
        *(f"  AND {suppression_sql(s)}" for s in suppressions),
        "ORDER BY event_time DESC",
        f"LIMIT {ROW_LIMIT}",
    ]
    return "\n".join(lines)


def clamav_sql(schedule: Schedule) -> str:
    """ClamAV scans that found something: `Infected files: N` with N > 0, or a `... FOUND` line."""
    lines = [
        "SELECT event_time, event_id, workspace_id, action_name,",
        "       request_params['instanceId'] AS instance_id,",
        "       response.result AS scan_result,",
        f"       count(*) OVER () AS {COUNT_COLUMN}",
        "FROM system.access.audit",
        f"WHERE service_name = {sql_literal(CLAMAV_SERVICE)}",
        *_time_window(schedule),
        "  AND (response.result RLIKE 'Infected files: [1-9]' OR response.result LIKE '% FOUND%')",
        "ORDER BY event_time DESC",
        f"LIMIT {ROW_LIMIT}",
    ]
    return "\n".join(lines)


def _time_window(schedule: Schedule) -> list[str]:
    minutes = schedule.lookback_minutes
    return [
        # event_date first: the audit table is partitioned on it
        f"  AND event_date >= date_sub(current_date(), {minutes // 1440 + 1})",
        f"  AND event_time >= current_timestamp() - INTERVAL {minutes} MINUTES",
    ]


# ------------------------------------------------------------------------------- sections


CLAMAV_DETECTIONS = {CLAMAV_INFECTION, CLAMAV_CLEAN_SCAN}  # read from ClamAV rows: their own section


def sections(catalogue: Catalogue, suppressions: Sequence[Suppression], schedule: Schedule, now: datetime) -> list[Section]:
    """Every category of the catalogue (ignored-only ones left out), ClamAV, then the rest."""
    usable = [s for s in suppressions if sql_suppressible(s, now)]
    # detections esm-bot raises itself (a silent sensor) are never in the audit table: no alert
    capsule8 = [c for c in catalogue.categories(include_synthetic=False)
                if not set(catalogue.names_in(c, include_synthetic=False)) <= CLAMAV_DETECTIONS]
    result = [_category_section(catalogue, category, usable, schedule) for category in capsule8]
    result.append(Section(CLAMAV_TITLE, clamav_sql(schedule), "ClamAV scans on classic compute that report infected files."))
    known = list(catalogue.entries)  # including ignored names (the Heartbeat): those are not findings
    result.append(
        Section(
            UNCATEGORISED_TITLE,
            capsule8_sql(known, (), schedule, negate=True),
            "Capsule8 detections the esm-bot catalogue does not know yet (posted as Uncategorised).",
        )
    )
    return result


def _category_section(catalogue: Catalogue, category: str, suppressions: Sequence[Suppression], schedule: Schedule) -> Section:
    names = catalogue.names_in(category, include_synthetic=False)
    wanted = {_normal(n) for n in names}
    mine = [s for s in suppressions if _normal(_canonical(catalogue, s.detection)) in wanted]
    description = f"Capsule8 detections in the esm-bot category {category}: {', '.join(names)}."
    return Section(category, capsule8_sql(names, mine, schedule), description)


def _canonical(catalogue: Catalogue, detection: str) -> str:
    entry = catalogue.entry_for(detection)
    return entry.name if entry is not None else detection


# -------------------------------------------------------------------------- desired state


def desired_objects(
    catalogue: Catalogue,
    *,
    warehouse_id: str,
    webhook: Webhook,
    suppressions: Sequence[Suppression] = (),
    schedule: Schedule = Schedule(),
    now: datetime | None = None,
    api: Api = Api.V2,
) -> list[Desired]:
    """The destination, then per section its alert (v2), or its query, alert and job (legacy),
    in apply order."""
    now = now or datetime.now(timezone.utc)
    destination = _destination(webhook)
    objects = [destination]
    subscriber = Ref(Kind.DESTINATION, destination.name)
    for section in sections(catalogue, suppressions, schedule, now):
        if api == Api.V2:
            objects.append(_alert_v2(section, warehouse_id, schedule, subscriber))
        else:
            objects += _triple(section, warehouse_id, schedule, subscriber)
    return sorted(objects, key=lambda d: APPLY_ORDER.index(d.kind))


def _destination(webhook: Webhook) -> Desired:
    config: dict[str, Any] = {"url": webhook.url, "username": webhook.username}
    if webhook.password is not None:
        config["password"] = webhook.password
    body = {"display_name": webhook.display_name, "config": {"generic_webhook": config}}
    # url, username and password are never read back (the API only says `<field>_set`); the
    # url lives on in the display name, the credentials are re-sent only when forced
    return Desired(Kind.DESTINATION, webhook.display_name, body, secret_fields=("config",))


def object_name(title: str) -> str:
    return _clip_name(MARKER + " ".join(title.split()))


def _alert_v2(section: Section, warehouse_id: str, schedule: Schedule, destination: Ref) -> Desired:
    """One AlertsV2 alert: its query, evaluation, subscription and schedule (AlertV2's fields)."""
    name = object_name(section.title)
    alert = {
        "display_name": name,
        "custom_summary": _clip_name(f"{name}: new Capsule8 rows"),
        "custom_description": f"{section.description} {MANAGED_NOTE}",
        "query_text": section.sql,
        "warehouse_id": warehouse_id,
        "evaluation": {
            "source": {"name": COUNT_COLUMN},
            "comparison_operator": "GREATER_THAN",
            "threshold": {"value": {"double_value": 0}},
            "empty_result_state": "OK",
            "notification": {
                "notify_on_ok": False,
                "retrigger_seconds": schedule.retrigger_seconds,
                "subscriptions": [{"destination_id": destination}],
            },
        },
        "schedule": {
            "quartz_cron_schedule": schedule.quartz_cron,
            "timezone_id": schedule.timezone_id,
            "pause_status": "UNPAUSED",
        },
    }
    return Desired(Kind.ALERT_V2, name, alert)


def _triple(section: Section, warehouse_id: str, schedule: Schedule, destination: Ref) -> list[Desired]:
    name = object_name(section.title)
    query = {
        "display_name": name,
        "description": f"{section.description} {MANAGED_NOTE}",
        "query_text": section.sql,
        "warehouse_id": warehouse_id,
        "tags": [TAG],
    }
    alert = {
        "display_name": name,
        "query_id": Ref(Kind.QUERY, name),
        "condition": {
            "op": "GREATER_THAN",
            "operand": {"column": {"name": COUNT_COLUMN}},
            "threshold": {"value": {"double_value": 0}},
            "empty_result_state": "OK",
        },
        "notify_on_ok": False,
        # while new rows keep arriving the alert stays TRIGGERED; re-notify once per run
        "seconds_to_retrigger": schedule.retrigger_seconds,
    }
    job = {
        "name": name,
        "description": MANAGED_NOTE,
        "tags": {TAG: TAG_VALUE},
        "max_concurrent_runs": 1,
        "schedule": {
            "quartz_cron_expression": schedule.quartz_cron,
            "timezone_id": schedule.timezone_id,
            "pause_status": "UNPAUSED",
        },
        "tasks": [
            {
                "task_key": "evaluate_alert",
                "sql_task": {
                    "warehouse_id": warehouse_id,
                    "alert": {
                        "alert_id": Ref(Kind.ALERT, name),
                        "subscriptions": [{"destination_id": destination}],
                    },
                },
            }
        ],
    }
    return [Desired(Kind.QUERY, name, query), Desired(Kind.ALERT, name, alert), Desired(Kind.JOB, name, job)]


def _clip_name(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def is_managed(name: str | None) -> bool:
    return bool(name) and name.startswith(MARKER)  # type: ignore[union-attr]


# -------------------------------------------------------------------------------- diffing


class Unresolved(str):
    """An id placeholder for an object that does not exist yet: never equal to a real id."""


def resolve(body: Any, ids: Mapping[tuple[Kind, str], str]) -> Any:
    """The body with every Ref replaced by its id (an Unresolved placeholder when unknown)."""
    if isinstance(body, Ref):
        found = ids.get((body.kind, body.name))
        return found if found is not None else Unresolved(f"<new {body.kind.value} {body.name}>")
    if isinstance(body, Mapping):
        return {k: resolve(v, ids) for k, v in body.items()}
    if isinstance(body, (list, tuple)):
        return [resolve(v, ids) for v in body]
    return body


def differences(desired: Any, existing: Any, path: str = "", skip: Sequence[str] = ()) -> list[str]:
    """Dotted paths where `existing` differs from `desired`. Only what esm-bot sets is compared
    (the API adds defaults of its own), secret fields are skipped, scalar lists compare as sets."""
    if path in skip:
        return []
    if isinstance(desired, Mapping):
        if not isinstance(existing, Mapping):
            return [path or "."]
        return [d for k, v in desired.items() for d in differences(v, existing.get(k), _join(path, k), skip)]
    if isinstance(desired, list):
        return _list_differences(desired, existing, path, skip)
    if isinstance(desired, Unresolved) or not _same_scalar(desired, existing):
        return [path or "."]
    return []


def _list_differences(desired: list[Any], existing: Any, path: str, skip: Sequence[str]) -> list[str]:
    if not isinstance(existing, list) or len(existing) != len(desired):
        return [path]
    if all(not isinstance(v, (Mapping, list)) for v in desired):
        scalars_differ = sorted(map(str, desired)) != sorted(map(str, existing)) or any(isinstance(v, Unresolved) for v in desired)
        return [path] if scalars_differ else []
    return [d for i, (a, b) in enumerate(zip(desired, existing)) for d in differences(a, b, f"{path}[{i}]", skip)]


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (b is None and a is False)  # the API omits false booleans
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (int, float)) and b is None:
        return bool(a == 0)  # and zero numbers
    return bool(a == b)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def diff(
    desired: Sequence[Desired], existing: Sequence[Existing], *, force: Iterable[Kind] = ()
) -> list[Step]:
    """Desired vs existing managed objects -> steps: creates/updates/unchanged in apply order,
    then deletes of managed objects no longer wanted (and duplicates), dependants first.

    `force` kinds are updated even when nothing readable differs (the webhook destination's
    credentials cannot be read back: `--rotate-webhook-secret` forces them out)."""
    index: dict[tuple[Kind, str], Existing] = {}
    extra: list[Existing] = []
    for obj in existing:
        if not is_managed(obj.name):
            continue  # never ours: never touched
        (extra.append(obj) if (obj.kind, obj.name) in index else index.setdefault((obj.kind, obj.name), obj))
    ids = {key: obj.id for key, obj in index.items()}
    forced = set(force)
    steps = [_step(d, index.get((d.kind, d.name)), ids, d.kind in forced) for d in desired]
    wanted = {(d.kind, d.name) for d in desired}
    stale = [o for key, o in index.items() if key not in wanted]
    deletes = [_stale(o, wanted) for o in stale]
    deletes += [Step(Action.DELETE, o.kind, o.name, "duplicate", existing_id=o.id) for o in extra]
    return steps + sorted(deletes, key=lambda s: -APPLY_ORDER.index(s.kind))


def _stale(obj: Existing, wanted: set[tuple[Kind, str]]) -> Step:
    """The delete of a managed object no longer wanted; a legacy object whose section now has a v2
    alert (or the other way round) names it: it goes only once that alert exists."""
    if obj.kind in LEGACY_KINDS and (Kind.ALERT_V2, obj.name) in wanted:
        return Step(Action.DELETE, obj.kind, obj.name, "legacy: replaced by the v2 alert", existing_id=obj.id,
                    replaced_by=(Kind.ALERT_V2, obj.name))
    if obj.kind == Kind.ALERT_V2 and (Kind.JOB, obj.name) in wanted:
        return Step(Action.DELETE, obj.kind, obj.name, "replaced by the legacy alert and its job", existing_id=obj.id,
                    replaced_by=(Kind.JOB, obj.name))
    reason = "replaced: the public URL changed" if obj.kind == Kind.DESTINATION else "no longer in the catalogue"
    return Step(Action.DELETE, obj.kind, obj.name, reason, existing_id=obj.id)


def _step(d: Desired, found: Existing | None, ids: Mapping[tuple[Kind, str], str], forced: bool) -> Step:
    if found is None:
        return Step(Action.CREATE, d.kind, d.name, desired=d)
    changed = differences(resolve(d.body, ids), found.body, skip=d.secret_fields)
    if forced:
        changed = changed or ["credentials (forced)"]
    if not changed:
        return Step(Action.UNCHANGED, d.kind, d.name, desired=d, existing_id=found.id)
    return Step(Action.UPDATE, d.kind, d.name, "changed: " + ", ".join(changed[:6]), desired=d, existing_id=found.id)


def removal(existing: Sequence[Existing]) -> list[Step]:
    """`--remove`: delete every managed object, dependants first; foreign ones are not listed."""
    ours = [o for o in existing if is_managed(o.name)]
    ours.sort(key=lambda o: -APPLY_ORDER.index(o.kind))
    return [Step(Action.DELETE, o.kind, o.name, "esm-bot deploy --remove", existing_id=o.id) for o in ours]


def summary(steps: Sequence[Step]) -> str:
    counts = {a: sum(1 for s in steps if s.action == a) for a in Action}
    if steps and counts[Action.UNCHANGED] == len(steps):
        return f"Nothing to change: all {len(steps)} objects are up to date."
    return ", ".join(f"{n} to {a.value}" if a != Action.UNCHANGED else f"{n} unchanged" for a, n in counts.items() if n) or "Nothing to do."


def migration_note(steps: Sequence[Step]) -> str | None:
    """One line saying which objects of the other alerts API this plan replaces, if any."""
    replaced = [s for s in steps if s.action == Action.DELETE and s.replaced_by is not None]
    if not replaced:
        return None
    counts = {k: sum(1 for s in replaced if s.kind == k) for k in (*LEGACY_KINDS, Kind.ALERT_V2)}
    plural = {Kind.QUERY: "queries", Kind.ALERT: "legacy alerts", Kind.JOB: "jobs", Kind.ALERT_V2: "alerts"}
    listed = ", ".join(f"{n} {plural[k] if n != 1 else k.value}" for k, n in counts.items() if n)
    target = "v2 alerts" if any(s.kind in LEGACY_KINDS for s in replaced) else "legacy alerts and jobs"
    return (f"Migration: replaces {listed} of an earlier esm-bot deploy with {target}; "
            "each is deleted only after the object replacing it exists.")


def plan_lines(steps: Sequence[Step]) -> list[str]:
    """One line per step, for the printed plan."""
    return [f"  {s.action.value:<9} {s.kind.value:<12} {s.name}" + (f"  ({s.reason})" if s.reason else "") for s in steps]


__all__ = [
    "Action", "Api", "Desired", "LEGACY_KINDS", "Existing", "Kind", "MARKER", "Ref", "Schedule", "Section", "Step", "Webhook",
    "capsule8_sql", "clamav_sql", "desired_objects", "diff", "differences", "is_managed", "migration_note", "object_name",
    "plan_lines", "removal", "resolve", "sections", "sql_suppressible", "suppression_sql", "summary",
]
