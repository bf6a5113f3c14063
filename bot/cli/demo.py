"""`esm-bot demo`: the whole bot on embedded defaults, no account needed.

It starts local stand-ins for Slack and the Databricks API (the same emulators the tests use),
loads sample Capsule8 events into an embedded DuckDB audit store, starts the real bot server,
and sends it a Databricks SQL alert webhook exactly as a workspace would. The findings arrive
through the real Slack client; they are printed here and shown on the Slack stand-in's page,
which renders them as Slack does and sends every click, modal and `/esm` command back to the
bot signed as Slack signs them (emulators/slack_ui.py).
"""
from __future__ import annotations

import asyncio
import io
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.adapters.duckdb_source import DuckDBSource
from bot.app import build_app
from bot.config import load_settings
from bot.runtime import Runtime, build_runtime
from bot.cli.samples import SAMPLE_CLUSTERS, sample_cluster_records, sample_node_timeline, sample_rows
from emulators.databricks import DatabricksEmulator
from emulators.pagerduty import TEST_ROUTING_KEY, PagerDutyEmulator
from emulators.slack import SlackEmulator, blocks_to_text

CHANNEL = "C0ESMDEMO"
ALERT: dict[str, Any] = {
    "event": "alert_state_change",
    "url_base": "https://dbc-demo.cloud.databricks.com",
    "alert": {"title": "ESM: Kernel Related Events", "alert": {"id": "demo-alert", "name": "ESM: Kernel Related Events"}},
}


def _seed_workspace(dbx: DatabricksEmulator) -> None:
    dbx.groups.add("security-team")  # ESM_QUARANTINE_PRINCIPALS: who keeps a quarantined cluster (#12)
    dbx.user_groups.append("admins")  # the bot's principal may disable users and revoke tokens
    for cluster_id, name, owner, mode, driver, executors in SAMPLE_CLUSTERS:
        dbx.add_cluster(
            cluster_id, name=name, creator=owner, data_security_mode=mode,
            single_user=owner if mode == "SINGLE_USER" else None, policy_id="E0631F5C0D000A2B",
            driver_instance_id=driver, executor_instance_ids=executors,
        )


def _seed_audit_store(path: Path) -> int:
    source = DuckDBSource(str(path))
    source.insert_node_timeline(sample_node_timeline())
    source.insert_clusters(sample_cluster_records())
    return source.insert_rows(sample_rows())


async def _send_alert(port: int, user: str, password: str) -> int:
    headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"http://127.0.0.1:{port}/webhooks/dbsql", json=ALERT) as response:
            return response.status


