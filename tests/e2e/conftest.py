"""The real bot server on a loopback port, against the Slack and Databricks emulators, with an
embedded DuckDB audit store and a SQLite state store in the test's own folder."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.cli import audit_rows
from bot.adapters.duckdb_source import DuckDBSource
from bot.cli.audit_rows import WORKSPACE_ID, capsule8_row, notebook_command_row  # WORKSPACE_ID: for the tests
from bot.app import build_app
from bot.config import load_settings
from bot.runtime import Runtime, build_runtime
from emulators.databricks import DatabricksEmulator
from emulators.slack import SlackEmulator, blocks_to_text
from emulators.slack_signing import block_actions_body, signed_form_headers, slash_command_body
from tests.payloads import DOCUMENTED_CURRENT

CHANNEL = "C0FINDINGS"
SLACK_TOKEN = "xoxb-e2e-token-7f3a9c"
SIGNING_SECRET = "e2e-signing-secret-5d1e"
WEBHOOK_USER, WEBHOOK_PASSWORD = "databricks", "e2e-webhook-password-92b1"
DBX_TOKEN = "dapi-e2e-token-44c0"
ADMIN_TOKEN = "e2e-admin-token-0b7d31"  # ESM_ADMIN_TOKEN: shows /readyz's details
RESPONDER = "U0RESPONDER"
OUTSIDER = "U0OUTSIDER"

# what a current (AlertsV2) alert sends: Databricks' documented example (tests/payloads.py)
CURRENT_PAYLOAD = DOCUMENTED_CURRENT
LEGACY_PAYLOAD = {
    "event": "TRIGGERED",
    "url_base": "https://dbc-e2e.cloud.databricks.com",
    "alert": {"id": "legacy-7", "name": "ESM legacy", "state": "TRIGGERED", "query_id": "q-1"},
}


def capsule8(event_id: str, detection: str, instance: str, minutes_ago: float, **params: Any) -> dict[str, Any]:
    return capsule8_row(event_id, detection, instance, audit_rows.minutes_ago(minutes_ago), **params)


def notebook_command(event_id: str, cluster_id: str, minutes_ago: float, user: str, text: str) -> dict[str, Any]:
    return notebook_command_row(event_id, cluster_id, audit_rows.minutes_ago(minutes_ago), user, text)


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


class Bot:
    def __init__(self, folder: Path, slack: SlackEmulator, dbx: DatabricksEmulator, **env: str):
        self.folder = folder
        self.slack = slack
        self.dbx = dbx
        self.audit_path = str(folder / "audit.duckdb")
        self.env = {
            "SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "ESM_SLACK_CHANNEL": CHANNEL, "SLACK_API_URL": slack.api_url,
            "DATABRICKS_HOST": dbx.host, "DATABRICKS_TOKEN": DBX_TOKEN,
            "ESM_AUDIT_SOURCE": f"duckdb:{self.audit_path}", "ESM_STATE_PATH": str(folder / "state.sqlite3"),
            "ESM_WEBHOOK_USER": WEBHOOK_USER, "ESM_WEBHOOK_PASSWORD": WEBHOOK_PASSWORD,
            "ESM_DATABRICKS_TIMEOUT": "2", "ESM_SLACK_POST_INTERVAL": "0", "ESM_RESPONDERS": f"{RESPONDER} S0SECTEAM",
            "ESM_ADMIN_TOKEN": ADMIN_TOKEN, **env,
        }
        self.source = DuckDBSource(self.audit_path)
        self.runtime: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.last_response_url = ""
        self.last_ack: Any = None

    async def start(self) -> "Bot":
        self.runtime = await build_runtime(load_settings(self.env))
        self.runner = web.AppRunner(build_app(self.runtime))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def add(self, *rows: dict[str, Any]) -> None:
        self.source.insert_rows(list(rows))

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url + path, data=body, headers=headers or {}) as response:
                text = await response.text()
                try:
                    return response.status, await response.json(content_type=None)
                except ValueError:
                    return response.status, text

    async def webhook(self, payload: dict[str, Any] | None = None, *, user: str = WEBHOOK_USER,
                      password: str = WEBHOOK_PASSWORD) -> tuple[int, Any]:
        import json

        body = json.dumps(payload if payload is not None else CURRENT_PAYLOAD).encode()
        return await self.post("/webhooks/dbsql", body, {"Content-Type": "application/json", **basic_auth(user, password)})

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait until no sync runs and nothing is left to send."""
        assert self.runtime is not None
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0.05)
        while time.monotonic() < deadline:
            if not self.runtime.syncs.busy and await self.runtime.store.outbox_depth() == 0:
                return
            self.runtime.outbox.kick()
            await asyncio.sleep(0.05)
        raise AssertionError("the bot did not settle in time")

    async def healthy(self) -> bool:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + "/healthz") as response:
                return response.status == 200

    async def slack_request(self, body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST /slack/events signed exactly as Slack signs it (or with another secret/time)."""
        signed = signed_form_headers(secret, body, timestamp)
        return await self.post("/slack/events", body, {**signed, **(headers or {})})

    async def click(self, message: dict[str, Any], action_id: str, user_id: str = RESPONDER, **extra: Any) -> tuple[int, Any]:
        """Click a button of a posted finding, as Slack would send it."""
        current = self.slack.message(CHANNEL, message["ts"]) or message
        button = next(e for b in current["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == action_id)
        response_url = self.slack.new_response_url(CHANNEL, message["ts"])
        extra.setdefault("trigger_id", self.slack.trigger_id())  # it opens a view within 3 s, once
        body = block_actions_body(action_id=action_id, value=extra.pop("value", button["value"]), user_id=user_id,
                                  channel_id=CHANNEL, message=current, response_url=response_url, **extra)
        status, answer = await self.slack_request(body)
        self.last_response_url = response_url
        return status, answer

    async def command(self, text: str, user_id: str = RESPONDER) -> str:
        """Run /esm TEXT; returns the id of its response_url (read answers with slack.responses)."""
        response_url = self.slack.new_response_url(CHANNEL)
        body = slash_command_body(text=text, user_id=user_id, channel_id=CHANNEL, response_url=response_url)
        status, answer = await self.slack_request(body)
        assert status == 200, answer
        self.last_ack = answer
        return response_url

    async def answers(self, response_url: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait for `count` answers posted to a response_url."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.slack.responses(response_url)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} answer(s) at {response_url}, got {self.slack.responses(response_url)}")

    def findings(self) -> list[dict[str, Any]]:
        return self.slack.messages(CHANNEL)

    def text_of(self, message: dict[str, Any]) -> str:
        current = self.slack.message(CHANNEL, message["ts"]) or message
        return blocks_to_text(current.get("blocks") or [])

    def replies(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return self.slack.thread(CHANNEL, message["ts"])

    def details(self, message: dict[str, Any]) -> str:
        """The text of a compact finding's details reply, which must be the first in its thread."""
        replies = self.replies(message)
        assert replies, "the finding has no details reply"
        assert replies[0]["metadata"]["event_payload"]["key"].endswith(":details"), "the details reply comes first"
        return blocks_to_text(replies[0].get("blocks") or [])

    def repeats(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """The thread replies after the details reply: repeats, digests and notes."""
        return [r for r in self.replies(message) if not r["metadata"]["event_payload"]["key"].endswith(":details")]


@pytest.fixture
async def slack():
    async with SlackEmulator(token=SLACK_TOKEN, usergroups={"S0SECTEAM": ["U0TEAMMATE"]}) as emulator:
        yield emulator


@pytest.fixture
async def dbx():
    async with DatabricksEmulator(token=DBX_TOKEN) as emulator:
        emulator.add_cluster(
            "0101-000000-ds0001", name="data-science-shared", creator="dana@example.com",
            data_security_mode="USER_ISOLATION", policy_id="POL123",
            driver_instance_id="i-0driver000000001", executor_instance_ids=["i-0exec0000000001", "i-0exec0000000002"],
        )
        emulator.add_cluster(
            "0101-000000-etl002", name="nightly-etl", creator="etl@example.com", single_user="etl@example.com",
            data_security_mode="SINGLE_USER", driver_instance_id="i-0etl00000000001",
        )
        yield emulator


@pytest.fixture
async def bot(tmp_path, slack, dbx):
    instance = Bot(tmp_path, slack, dbx)
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
def warehouse(tmp_path):
    """The Thrift SQL warehouse stand-in over the same DuckDB file the Bot helper seeds through
    bot.add(): the warehouse serves those rows."""
    from emulators.thrift_sql import ThriftSQLEmulator

    with ThriftSQLEmulator(tmp_path / "audit.duckdb", token=DBX_TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def warehouse_bot(tmp_path, slack, dbx, warehouse):
    """The bot reading the audit table through the SQL warehouse (databricks-sql-connector)."""
    instance = Bot(tmp_path, slack, dbx, ESM_AUDIT_SOURCE="databricks", ESM_WAREHOUSE_URI=warehouse.uri,
                   ESM_WAREHOUSE_HTTP_PATH=warehouse.http_path, ESM_WAREHOUSE_TIMEOUT="20")
    await instance.start()
    yield instance
    await instance.stop()
