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
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot.cli.audit_rows import capsule8_row, minutes_ago, notebook_command_row  # minutes_ago: for the tests
from bot.render.blocks import limit_violations
from emulators import botprocess
from emulators.botprocess import BotIdentity, LogScan
from emulators.databricks import DatabricksEmulator
from emulators.slack import SlackEmulator

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
RESPONDER = "U0RESPONDER"

FINDING_EVENT, THREAD_EVENT = "esm_finding", "esm_thread_item"
ALERT = {
    "event": "alert_state_change", "url_base": "https://dbc-rel.cloud.databricks.com",
    "alert": {"title": "ESM", "alert": {"id": "a-rel", "name": "ESM reliability", "evaluations": []}},
}
IDENTITY = BotIdentity(channel=CHANNEL, slack_token=SLACK_TOKEN, signing_secret=SIGNING_SECRET,
                       webhook_user=WEBHOOK_USER, webhook_password=WEBHOOK_PASSWORD, databricks_token=DBX_TOKEN,
                       responders=RESPONDER, alert=ALERT)
SECRETS = IDENTITY.secrets


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

capsule8 = capsule8_row
notebook_command = partial(notebook_command_row, notebook_id="nb-1")


def now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------------------- the bot process


LOG_SCAN = LogScan()  # every bot log of this test session, searched for the known secrets


class BotProcess(botprocess.BotProcess):
    """The shared bot process (emulators/botprocess.py) against this suite's emulator host; its
    logs are searched for the known secrets whenever it stops."""

    def __init__(self, folder: Path, host: EmulatorHost, **env: str):
        super().__init__(folder, IDENTITY, slack_api_url=host.slack.api_url, databricks_host=host.dbx.host,
                         env={"ESM_DATABRICKS_TIMEOUT": "3", **env}, cwd=ROOT, log_scan=LOG_SCAN)
        self.host = host

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
    replies: int  # repeats, digests and notes (the details replies are counted apart)
    duplicate_replies: int
    out_of_order_threads: int  # a thread whose items are not in outbox order, or whose details are not first
    limit_violations: int
    details: int = 0  # details replies under compact parents
    missing_details: int = 0  # parents in Slack without their details reply


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
    details: Counter[str] = Counter()
    threads: dict[str, list[int]] = {}
    for message in messages:
        key = _key(message, THREAD_EVENT)
        if key is None or message.get("thread_ts") in (None, message["ts"]):
            continue
        reply_keys[key] += 1
        finding, item = key.rsplit(":", 1)
        if item == "details":  # the first reply of a compact parent's thread
            details[finding] += 1
            threads.setdefault(message["thread_ts"], []).append(0)
            continue
        threads.setdefault(message["thread_ts"], []).append(int(item))
    disorder = sum(1 for ids in threads.values() if ids != sorted(ids))
    violations = sum(1 for m in messages if limit_violations(m.get("blocks") or [], m.get("text")))
    return Delivery(
        parents=len(parents),
        duplicate_parents=sum(n - 1 for n in parent_keys.values() if n > 1),
        missing_parents=len(findings - set(parent_keys)),
        unexpected_parents=len(set(parent_keys) - findings),
        replies=sum(reply_keys.values()) - sum(details.values()),
        duplicate_replies=sum(n - 1 for n in reply_keys.values() if n > 1),
        out_of_order_threads=disorder,
        limit_violations=violations,
        details=sum(details.values()),
        missing_details=len(set(parent_keys) - set(details) - {None}),
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
    assert delivery.missing_details == 0, delivery
    assert delivery.out_of_order_threads == 0, delivery
    sent = {f"{key}:{item}": kind for key, item, kind in bot.query(
        "SELECT finding_key, id, kind FROM outbox WHERE kind IN ('reply', 'digest', 'note') AND state = 'sent'")}
    in_slack = {k for k in delivered_keys(host) if ":" in k and not k.endswith(":details")}
    missing = [k for k, kind in sent.items() if kind != "digest" and k not in in_slack]
    unexpected = in_slack - set(sent)
    assert missing == [], f"{len(missing)} sent thread items not in Slack, e.g. {missing[:3]}"
    assert unexpected == set(), f"{len(unexpected)} thread messages no outbox item sent, e.g. {sorted(unexpected)[:3]}"
    assert delivery.limit_violations == 0, delivery


def source_event_ids(audit_path: Path, timeout: float = 15.0) -> set[str]:
    """The Capsule8 event ids of the audit file. The bot keeps the file open (and locked) for a
    moment after each burst of queries: wait for it to let go, as a loader does."""
    import duckdb

    deadline = time.monotonic() + timeout
    while True:
        try:
            con = duckdb.connect(str(audit_path), read_only=True)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        rows = con.execute(
            "SELECT event_id FROM access.audit WHERE service_name = 'capsule8-alerts-dataplane'").fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}
