"""The reliability harness: the REAL bot (`python -m bot.cli serve`) as a child process, against
the Slack and Databricks emulators running on an event loop in a background thread of the test
process, with an embedded DuckDB audit file and a SQLite state file in the test's folder.

Tests stay synchronous: they start, kill (SIGKILL) and restart the bot, send it real webhooks
and signed Slack requests over HTTP, and read the emulators' state through `EmulatorHost.call`
(which runs on the emulators' own loop, so nothing races their bookkeeping). Each test reports
its figures with `record()`: one printed line and one JSON line in the results file that
`python -m tests.reliability.report` summarises.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import requests

from bot.adapters.duckdb_source import DuckDBSource
from bot.render.blocks import limit_violations
from emulators.databricks import DatabricksEmulator
from emulators.slack import SlackEmulator
from emulators.slack_signing import signed_form_headers

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("ESM_RELIABILITY_RESULTS", Path(__file__).with_name("last-run.jsonl")))
RUN_ID = os.environ.get("ESM_RELIABILITY_RUN") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")

CHANNEL = "C0RELIABLE"
# Known secret values: every bot log is searched for them (see BotProcess.stop).
SLACK_TOKEN = "xoxb-reliability-4d1c8a77e0b2"
SIGNING_SECRET = "rel-signing-secret-9be3f05a"
WEBHOOK_USER, WEBHOOK_PASSWORD = "databricks", "rel-webhook-password-c71d2e"
DBX_TOKEN = "dapi-reliability-5a0f93b1"
SECRETS = (SLACK_TOKEN, SIGNING_SECRET, WEBHOOK_PASSWORD, DBX_TOKEN)
RESPONDER = "U0RESPONDER"
WORKSPACE_ID = 1234567890123456

FINDING_EVENT, THREAD_EVENT = "esm_finding", "esm_thread_item"
ALERT = {
    "event": "alert_state_change", "url_base": "https://dbc-rel.cloud.databricks.com",
    "alert": {"title": "ESM", "alert": {"id": "a-rel", "name": "ESM reliability", "evaluations": []}},
}


# ------------------------------------------------------------------------------- results


def record(test: str, line: str, **figures: Any) -> None:
    """Print one figures line and append it, with the numbers, to the results file."""
    print(f"\n[reliability] {line}", flush=True)
    entry = {"run": RUN_ID, "test": test, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "line": line, **figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, default=str) + "\n")


# ------------------------------------------------------------------------------- emulators


class EmulatorHost:
    """Slack and Databricks emulators on their own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="emulators", daemon=True)
        self.thread.start()
        self.slack: SlackEmulator = self.run(SlackEmulator(token=SLACK_TOKEN).start())
        self.dbx: DatabricksEmulator = self.run(DatabricksEmulator(token=DBX_TOKEN).start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the emulators' loop (their state is only ever touched there)."""

        async def on_loop() -> T:
            return fn(*args, **kwargs)

        return self.run(on_loop())

    # Slack state, read on the emulators' loop
    def messages(self) -> list[dict[str, Any]]:
        return self.call(self.slack.messages, CHANNEL)

    def all_messages(self) -> list[dict[str, Any]]:
        """Every message of the channel, replies included, in the order Slack stored them."""
        return self.call(lambda: json.loads(json.dumps(self.slack._messages.get(CHANNEL, []))))

    def calls(self, method: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return self.call(lambda: [(c.method, json.loads(json.dumps(c.params, default=str)))
                                  for c in self.slack.calls if method in (None, c.method)])

    def close(self) -> None:
        try:
            self.run(self.slack.stop())
            self.run(self.dbx.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def add_clusters(host: EmulatorHost, count: int, executors: int = 2) -> dict[str, list[str]]:
    """`count` running clusters; returns cluster id -> its instance ids (driver first)."""
    clusters: dict[str, list[str]] = {}
    for n in range(count):
        cluster_id = f"0101-000000-rel{n:04d}"
        driver = f"i-0d{n:015x}"
        workers = [f"i-0e{n:09x}{k:06x}" for k in range(executors)]
        host.call(host.dbx.add_cluster, cluster_id, name=f"team-{n}-shared", creator=f"owner{n}@example.com",
                  driver_instance_id=driver, executor_instance_ids=workers)
        clusters[cluster_id] = [driver, *workers]
    return clusters


# ------------------------------------------------------------------------------- audit rows


def capsule8(event_id: str, detection: str, instance: str, at: datetime, **params: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_time": at.isoformat(), "workspace_id": WORKSPACE_ID,
        "service_name": "capsule8-alerts-dataplane", "action_name": detection,
        "request_params": {"instanceId": instance, **params},
        "response": {"status_code": 200}, "user_identity": {"email": None},
    }


def notebook_command(event_id: str, cluster_id: str, at: datetime, user: str, text: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_time": at.isoformat(), "workspace_id": WORKSPACE_ID,
        "service_name": "notebook", "action_name": "runCommand",
        "request_params": {"clusterId": cluster_id, "notebookId": "nb-1", "commandText": text},
        "response": {"status_code": 200}, "user_identity": {"email": user},
    }


def now() -> datetime:
    return datetime.now(timezone.utc)


def seed(audit_path: Path, rows: list[dict[str, Any]]) -> int:
    """Insert rows into the embedded audit file (only while no bot process has it open)."""
    return DuckDBSource(str(audit_path)).insert_rows(rows)


# ------------------------------------------------------------------------------- the bot process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LogScan:
    files: int = 0
    bytes: int = 0
    found: int = 0


LOG_SCAN = LogScan()  # every bot log of this test session, searched for the known secrets


class BotProcess:
    """`python -m bot.cli serve` in its own process; its output goes to a log file per start."""

    def __init__(self, folder: Path, host: EmulatorHost, **env: str):
        self.folder = folder
        self.host = host
        self.audit_path = folder / "audit.duckdb"
        self.state_path = folder / "state.sqlite3"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
            "DATABRICKS_CONFIG_FILE": str(folder / "no-databrickscfg"),
            "SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "ESM_SLACK_CHANNEL": CHANNEL, "SLACK_API_URL": host.slack.api_url,
            "DATABRICKS_HOST": host.dbx.host, "DATABRICKS_TOKEN": DBX_TOKEN,
            "ESM_AUDIT_SOURCE": f"duckdb:{self.audit_path}", "ESM_STATE_PATH": str(self.state_path),
            "ESM_WEBHOOK_USER": WEBHOOK_USER, "ESM_WEBHOOK_PASSWORD": WEBHOOK_PASSWORD,
            "ESM_SLACK_POST_INTERVAL": "0", "ESM_DATABRICKS_TIMEOUT": "3", "ESM_RESPONDERS": RESPONDER,
            "ESM_LOG_LEVEL": "INFO", **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0
        self.kills = 0
        self.logs: list[Path] = []

    # -- lifecycle

    def start(self, timeout: float = 60) -> "BotProcess":
        port = free_port()
        self.starts += 1
        log_path = self.folder / f"bot-{self.starts}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the bot did not answer /healthz within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, exactly like a host losing the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1
        self.proc = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then search every log of this bot for the known secrets."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        self.assert_no_secret_in_logs()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_no_secret_in_logs(self) -> None:
        for path in self.logs:
            data = path.read_bytes() if path.exists() else b""
            LOG_SCAN.files += 1
            LOG_SCAN.bytes += len(data)
            leaked = [s for s in SECRETS if s.encode() in data]
            LOG_SCAN.found += len(leaked)
            assert not leaked, f"{path} contains {len(leaked)} known secret value(s)"
        self.logs_scanned, self.logs = list(self.logs), []

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- requests

    def webhook(self, password: str = WEBHOOK_PASSWORD) -> int:
        response = requests.post(self.url + "/webhooks/dbsql", json=ALERT, auth=(WEBHOOK_USER, password), timeout=10)
        return response.status_code

    def slack_request(self, body: bytes, headers: dict[str, str] | None = None, *, secret: str = SIGNING_SECRET,
                      timestamp: int | None = None, signed: bool = True) -> requests.Response:
        base = signed_form_headers(secret, body, timestamp) if signed else {"Content-Type": "application/x-www-form-urlencoded"}
        return requests.post(self.url + "/slack/events", data=body, headers={**base, **(headers or {})}, timeout=15)

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # -- the state store, read from outside (short read-only connections)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.state_path.exists():
            return []
        con = sqlite3.connect(f"file:{self.state_path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            con.close()

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def stored_events(self) -> int:
        return self.scalar("SELECT count(*) FROM events") or 0

    def outbox_pending(self) -> int:
        return self.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'") or 0

    def watermark(self) -> datetime | None:
        text = self.scalar("SELECT value FROM meta WHERE key = 'watermark'")
        return None if text is None else datetime.fromisoformat(text)

    def wait_drained(self, events: int, timeout: float, kick: float = 5.0) -> float:
        """Until `events` events are stored and the outbox is empty (stable for a moment);
        re-sends the webhook every `kick` seconds. Returns the seconds it took."""
        started = time.monotonic()
        deadline, last_kick, stable = started + timeout, started, 0
        while time.monotonic() < deadline:
            assert self.alive(), f"the bot died:\n{self.log_tail()}"
            done = self.stored_events() >= events and self.outbox_pending() == 0
            stable = stable + 1 if done else 0
            if stable >= 3:
                return time.monotonic() - started
            if time.monotonic() - last_kick > kick:
                self.webhook()
                last_kick = time.monotonic()
            time.sleep(0.1)
        raise AssertionError(
            f"not drained in {timeout}s: {self.stored_events()}/{events} events stored, "
            f"{self.outbox_pending()} outbox items pending\n{self.log_tail()}"
        )


# ------------------------------------------------------------------------------- delivery checks


@dataclass
class Delivery:
    parents: int
    duplicate_parents: int
    missing_parents: int
    unexpected_parents: int
    replies: int
    duplicate_replies: int
    out_of_order_threads: int
    limit_violations: int


def _key(message: dict[str, Any], event_type: str) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != event_type:
        return None
    return (metadata.get("event_payload") or {}).get("key")


def delivered_keys(host: EmulatorHost) -> set[str]:
    """Every finding key and thread item key Slack holds."""
    keys = set()
    for message in host.all_messages():
        key = _key(message, FINDING_EVENT) or _key(message, THREAD_EVENT)
        if key is not None:
            keys.add(key)
    return keys


def check_delivery(host: EmulatorHost, bot: BotProcess) -> Delivery:
    """Compare what Slack holds with the state store: each finding's parent exactly once, each
    thread item exactly once, in each thread in outbox-id order; every message within limits."""
    messages = host.all_messages()
    parents = [m for m in messages if m.get("thread_ts") in (None, m["ts"])]
    parent_keys = Counter(_key(m, FINDING_EVENT) for m in parents)
    findings = {row[0] for row in bot.query("SELECT key FROM findings")}
    reply_keys: Counter[str] = Counter()
    threads: dict[str, list[int]] = {}
    for message in messages:
        key = _key(message, THREAD_EVENT)
        if key is None or message.get("thread_ts") in (None, message["ts"]):
            continue
        reply_keys[key] += 1
        threads.setdefault(message["thread_ts"], []).append(int(key.rsplit(":", 1)[1]))
    disorder = sum(1 for ids in threads.values() if ids != sorted(ids))
    violations = sum(1 for m in messages if limit_violations(m.get("blocks") or [], m.get("text")))
    return Delivery(
        parents=len(parents),
        duplicate_parents=sum(n - 1 for n in parent_keys.values() if n > 1),
        missing_parents=len(findings - set(parent_keys)),
        unexpected_parents=len(set(parent_keys) - findings),
        replies=sum(reply_keys.values()),
        duplicate_replies=sum(n - 1 for n in reply_keys.values() if n > 1),
        out_of_order_threads=disorder,
        limit_violations=violations,
    )


def assert_exactly_once(delivery: Delivery, bot: BotProcess, host: EmulatorHost) -> None:
    """Parents: exactly the findings, once each. Thread items: every sent reply and note is in
    its thread once; digests may be merged by the outbox (several pending digests of a finding
    posted as one), so each digest in Slack is one of the sent ones; nothing else is there."""
    dead = bot.query("SELECT id, kind, last_error FROM outbox WHERE state <> 'sent'")
    assert dead == [], f"outbox items not delivered: {dead[:5]}"
    assert delivery.duplicate_parents == 0, delivery
    assert delivery.missing_parents == 0 and delivery.unexpected_parents == 0, delivery
    assert delivery.duplicate_replies == 0, delivery
    assert delivery.out_of_order_threads == 0, delivery
    sent = {f"{key}:{item}": kind for key, item, kind in bot.query(
        "SELECT finding_key, id, kind FROM outbox WHERE kind IN ('reply', 'digest', 'note') AND state = 'sent'")}
    in_slack = {k for k in delivered_keys(host) if ":" in k}
    missing = [k for k, kind in sent.items() if kind != "digest" and k not in in_slack]
    unexpected = in_slack - set(sent)
    assert missing == [], f"{len(missing)} sent thread items not in Slack, e.g. {missing[:3]}"
    assert unexpected == set(), f"{len(unexpected)} thread messages no outbox item sent, e.g. {sorted(unexpected)[:3]}"
    assert delivery.limit_violations == 0, delivery


def source_event_ids(audit_path: Path) -> set[str]:
    import duckdb

    con = duckdb.connect(str(audit_path), read_only=True)
    try:
        rows = con.execute(
            "SELECT event_id FROM access.audit WHERE service_name = 'capsule8-alerts-dataplane'").fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def minutes_ago(minutes: float) -> datetime:
    return now() - timedelta(minutes=minutes)
