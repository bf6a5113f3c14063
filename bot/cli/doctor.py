"""`esm-bot doctor`: is this configuration able to run the bot? One line per check:

    ok    slack auth            team ESM as esm-bot (B0ESMBOT)
    FAIL  slack channel         the bot is not a member of C0FINDINGS
          fix: invite it: /invite @esm-bot in that channel
    skip  warehouse             ESM_AUDIT_SOURCE is the embedded DuckDB store

Every check is read-only (nothing is posted, nothing is terminated) and bounded by a short
timeout. Exit status 1 when any check failed.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from bot.adapters.databricks_checks import (
    ADMINS_GROUP, MANAGE_LEVELS, TERMINATE_LEVELS, DatabricksProbe, DatabricksProbeError, Identity,
)
from bot.adapters.slack_checks import AuthInfo, SlackProbe, SlackProbeError
from bot.config import ENV_NAMES, ConfigError, Settings
from bot.services.health import secret_values
from bot.adapters.slack_scopes import manifest_bot_scopes, methods_needing

TIMEOUT = 10.0
TABLES = ("system.access.audit", "system.compute.node_timeline", "system.compute.clusters")
TABLE_USE = {
    "system.access.audit": "Capsule8 events and notebook commands",
    "system.compute.node_timeline": "instance -> cluster when the API does not know the instance",
    "system.compute.clusters": "cluster details when the API does not know the cluster",
}
_TEAM = re.compile(r"^T[A-Z0-9]{2,31}$")
_ENTERPRISE = re.compile(r"^E[A-Z0-9]{2,31}$")
AUTH_FIX = ("check DATABRICKS_HOST and the SDK's auth (DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID/"
            "DATABRICKS_CLIENT_SECRET for a service principal; in a Databricks App leave them to the app)")


@dataclass(frozen=True)
class Result:
    status: str  # ok, FAIL, skip
    check: str
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:<4}  {self.check:<34}  {self.detail}"]
        if self.status == "FAIL" and self.fix:
            out.append(f"{'':<4}  {'':<34}  fix: {self.fix}")
        return out


def ok(check: str, detail: str) -> Result:
    return Result("ok", check, detail)


def fail(check: str, detail: str, fix: str) -> Result:
    return Result("FAIL", check, detail, fix)


def skip(check: str, detail: str) -> Result:
    return Result("skip", check, detail)


async def run_doctor(settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    results = await diagnose(settings, emit=lambda r: _print(r, out, secret_values(settings)))
    failed = [r for r in results if r.status == "FAIL"]
    print(f"doctor: {len(results) - len(failed)} passed or skipped, {len(failed)} failed", file=out)
    return 1 if failed else 0


def config_failure(exc: ConfigError, out: TextIO | None = None) -> int:
    """A setting that does not even parse: reported in the doctor's own format."""
    out = out or sys.stdout
    for line in fail("configuration", str(exc), "correct or unset that variable (see README, Configuration)").lines():
        print(line, file=out)
    print("doctor: 0 passed or skipped, 1 failed", file=out)
    return 1


def _print(result: Result, out: TextIO, secrets: list[str]) -> None:
    for line in result.lines():
        for secret in secrets:
            line = line.replace(secret, "****")
        print(line, file=out, flush=True)


async def diagnose(settings: Settings, emit: Callable[[Result], None] = lambda r: None) -> list[Result]:
    results: list[Result] = []

    def add(*found: Result) -> None:
        for result in found:
            results.append(result)
            emit(result)

    add(*configuration(settings))
    add(await state_store(settings))
    add(*await slack_checks(settings))
    identity = None
    dbx_results, identity, probe = await databricks_auth(settings)
    add(*dbx_results)
    add(*await audit_source_checks(settings))
    add(await terminate_permission(probe, identity))
    add(*await playbook_permissions(settings, probe, identity))
    return results


# ---------------------------------------------------------------- configuration


def missing_for_serve(settings: Settings) -> list[str]:
    needed = ["slack_bot_token", "slack_channel"]
    if settings.slack_app_token is None:
        needed.append("slack_signing_secret")  # HTTP mode verifies every Slack request with it
    if settings.poll_interval is None:
        needed += ["webhook_user", "webhook_password"]  # without polling, only webhooks trigger syncs
    if settings.audit_source == "databricks":
        needed.append("databricks_host")
    missing = [ENV_NAMES[name] for name in needed if getattr(settings, name) in (None, "", ())]
    if settings.audit_source == "databricks" and not (settings.warehouse_http_path or settings.warehouse_id):
        missing.append("ESM_WAREHOUSE_HTTP_PATH (or ESM_WAREHOUSE_ID)")
    return missing


