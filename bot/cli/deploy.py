"""`esm-bot deploy`: read what exists, plan (bot.core.deploy_plan), print the plan, apply it.

Everything here is synchronous: it runs in the CLI's own thread, with no event loop to block,
and the WorkspaceClient is built exactly like the bot's (bot.adapters.workspace._build_client:
short retry and HTTP timeouts, the SDK's unified auth). Only objects whose name starts with
"[esm-bot] " are ever updated or deleted.

Which SQL alerts API: the current one (AlertsV2, `w.alerts_v2`, one scheduled alert per category)
unless the workspace has none (listing it answers 404 or FEATURE_DISABLED): then the legacy
one (a query, an alert and a job per category), said in one line. `--api v2|legacy` forces one.
Objects of the other API left by an earlier deploy are replaced: the plan lists them, and each
is deleted only after the object replacing it exists.

Idempotency: an object is written only when a field esm-bot sets differs from what the API
returns. The webhook destination's url, username and password are never returned by the API,
so its display name carries the (non-secret) webhook URL: a new public URL means a new
destination (the alerts' subscriptions, or the legacy jobs, are re-pointed, then the old one is
deleted). Changed credentials cannot be
detected: `--rotate-webhook-secret` re-sends them. Nothing secret is ever written to a name,
a description or a tag.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.errors import NotImplemented as NotImplementedError_
from databricks.sdk.service import jobs, settings as dest_settings, sql

from bot.adapters.workspace import _build_client, _reason, _redact
from bot.config import ConfigError, Settings
from bot.core.catalogue import Catalogue, CatalogueError, load_catalogue
from bot.core.deploy_plan import (
    Action,
    Api,
    Desired,
    Existing,
    Kind,
    Schedule,
    Step,
    Unresolved,
    Webhook,
    desired_objects,
    diff,
    is_managed,
    migration_note,
    plan_lines,
    removal,
    resolve,
    summary,
)
from bot.core.suppressions import Suppression, SuppressionError, load_benign_rules

QUERY_MASK = "display_name,description,query_text,warehouse_id,tags"
ALERT_MASK = "display_name,query_id,condition,notify_on_ok,seconds_to_retrigger"
ALERT_V2_MASK = "display_name,custom_summary,custom_description,query_text,warehouse_id,evaluation,schedule"
# how a workspace without AlertsV2 answers GET /api/2.0/alerts
NO_ALERTS_V2_CODES = {"FEATURE_DISABLED", "ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"}


class DeployFailure(Exception):
    """One object could not be read or written; the message names it and the API's reason."""


class NoAlertsV2(Exception):
    """The workspace has no AlertsV2 API; the message is the API's answer."""


@dataclass(frozen=True)
class DeployOptions:
    dry_run: bool = False
    remove: bool = False
    rotate_webhook_secret: bool = False
    public_url: str | None = None  # overrides ESM_PUBLIC_URL
    api: Api | None = None  # None: AlertsV2 where the workspace has it, else legacy


# ---------------------------------------------------------------------------- the SDK side


