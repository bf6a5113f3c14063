"""`esm-bot demo`: the whole bot on embedded defaults, no account needed.

It starts local stand-ins for Slack and the Databricks API (the same emulators the tests use),
loads sample Capsule8 events into an embedded DuckDB audit store, starts the real bot server,
and sends it a Databricks SQL alert webhook exactly as a workspace would. The findings arrive
through the real Slack client; they are printed here and shown on the Slack stand-in's page.
"""
from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import time
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


async def run_demo(workdir: Path, port: int, *, once: bool = False) -> int:
    prepare_workdir(workdir)
    slack_token = "xoxb-demo-" + secrets.token_hex(8)
    async with SlackEmulator(token=slack_token, port=port + 1) as slack, DatabricksEmulator() as dbx, \
            PagerDutyEmulator(port=port + 2) as pager:
        _seed_workspace(dbx)
        loaded = _seed_audit_store(workdir / "audit.duckdb")
        password = secrets.token_urlsafe(16)
        settings = load_settings({
            "SLACK_BOT_TOKEN": slack_token,
            "SLACK_SIGNING_SECRET": secrets.token_hex(16),
            "ESM_SLACK_CHANNEL": CHANNEL,
            "SLACK_API_URL": slack.api_url,
            "DATABRICKS_HOST": dbx.host,
            "DATABRICKS_TOKEN": "dapi-demo",
            "ESM_WORKSPACE_URL": ALERT["url_base"],
            "ESM_AUDIT_SOURCE": f"duckdb:{workdir / 'audit.duckdb'}",
            "ESM_STATE_PATH": str(workdir / "state.sqlite3"),
            "ESM_WEBHOOK_USER": "databricks",
            "ESM_WEBHOOK_PASSWORD": password,
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
        try:
            print(f"loaded {loaded} sample audit rows into {workdir / 'audit.duckdb'}")
            status = await _send_alert(port, "databricks", password)
            print(f"sent a Databricks SQL alert webhook to http://127.0.0.1:{port}/webhooks/dbsql -> HTTP {status}")
            await _wait_delivered(runtime)
            if runtime.autopager is not None:  # the automatic pages, then their thread notes
                await asyncio.gather(*runtime.autopager.tasks, return_exceptions=True)
                await _wait_delivered(runtime)
            _print_channel(slack)
            for key, incident in pager.incidents.items():
                print(f"PagerDuty stand-in: incident {incident.status} ({incident.severity}): {incident.summary}")
            print(f"{len(slack.messages(CHANNEL))} findings posted to {CHANNEL}; "
                  f"Slack API calls: {len(slack.calls)}; see them at {slack.base_url}/")
            if not once:
                print("the bot keeps running; add events with `esm-bot load-events` "
                      f"(ESM_AUDIT_SOURCE=duckdb:{workdir / 'audit.duckdb'}) and send the webhook again; Ctrl-C stops",
                      file=sys.stderr)
                await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    return 0