def configuration(settings: Settings) -> list[Result]:
    transport = "Socket Mode (SLACK_APP_TOKEN)" if settings.slack_app_token else "HTTP (/slack/events)"
    trigger = f"polling every {settings.poll_interval}" if settings.poll_interval else "webhooks only"
    source = "SQL warehouse" if settings.audit_source == "databricks" else settings.audit_source
    results = [ok("configuration", f"settings load; Slack over {transport}; syncs on {trigger}; audit source {source}")]
    missing = missing_for_serve(settings)
    if missing:
        results.append(fail("settings for serve", "missing: " + ", ".join(missing),
                            "set them in the environment (see README, Configuration)"))
    else:
        results.append(ok("settings for serve", "everything `esm-bot serve` needs is set"))
    if not settings.responders:
        results.append(skip("responders", "ESM_RESPONDERS is empty: every destructive action will be refused"))
    if settings.dry_run:
        results.append(skip("dry run", "ESM_DRY_RUN is on: actions only report what they would do"))
    return results


async def state_store(settings: Settings) -> Result:
    if settings.state_url is not None:
        return await postgres_state_store(settings)
    path = settings.state_path
    if os.path.exists(path):
        try:
            import sqlite3

            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return ok("state store", f"{path} opens")
        except Exception as exc:
            return fail("state store", f"{path}: {exc}", "check ESM_STATE_PATH points at an esm-bot SQLite file")
    folder = os.path.dirname(os.path.abspath(path))
    if os.access(folder, os.W_OK):
        return ok("state store", f"{path} does not exist yet; serve creates it ({folder} is writable)")
    return fail("state store", f"{folder} is not writable", "set ESM_STATE_PATH to a writable location")


async def postgres_state_store(settings: Settings) -> Result:
    """ESM_STATE_URL: connect (read-only), say the server and the schema revision; the password
    is masked (and with ESM_STATE_LAKEBASE_INSTANCE it comes from the Databricks SDK)."""
    from bot.adapters.state import StateStoreError, redact_url
    from bot.adapters.state.migrate import head
    from bot.adapters.state.store import inspect_postgres
    from bot.runtime import state_credentials

    assert settings.state_url is not None
    url = settings.state_url.reveal()
    where = redact_url(url)
    lakebase = f" (Lakebase instance {settings.state_lakebase_instance})" if settings.state_lakebase_instance else ""
    try:
        version, revision = await asyncio.wait_for(inspect_postgres(url, state_credentials(settings), TIMEOUT),
                                                   TIMEOUT + 5)
    except (StateStoreError, ConfigError) as exc:
        return fail("state store", redact_url(str(exc), url=url),
                    "check ESM_STATE_URL (host, port, database, user, password)" +
                    (", ESM_STATE_LAKEBASE_INSTANCE and the Databricks auth" if lakebase else "") +
                    ", and that this host may reach the server")
    except asyncio.TimeoutError:
        return fail("state store", f"{where}: no answer within {TIMEOUT + 5:g}s", "check the server is up and reachable")
    newest = head()
    known = {f"{n:04d}" for n in range(1, int(newest) + 1)} if newest.isdigit() else {newest}
    said = f"PostgreSQL {version} at {where}{lakebase}"
    if revision is None:
        return ok("state store", f"{said}: no esm-bot tables yet; serve creates them (schema revision {newest})")
    if revision == newest:
        return ok("state store", f"{said}: schema revision {revision} (current)")
    if revision in known:
        return ok("state store", f"{said}: schema revision {revision}; serve upgrades it to {newest}")
    return fail("state store", f"{said}: schema revision {revision} is newer than this esm-bot knows ({newest})",
                "upgrade esm-bot to the release that wrote it")


# ---------------------------------------------------------------- Slack


async def slack_checks(settings: Settings) -> list[Result]:
    if settings.slack_bot_token is None:
        return [skip("slack auth", "SLACK_BOT_TOKEN unset"), skip("slack scopes", "no token"),
                skip("slack channel", "no token")]
    probe = SlackProbe(settings.slack_bot_token.reveal(), settings.slack_api_url, TIMEOUT)
    try:
        info = await probe.auth()
    except SlackProbeError as exc:
        fix = ("SLACK_BOT_TOKEN is wrong or revoked: reinstall the app and copy its Bot User OAuth Token (xoxb-)"
               if exc.error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked")
               else f"check that {settings.slack_api_url} is reachable from here")
        return [fail("slack auth", str(exc), fix), skip("slack workspace", "auth failed"),
                skip("slack scopes", "auth failed"), skip("slack channel", "auth failed"),
                *await socket_mode_check(settings)]
    results = [ok("slack auth", f"team {info.team} as {info.user or info.user_id} ({info.bot_id or 'no bot id'})")]
    results += workspace_checks(settings, info)
    results.append(scopes_check(info.scopes))
    results.append(await channel_check(probe, settings.slack_channel))
    results += await socket_mode_check(settings)
    return results