class DatabricksObjects:
    """List, create, update and delete the five kinds of objects through the SDK."""

    def __init__(self, client: WorkspaceClient):
        self.client = client
        self.host = (client.config.host or "").rstrip("/")

    def alerts_v2(self) -> list[Existing]:
        """Every managed AlertsV2 alert; NoAlertsV2 when the workspace has no such API."""
        try:
            alerts = list(self.client.alerts_v2.list_alerts())
        except (NotFound, NotImplementedError_) as err:
            raise NoAlertsV2(_reason(err, self.host)) from err
        except DatabricksError as err:
            if err.error_code in NO_ALERTS_V2_CODES:
                raise NoAlertsV2(_reason(err, self.host)) from err
            raise DeployFailure(self.describe("list alerts (v2)", err)) from err
        except Exception as err:
            raise DeployFailure(self.describe("list alerts (v2)", err)) from err
        return _managed([Existing(Kind.ALERT_V2, a.display_name or "", a.id or "", a.as_dict()) for a in alerts])

    def existing(self, *, legacy_required: bool = True) -> list[Existing]:
        """Every managed destination and legacy object (name prefix), read with list calls only.
        With legacy_required False (deploying v2), a workspace without the legacy APIs has none."""
        w = self.client
        found: list[Existing] = []
        found += self._read("list queries", lambda: [
            Existing(Kind.QUERY, q.display_name or "", q.id or "", q.as_dict()) for q in w.queries.list()],
            missing_ok=not legacy_required)
        found += self._read("list alerts", lambda: [
            Existing(Kind.ALERT, a.display_name or "", a.id or "", a.as_dict()) for a in w.alerts.list()],
            missing_ok=not legacy_required)
        found += self._read("list jobs", lambda: [
            Existing(Kind.JOB, j.settings.name or "", str(j.job_id), j.settings.as_dict())
            for j in w.jobs.list(expand_tasks=True) if j.settings is not None])
        found += self._read("list notification destinations", lambda: [
            Existing(Kind.DESTINATION, d.display_name or "", d.id or "", d.as_dict())
            for d in w.notification_destinations.list()])
        return _managed(found)

    def _read(self, what: str, fn: Callable[[], list[Existing]], *, missing_ok: bool = False) -> list[Existing]:
        try:
            return fn()
        except Exception as err:
            if missing_ok and isinstance(err, NotFound):
                return []
            raise DeployFailure(self.describe(what, err)) from err

    def create(self, kind: Kind, body: dict[str, Any]) -> str:
        w = self.client
        if kind == Kind.ALERT_V2:
            return w.alerts_v2.create_alert(sql.AlertV2.from_dict(body)).id or ""
        if kind == Kind.QUERY:
            return w.queries.create(query=sql.CreateQueryRequestQuery.from_dict(body)).id or ""
        if kind == Kind.ALERT:
            return w.alerts.create(alert=sql.CreateAlertRequestAlert.from_dict(body)).id or ""
        if kind == Kind.JOB:
            s = jobs.JobSettings.from_dict(body)
            created = w.jobs.create(name=s.name, description=s.description, tags=s.tags, schedule=s.schedule,
                                    tasks=s.tasks, max_concurrent_runs=s.max_concurrent_runs)
            return str(created.job_id)
        config = dest_settings.Config.from_dict(body["config"])
        return w.notification_destinations.create(display_name=body["display_name"], config=config).id or ""

    def update(self, kind: Kind, object_id: str, body: dict[str, Any]) -> None:
        w = self.client
        if kind == Kind.ALERT_V2:
            w.alerts_v2.update_alert(object_id, sql.AlertV2.from_dict(body), ALERT_V2_MASK)
        elif kind == Kind.QUERY:
            w.queries.update(object_id, QUERY_MASK, query=sql.UpdateQueryRequestQuery.from_dict(body))
        elif kind == Kind.ALERT:
            w.alerts.update(object_id, ALERT_MASK, alert=sql.UpdateAlertRequestAlert.from_dict(body))
        elif kind == Kind.JOB:
            w.jobs.reset(int(object_id), jobs.JobSettings.from_dict(body))
        else:
            config = dest_settings.Config.from_dict(body["config"])
            w.notification_destinations.update(object_id, display_name=body["display_name"], config=config)

    def delete(self, kind: Kind, object_id: str) -> None:
        w = self.client
        if kind == Kind.ALERT_V2:
            w.alerts_v2.trash_alert(object_id)  # the trash, as the UI does; purged after 30 days
        elif kind == Kind.QUERY:
            w.queries.delete(object_id)  # moves it to the trash, as the UI does
        elif kind == Kind.ALERT:
            w.alerts.delete(object_id)
        elif kind == Kind.JOB:
            w.jobs.delete(int(object_id))
        else:
            w.notification_destinations.delete(object_id)

    def describe(self, what: str, err: BaseException) -> str:
        return _redact(f"{what} failed: {_reason(err, self.host)}", self.client.config.token)


def _managed(found: list[Existing]) -> list[Existing]:
    return [obj for obj in found if is_managed(obj.name)]


# ---------------------------------------------------------------------------------- planning


def webhook_of(settings: Settings, options: DeployOptions, *, need_password: bool) -> Webhook:
    public_url = options.public_url or settings.public_url
    if not public_url:
        raise ConfigError("ESM_PUBLIC_URL (or --public-url) is required for deploy: the webhook destination points at it")
    if not public_url.startswith("https://"):
        # the notification destinations API rejects any other scheme: say so before any request
        raise ConfigError(f"ESM_PUBLIC_URL: {public_url} is not https; Databricks webhook destinations must use HTTPS")
    settings.require("webhook_user")
    if need_password:
        settings.require("webhook_password")
    password = settings.webhook_password.reveal() if settings.webhook_password else None
    return Webhook(public_url.rstrip("/"), settings.webhook_user or "", password)