async def _wait_delivered(runtime: Runtime, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    await asyncio.sleep(0.2)
    while time.monotonic() < deadline:
        if not runtime.syncs.busy and await runtime.store.outbox_depth() == 0:
            return
        runtime.outbox.kick()
        await asyncio.sleep(0.2)


def _print_channel(slack: SlackEmulator) -> None:
    for message in slack.messages(CHANNEL):
        print("=" * 78)
        print(blocks_to_text(message.get("blocks") or []) or message.get("text", ""))
        for reply in slack.thread(CHANNEL, message["ts"]):
            print("    ↳ " + (blocks_to_text(reply.get("blocks") or []) or reply.get("text", "")).replace("\n", "\n      "))
    print("=" * 78)


MARKER = ".esm-bot-demo"  # written into every folder the demo makes: only such a folder is ever emptied


class DemoDirError(ValueError):
    """--dir names a folder the demo must not empty; the message says why in one line."""


def prepare_workdir(workdir: Path) -> None:
    """Make `workdir` an empty folder of the demo's: a new or empty folder gets the marker; a
    folder with the marker is emptied; anything else (a file, a link, a folder with other things
    in it) is refused and left as it is."""
    if workdir.is_symlink() or (workdir.exists() and not workdir.is_dir()):
        raise DemoDirError(f"{workdir} is not a folder: nothing was changed; choose a new or empty folder with --dir")
    if workdir.is_dir() and any(workdir.iterdir()):
        marker = workdir / MARKER
        if marker.is_symlink() or not marker.is_file():
            raise DemoDirError(f"{workdir} is not empty and was not made by esm-bot demo: nothing was deleted; "
                               "choose a new or empty folder with --dir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `esm-bot demo`, which empties this folder on its next run\n")


RESPONDER, OUTSIDER = "U0RESPONDER", "U0OUTSIDER"  # the page's "acting as" choices
DEMO_USERS = {RESPONDER: "responder", OUTSIDER: "outsider"}


@dataclass
class Demo:
    """A running demo: the Slack and Databricks stand-ins, the bot, and how to poke it."""

    slack: SlackEmulator
    dbx: DatabricksEmulator
    runtime: Runtime
    port: int
    password: str
    audit_path: Path
    pager: PagerDutyEmulator | None = None  # the PagerDuty Events v2 stand-in (#12)

    @property
    def page_url(self) -> str:
        return f"{self.slack.base_url}/"

    async def send_alert(self) -> int:
        """The Databricks SQL alert webhook, as the workspace sends it; the HTTP status."""
        return await _send_alert(self.port, "databricks", self.password)

    async def load_events(self, data: bytes) -> str:
        """JSON-lines audit rows into the demo's DuckDB store (what `esm-bot load-events` does)."""
        from bot.cli.loader import load_jsonl

        result = await asyncio.to_thread(load_jsonl, io.BytesIO(data), str(self.audit_path))
        said = f"loaded {result.inserted} rows, {result.duplicates} duplicate event ids skipped"
        if result.bad_lines:
            line, problem = result.bad_lines[0]
            said += f", {len(result.bad_lines)} bad lines (line {line}: {problem})"
        return said + "; press Send DBSQL alert to have the bot look for them"

    async def delivered(self, timeout: float = 60.0) -> None:
        await _wait_delivered(self.runtime, timeout)
        if self.runtime.autopager is not None and self.runtime.autopager.tasks:  # automatic pages, then their notes
            await asyncio.gather(*self.runtime.autopager.tasks, return_exceptions=True)
            await _wait_delivered(self.runtime, timeout)


@asynccontextmanager
async def demo_stack(workdir: Path, port: int = 0) -> AsyncIterator[Demo]:
    """Everything `esm-bot demo` runs, up and wired: the bot on `port` (0: any free port), the
    Slack stand-in and its page on port+1 (any free port with 0). Nothing is sent yet."""
    prepare_workdir(workdir)
    slack_token = "xoxb-demo-" + secrets.token_hex(8)
    signing_secret = secrets.token_hex(16)
    async with SlackEmulator(token=slack_token, port=port + 1 if port else 0) as slack, DatabricksEmulator() as dbx, \
            PagerDutyEmulator(port=port + 2 if port else 0) as pager:
        _seed_workspace(dbx)
        audit_path = workdir / "audit.duckdb"
        loaded = _seed_audit_store(audit_path)
        password = secrets.token_urlsafe(16)
        settings = load_settings({
            "SLACK_BOT_TOKEN": slack_token,
            "SLACK_SIGNING_SECRET": signing_secret,
            "ESM_SLACK_CHANNEL": CHANNEL,
            "SLACK_API_URL": slack.api_url,
            "DATABRICKS_HOST": dbx.host,
            "DATABRICKS_TOKEN": "dapi-demo",
            "ESM_WORKSPACE_URL": ALERT["url_base"],
            "ESM_AUDIT_SOURCE": f"duckdb:{audit_path}",
            "ESM_STATE_PATH": str(workdir / "state.sqlite3"),
            "ESM_WEBHOOK_USER": "databricks",
            "ESM_WEBHOOK_PASSWORD": password,
            "ESM_RESPONDERS": RESPONDER,
            "ESM_SLACK_POST_INTERVAL": "0.05",  # the local stand-in has no rate limit
            # the responder's playbook (#12): quarantine keeps the security team; critical findings page
            "ESM_QUARANTINE_PRINCIPALS": "group:security-team",
            "ESM_PAGERDUTY_ROUTING_KEY": TEST_ROUTING_KEY,
            "ESM_PAGERDUTY_URL": pager.url,
            "ESM_PAGE_SEVERITY": "high",
        })
        runtime = await build_runtime(settings)
        runner = web.AppRunner(build_app(runtime), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        bot_port = runner.addresses[0][1]
        demo = Demo(slack, dbx, runtime, bot_port, password, audit_path, pager)
        # the page's clicks reach the bot signed as Slack signs them; its two demo buttons
        slack.app_url = f"http://127.0.0.1:{bot_port}/slack/events"
        slack.signing_secret = signing_secret
        slack.ui_users = dict(DEMO_USERS)
        slack.ui_hooks = {"send_alert": lambda body: _alert_said(demo), "load_events": demo.load_events}
        try:
            print(f"loaded {loaded} sample audit rows into {audit_path}")
            yield demo
        finally:
            await runner.cleanup()


async def _alert_said(demo: Demo) -> str:
    status = await demo.send_alert()
    return f"sent the Databricks SQL alert webhook: HTTP {status}"


async def run_demo(workdir: Path, port: int, *, once: bool = False) -> int:
    async with demo_stack(workdir, port) as demo:
        status = await demo.send_alert()
        print(f"sent a Databricks SQL alert webhook to http://127.0.0.1:{demo.port}/webhooks/dbsql -> HTTP {status}")
        await demo.delivered()
        _print_channel(demo.slack)
        for incident in (demo.pager.incidents.values() if demo.pager is not None else ()):
            print(f"PagerDuty stand-in: incident {incident.status} ({incident.severity}): {incident.summary}")
        print(f"{len(demo.slack.messages(CHANNEL))} findings posted to {CHANNEL}; "
              f"Slack API calls: {len(demo.slack.calls)}")
        if once:
            return 0
        print(f"open {demo.page_url} to see the findings as Slack shows them and click them "
              f"(acting as {DEMO_USERS[RESPONDER]}, a responder; switch to {DEMO_USERS[OUTSIDER]} to see a refusal)")
        print("the page sends alerts, loads events and runs /esm commands; Ctrl-C stops the demo")
        await asyncio.Event().wait()
    return 0