def workspace_checks(settings: Settings, info: AuthInfo) -> list[Result]:
    """ESM_SLACK_TEAM_ID / ESM_SLACK_ENTERPRISE_ID against the token's own workspace (auth.test):
    unset, the value to set is suggested; set to another one, it fails (every request would be
    refused). Slack's ids are checked to be ids before they are printed."""
    team = info.team_id if _TEAM.match(info.team_id) else ""
    org = info.enterprise_id if _ENTERPRISE.match(info.enterprise_id) else ""
    results = [_id_check("slack workspace", "ESM_SLACK_TEAM_ID", settings.slack_team_id, team, "team")]
    if org or settings.slack_enterprise_id:
        results.append(_id_check("slack enterprise", "ESM_SLACK_ENTERPRISE_ID", settings.slack_enterprise_id, org,
                                 "Enterprise Grid org"))
    return results


def _id_check(check: str, name: str, configured: str | None, actual: str, what: str) -> Result:
    if not actual:
        if configured:
            return fail(check, f"{name} is {configured}, but auth.test names no {what} for this token",
                        f"unset {name}, or use the bot token of that {what}")
        return skip(check, f"auth.test names no {what} id")
    if configured is None:
        return skip(check, f"{name} unset: Slack requests from any {what} are served; "
                           f"set {name}={actual} to refuse every other one")
    if configured != actual:
        return fail(check, f"{name} is {configured}, but this token belongs to {what} {actual}: every Slack "
                           "request would be refused", f"set {name}={actual} (or use the bot token of {configured})")
    return ok(check, f"{name} matches the token's {what} {actual}: requests from any other are refused")


def scopes_check(held: frozenset[str] | None) -> Result:
    wanted = manifest_bot_scopes()
    if held is None:
        return skip("slack scopes", "Slack sent no X-OAuth-Scopes header: cannot compare with manifest.yml")
    missing = [s for s in wanted if s not in held]
    if not missing:
        return ok("slack scopes", f"all {len(wanted)} scopes of manifest.yml granted")
    breaks = "; ".join(f"{s} ({', '.join(methods_needing(s)) or 'used by the app'})" for s in missing)
    return fail("slack scopes", f"missing {breaks}",
                "add them under OAuth & Permissions (or update the app from manifest.yml) and reinstall the app")


async def channel_check(probe: SlackProbe, channel: str | None) -> Result:
    if not channel:
        return skip("slack channel", "ESM_SLACK_CHANNEL unset")
    try:
        info = await probe.channel(channel)
    except SlackProbeError as exc:
        if exc.error == "missing_scope":
            return fail("slack channel", str(exc), "add channels:read and groups:read to the bot scopes and reinstall")
        if exc.error == "channel_not_found":
            return fail("slack channel", f"{channel} not found (or private without the bot in it)",
                        "set ESM_SLACK_CHANNEL to the channel id (C…/G…) and invite the bot there")
        return fail("slack channel", str(exc), "check the channel id and the bot's access")
    name = f"#{info.name} ({channel})" if info.name else channel
    if info.is_archived:
        return fail("slack channel", f"{name} is archived", "unarchive it or choose another channel")
    if not info.is_member:
        return fail("slack channel", f"the bot is not a member of {name}", "invite it: /invite @esm-bot in that channel")
    return ok("slack channel", f"member of {name}")


async def socket_mode_check(settings: Settings) -> list[Result]:
    if settings.slack_app_token is None:
        return [skip("slack socket mode", "SLACK_APP_TOKEN unset: Slack reaches the bot over HTTP")]
    probe = SlackProbe(settings.slack_app_token.reveal(), settings.slack_api_url, TIMEOUT)
    try:
        url = await probe.connections_open()
    except SlackProbeError as exc:
        return [fail("slack socket mode", str(exc),
                     "SLACK_APP_TOKEN must be an app-level token (xapp-) with connections:write, and Socket Mode "
                     "must be enabled for the app (settings.socket_mode_enabled: true in the manifest)")]
    scheme = url.split(":", 1)[0] if url else "?"
    return [ok("slack socket mode", f"apps.connections.open issued a {scheme} URL")]