@dataclass(frozen=True)
class DeployInputs:
    """Everything the desired state is built from, read and checked before any request."""

    catalogue: Catalogue
    suppressions: Sequence[Suppression]
    webhook: Webhook
    warehouse_id: str
    schedule: Schedule

    def desired(self, api: Api, now: datetime | None = None) -> list[Desired]:
        return desired_objects(self.catalogue, warehouse_id=self.warehouse_id, webhook=self.webhook,
                               suppressions=self.suppressions, schedule=self.schedule,
                               now=now or datetime.now(timezone.utc), api=api)


def setting_problems(settings: Settings, options: DeployOptions) -> list[str]:
    """Every setting deploy needs that is unset or unusable, one line each, before any request."""
    if options.remove:
        return []
    problems = []
    if not settings.warehouse_id:
        problems.append("ESM_WAREHOUSE_ID is required for deploy but is not set: the alerts run on that warehouse")
    public_url = options.public_url or settings.public_url
    if not public_url:
        problems.append("ESM_PUBLIC_URL (or --public-url) is required for deploy: the webhook destination points at it")
    elif not public_url.startswith("https://"):
        problems.append(f"ESM_PUBLIC_URL: {public_url} is not https; Databricks webhook destinations must use HTTPS")
    if not settings.webhook_user:
        problems.append("ESM_WEBHOOK_USER is required for deploy but is not set")
    if not options.dry_run and not settings.webhook_password:
        problems.append("ESM_WEBHOOK_PASSWORD is required for deploy but is not set")
    return problems


def deploy_inputs(settings: Settings, options: DeployOptions) -> DeployInputs:
    problems = setting_problems(settings, options)
    if problems:
        raise ConfigError("\n".join(problems))
    catalogue = load_catalogue(settings.rules_dir / "detections.yml")
    suppressions: list[Suppression] = load_benign_rules(settings.rules_dir / "benign.yml")  # enabled entries
    webhook = webhook_of(settings, options, need_password=not options.dry_run)
    return DeployInputs(catalogue, suppressions, webhook, settings.warehouse_id or "",
                        Schedule.every(settings.alert_schedule))


def desired_state(settings: Settings, options: DeployOptions, *, now: datetime | None = None,
                  api: Api = Api.V2) -> list[Desired]:
    return deploy_inputs(settings, options).desired(api, now)


def make_plan(desired: Sequence[Desired] | None, options: DeployOptions, existing: Sequence[Existing]) -> list[Step]:
    """`--remove` (desired is None): every managed object goes; otherwise desired vs existing."""
    if desired is None or options.remove:
        return removal(existing)
    force = [Kind.DESTINATION] if options.rotate_webhook_secret else []
    return diff(desired, existing, force=force)


# ---------------------------------------------------------------------------------- applying


class Applier:
    def __init__(self, objects: DatabricksObjects, existing: Sequence[Existing], out: TextIO):
        self.objects = objects
        self.ids = {(o.kind, o.name): o.id for o in existing}
        self.out = out
        self.failures: list[str] = []

    def apply(self, steps: Sequence[Step]) -> None:
        work = [s for s in steps if s.action != Action.UNCHANGED]
        for number, step in enumerate(work, 1):
            print(f"[{number}/{len(work)}] {step.action.value} {step.kind.value} {step.name} …", end=" ",
                  file=self.out, flush=True)
            try:
                self._one(step)
            except DeployFailure as err:
                self.failures.append(str(err))
                print(f"FAILED: {err}", file=self.out, flush=True)
            else:
                print("ok", file=self.out, flush=True)

    def _one(self, step: Step) -> None:
        label = f"{step.action.value} {step.kind.value} {step.name!r}"
        if step.replaced_by is not None and step.replaced_by not in self.ids:
            kind, name = step.replaced_by
            raise DeployFailure(f"{label} skipped: the {kind.value} replacing it, {name!r}, does not exist")
        try:
            if step.action == Action.DELETE:
                self.objects.delete(step.kind, step.existing_id or "")
                return
            assert step.desired is not None
            body = resolve(step.desired.body, self.ids)
            _require_resolved(body, label)
            if step.action == Action.CREATE:
                self.ids[(step.kind, step.name)] = self.objects.create(step.kind, body)
            else:
                self.objects.update(step.kind, step.existing_id or "", body)
        except DeployFailure:
            raise
        except Exception as err:
            raise DeployFailure(self.objects.describe(label, err)) from err