# ---------------------------------------------------------------- Databricks


async def databricks_auth(settings: Settings) -> tuple[list[Result], Identity | None, DatabricksProbe | None]:
    if not settings.databricks_host:
        return [skip("databricks auth", "DATABRICKS_HOST unset: no live cluster lookups, no terminate")], None, None
    token = settings.databricks_token.reveal() if settings.databricks_token else None
    probe = DatabricksProbe(settings.databricks_host, token, TIMEOUT)
    try:
        who = await probe.me()
    except DatabricksProbeError as exc:
        return [fail("databricks auth", str(exc), AUTH_FIX)], None, None
    return [ok("databricks auth", f"{settings.databricks_host} as {who.user_name}")], who, probe


async def audit_source_checks(settings: Settings) -> list[Result]:
    if settings.duckdb_path is not None and not os.path.exists(settings.duckdb_path):
        # opening it would create it: the doctor reads only, so it says what would happen instead
        where = os.path.dirname(os.path.abspath(settings.duckdb_path))
        if os.access(where, os.W_OK):
            told = ok("audit source", f"{settings.duckdb_path} does not exist yet; load-events or serve creates it")
        else:
            told = fail("audit source", f"{where} is not writable", "point ESM_AUDIT_SOURCE at a writable location")
        return [told, *(skip(f"read {t}", "no audit store yet") for t in TABLES)]
    try:
        from bot.runtime import open_source

        source = open_source(settings)
    except ConfigError as exc:
        return [fail("warehouse", str(exc), "set the variable it names"), *(skip(f"read {t}", "no source") for t in TABLES)]
    except Exception as exc:
        return [fail("audit source", f"cannot open {settings.audit_source}: {exc}", "check ESM_AUDIT_SOURCE"),
                *(skip(f"read {t}", "no source") for t in TABLES)]
    try:
        results: list[Result] = []
        if settings.audit_source == "databricks":
            where = getattr(source, "where", "the SQL warehouse")
            try:
                await _sql(source, "SELECT 1 AS ok")
            except Exception as exc:
                results.append(fail("warehouse", str(exc), "start the SQL warehouse (or let it auto-start), and grant "
                                    "the bot's principal CAN USE on it"))
                return results + [skip(f"read {t}", "warehouse unreachable") for t in TABLES]
            results.append(ok("warehouse", f"SELECT 1 on {where}"))
        else:
            results.append(skip("warehouse", f"ESM_AUDIT_SOURCE={settings.audit_source}: the embedded store"))
        for table in TABLES:
            results.append(await _table_check(source, table))
        return results
    finally:
        await source.close()


async def _table_check(source: Any, table: str) -> Result:
    try:
        await _sql(source, f"SELECT * FROM {table} LIMIT 0")
    except Exception as exc:
        return fail(f"read {table}", str(exc)[:300],
                    f"an account admin enables the system schema; grant the bot's principal USE CATALOG on system, "
                    f"USE SCHEMA and SELECT on {table} (needed for: {TABLE_USE[table]})")
    return ok(f"read {table}", "SELECT … LIMIT 0 works")


async def _sql(source: Any, sql: str) -> list[dict[str, Any]]:
    """Both audit sources run Databricks-dialect SQL through their `_run(sql, params)` (the
    DuckDB one translates it); the doctor's probes use that same path, with a timeout."""
    return await asyncio.wait_for(source._run(sql, {}), TIMEOUT + 5)


async def terminate_permission(probe: DatabricksProbe | None, who: Identity | None) -> Result:
    check = "terminate permission"
    if probe is None or who is None:
        return skip(check, "no Databricks auth: the Terminate button cannot work")
    try:
        clusters = await probe.clusters()
    except DatabricksProbeError as exc:
        return fail(check, str(exc), "the bot's principal needs workspace access to list clusters")
    if not clusters:
        return skip(check, "clusters.list works but shows no cluster: nothing to sample")
    cluster_id, name = clusters[0]
    label = f"{name} ({cluster_id})" if name else cluster_id
    limits = "best effort: one sampled cluster; each cluster has its own ACL, and a refusal still shows at click time"
    try:
        access = await probe.cluster_access(cluster_id, who)
    except DatabricksProbeError as exc:
        if exc.forbidden:
            return skip(check, f"clusters.list works; the permissions of {label} are not readable (that needs "
                               f"CAN_MANAGE): cannot tell ahead of a click")
        return skip(check, f"clusters.list works; reading the permissions of {label} failed: {exc}")
    granted = sorted(access.levels & TERMINATE_LEVELS)
    if granted:
        return ok(check, f"{'/'.join(granted)} on {label} ({limits})")
    if access.levels:
        return fail(check, f"only {', '.join(sorted(access.levels))} on {label}",
                    f"grant {who.user_name} CAN_RESTART (or CAN_MANAGE) on the clusters responders may terminate, "
                    "e.g. through the cluster policy, or make it a workspace admin")
    return skip(check, f"{who.user_name} is not named in the ACL of {label} (rights may come through a nested group "
                       f"or workspace admin): {limits}")


# ---------------------------------------------------------------- the playbook's actions (#12)


async def playbook_permissions(settings: Settings, probe: DatabricksProbe | None, who: Identity | None) -> list[Result]:
    """What each enabled playbook action needs, and which of it the bot's principal lacks."""
    results = [_pagerduty(settings)]
    if probe is None or who is None:
        return results + [skip("playbook permissions", "no Databricks auth: Quarantine, Disable user and Revoke"
                                                       " tokens cannot work")]
    results.append(await _quarantine_permission(settings, probe, who))
    admin = ADMINS_GROUP in who.groups
    fix = f"make {who.user_name} a workspace admin (member of the admins group), or leave the action unused"
    results.append(ok("disable / re-enable user", f"{who.user_name} is a workspace admin (SCIM Users patch)") if admin
                   else fail("disable / re-enable user", f"{who.user_name} is not a workspace admin: SCIM refuses"
                                                         " to deactivate users", fix))
    results.append(await _token_permission(probe, who, fix))
    return results


def _pagerduty(settings: Settings) -> Result:
    check = "page on-call"
    if settings.pagerduty_routing_key is None:
        return skip(check, "ESM_PAGERDUTY_ROUTING_KEY is unset: the Page on-call button is not offered")
    key = settings.pagerduty_routing_key.reveal()
    if len(key) != 32:
        return fail(check, f"the routing key has {len(key)} characters; PagerDuty's integration keys have 32",
                    "copy the Events API v2 integration key of the PagerDuty service")
    auto = f"; pages new findings at or above {settings.page_severity}" if settings.page_severity else ""
    return ok(check, f"routing key set, events to {settings.pagerduty_url}{auto} (not sent: a test event would page)")


async def _quarantine_permission(settings: Settings, probe: DatabricksProbe, who: Identity) -> Result:
    check = "quarantine permission"
    if not settings.quarantine_principals:
        return skip(check, "ESM_QUARANTINE_PRINCIPALS is unset: the Quarantine cluster button is not offered")
    try:
        clusters = await probe.clusters(1)
    except DatabricksProbeError as exc:
        return fail(check, str(exc), "the bot's principal needs workspace access to list clusters")
    if not clusters:
        return skip(check, "no cluster to sample")
    cluster_id, name = clusters[0]
    label = f"{name} ({cluster_id})" if name else cluster_id
    fix = (f"grant {who.user_name} CAN_MANAGE on the clusters responders may quarantine (e.g. through the cluster"
           " policy), or make it a workspace admin")
    if ADMINS_GROUP in who.groups:
        return ok(check, f"{who.user_name} is a workspace admin: it can manage every cluster's permissions")
    try:
        access = await probe.cluster_access(cluster_id, who)
    except DatabricksProbeError as exc:
        if exc.forbidden:
            return fail(check, f"the permissions of {label} are not readable: Quarantine needs CAN_MANAGE", fix)
        return skip(check, f"reading the permissions of {label} failed: {exc}")
    if access.levels & MANAGE_LEVELS:
        return ok(check, f"CAN_MANAGE on {label} (one sampled cluster; each has its own ACL)")
    held = ", ".join(sorted(access.levels)) or "no direct grant"
    return fail(check, f"{held} on {label}: Quarantine needs CAN_MANAGE to replace the ACL", fix)


async def _token_permission(probe: DatabricksProbe, who: Identity, fix: str) -> Result:
    check = "revoke tokens"
    try:
        count = await probe.tokens_readable()
    except DatabricksProbeError as exc:
        if exc.forbidden:
            return fail(check, f"token management refuses {who.user_name}: Revoke tokens cannot list or delete", fix)
        return skip(check, f"token management failed: {exc}")
    return ok(check, f"token management lists {count} token(s): Revoke tokens can list and delete")