def _require_resolved(body: Any, label: str) -> None:
    missing = _unresolved(body)
    if missing:
        raise DeployFailure(f"{label} skipped: it needs {missing[0][5:-1]}, which was not created")


def _unresolved(body: Any) -> list[str]:
    if isinstance(body, Unresolved):
        return [str(body)]
    if isinstance(body, dict):
        return [u for v in body.values() for u in _unresolved(v)]
    if isinstance(body, list):
        return [u for v in body for u in _unresolved(v)]
    return []


# --------------------------------------------------------------------------------- the command


def run_deploy(settings: Settings, options: DeployOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Plan, print, apply (unless dry run). 0: done; 1: some object failed (named on stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    # configuration problems (and catalogue errors) stop here, before any request
    try:
        inputs = None if options.remove else deploy_inputs(settings, options)
    except (CatalogueError, SuppressionError) as exc:
        print(f"esm-bot deploy: {exc}", file=err)
        return 2
    token = settings.databricks_token.reveal() if settings.databricks_token else None
    where = settings.databricks_host or "the workspace from the Databricks SDK's configuration"
    print(f"esm-bot deploy: reading {where} …", file=err, flush=True)
    try:
        client = _build_client(settings.databricks_host, token, settings.databricks_timeout)
        objects = DatabricksObjects(client)
        api, v2_alerts = _choose_api(objects, options, err)
        existing = objects.existing(legacy_required=api == Api.LEGACY) + v2_alerts
    except DeployFailure as exc:
        print(f"esm-bot deploy: {exc}", file=err)
        return 1
    except Exception as exc:  # the SDK raises ValueError for config/auth problems
        print("esm-bot deploy: " + _redact(f"cannot connect to {where}: {exc}", token), file=err)
        return 1
    steps = make_plan(inputs.desired(api) if inputs is not None else None, options, existing)
    _print_plan(steps, options, out)
    if options.dry_run:
        print("Dry run: nothing was changed.", file=out)
        return 0
    applier = Applier(objects, existing, out)
    applier.apply(steps)
    return _report(applier, steps, out, err)


def _choose_api(objects: DatabricksObjects, options: DeployOptions, err: TextIO) -> tuple[Api, list[Existing]]:
    """AlertsV2 where the workspace has it (or as forced); otherwise legacy, said in one line.
    Returns the API and the managed v2 alerts (none where there is no AlertsV2)."""
    try:
        v2_alerts = objects.alerts_v2()
    except NoAlertsV2 as why:
        if options.api == Api.V2:
            raise DeployFailure(f"--api v2, but this workspace has no AlertsV2 (GET /api/2.0/alerts: {why})") from None
        if options.api is None and not options.remove:
            print(f"esm-bot deploy: this workspace has no AlertsV2 (GET /api/2.0/alerts: {why}); falling back to "
                  "the legacy SQL alerts API: a query, an alert and a job per category (--api legacy chooses it "
                  "without asking)", file=err, flush=True)
        return Api.LEGACY, []
    api = options.api or Api.V2
    if not options.remove:
        what = ("AlertsV2 (/api/2.0/alerts), one scheduled alert per category" if api == Api.V2
                else "the legacy SQL alerts API (--api legacy): a query, an alert and a job per category")
        print(f"esm-bot deploy: using {what}", file=err, flush=True)
    return api, v2_alerts


def _print_plan(steps: Sequence[Step], options: DeployOptions, out: TextIO) -> None:
    title = "Plan (remove)" if options.remove else "Plan"
    print(f"{title}: {summary(steps)}", file=out)
    note = migration_note(steps)
    if note:
        print(note, file=out)
    for line in plan_lines(steps):
        print(line, file=out)
    out.flush()


def _report(applier: Applier, steps: Sequence[Step], out: TextIO, err: TextIO) -> int:
    if not applier.failures:
        changed = sum(1 for s in steps if s.action != Action.UNCHANGED)
        print("Done." if changed else "Done: nothing changed.", file=out)
        return 0
    print(f"esm-bot deploy: {len(applier.failures)} object(s) failed:", file=err)
    for failure in applier.failures:
        print(f"  {failure}", file=err)
    return 1
