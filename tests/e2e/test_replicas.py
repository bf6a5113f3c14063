"""Two replicas on one PostgreSQL state store: both serve, one is SIGKILLed mid-storm, and every
finding is still posted exactly once, with every thread's replies once each and in order.

Two real `esm-bot serve` processes share one PostgreSQL database (ESM_STATE_URL), one audit
source (the Thrift SQL warehouse emulator: one DuckDB file, read through the real connector) and
one Slack emulator, all started by this test. Webhooks and a 1 s poll make both replicas try to
sync all the time; the sync lock lets one at a time through, and outbox threads are claimed by
one replica each.
"""
from __future__ import annotations

import asyncio
import collections
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.cli.audit_rows import capsule8_row
from emulators.botprocess import BotIdentity, BotProcess
from emulators.thrift_sql import ThriftSQLEmulator
from tests.e2e.conftest import (
    CHANNEL,
    CURRENT_PAYLOAD,
    DBX_TOKEN,
    RESPONDER,
    SIGNING_SECRET,
    SLACK_TOKEN,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = 20
DETECTIONS = ("Kernel Module Loaded", "Suspicious Interactive Shell", "BPF Program Executed")
WAVES, PER_WAVE = 6, 50  # 300 events: 20 clusters x 3 detections = 60 findings of 5 events each
IDENTITY = BotIdentity(channel=CHANNEL, slack_token=SLACK_TOKEN, signing_secret=SIGNING_SECRET,
                       webhook_user=WEBHOOK_USER, webhook_password=WEBHOOK_PASSWORD, databricks_token=DBX_TOKEN,
                       responders=RESPONDER, alert=CURRENT_PAYLOAD)


class Replica(BotProcess):
    """One of the replicas: the shared bot process (emulators/botprocess.py), in a folder of its own."""

    def __init__(self, name: str, folder: Path, slack_api_url: str, databricks_host: str, env: dict[str, str]):
        super().__init__(folder / name, IDENTITY, slack_api_url=slack_api_url, databricks_host=databricks_host,
                         env=env, cwd=ROOT, stop_timeout=10)
        self.name = name


def storm_event(n: int, start: datetime) -> dict[str, Any]:
    cluster, detection = n % CLUSTERS, DETECTIONS[(n // CLUSTERS) % len(DETECTIONS)]
    return capsule8_row(f"storm-{n:04d}", detection, f"i-0storm{cluster:010d}", start + timedelta(seconds=n),
                        commandLine=f"event {n}")


def db(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def warehouse(tmp_path):
    with ThriftSQLEmulator(tmp_path / "audit.duckdb", token=DBX_TOKEN) as emulator:
        yield emulator


async def test_two_replicas_one_killed_mid_storm_post_every_finding_exactly_once(
    tmp_path, pg_url, slack, dbx, warehouse
):
    from bot.adapters.duckdb_source import DuckDBSource

    for k in range(CLUSTERS):
        dbx.add_cluster(f"0101-000000-st{k:04d}", name=f"storm-{k}", driver_instance_id=f"i-0storm{k:010d}")
    audit = DuckDBSource(str(tmp_path / "audit.duckdb"))
    env = {
        "ESM_AUDIT_SOURCE": "databricks", "ESM_WAREHOUSE_URI": warehouse.uri,
        "ESM_WAREHOUSE_HTTP_PATH": warehouse.http_path, "ESM_WAREHOUSE_TIMEOUT": "20",
        "ESM_STATE_URL": pg_url, "ESM_OUTBOX_LEASE": "2s", "ESM_POLL_INTERVAL": "1s",
        "ESM_DATABRICKS_TIMEOUT": "5", "ESM_SLACK_POST_INTERVAL": "0.04",
    }
    replicas = [Replica(name, tmp_path, slack.api_url, dbx.host, env) for name in ("replica-a", "replica-b")]
    try:
        await asyncio.gather(*(r.start_async() for r in replicas))
        start = datetime.now(timezone.utc) - timedelta(minutes=30)
        killed: Replica | None = None
        for wave in range(WAVES):
            audit.insert_rows([storm_event(n, start) for n in range(wave * PER_WAVE, (wave + 1) * PER_WAVE)])
            live = [r for r in replicas if r is not killed]
            assert set(await asyncio.gather(*(r.webhook_async() for r in live))) == {202}
            if killed is None and wave >= 2:
                killed = await kill_a_sender_mid_delivery(replicas, pg_url, slack)
            await asyncio.sleep(0.3)
        assert killed is not None, "no replica was sending when the storm was on"
        survivor = next(r for r in replicas if r is not killed)
        await survivor.webhook_async()
        await settled(pg_url, survivor, timeout=120)

        findings = {key for (key,) in db(pg_url, "SELECT key FROM findings")}
        parents = [m for m in slack.messages(CHANNEL)]
        posted = collections.Counter(m["metadata"]["event_payload"]["key"] for m in parents)
        assert len(findings) == CLUSTERS * len(DETECTIONS)
        assert posted == collections.Counter({key: 1 for key in findings}), "every finding posted exactly once"
        assert db(pg_url, "SELECT count(*), sum(count) FROM (SELECT count FROM findings) f")[0][1] == WAVES * PER_WAVE
        assert db(pg_url, "SELECT count(*) FROM events")[0][0] == WAVES * PER_WAVE
        assert db(pg_url, "SELECT state, count(*) FROM outbox WHERE state <> 'sent' GROUP BY state") == []

        thread_items = collections.defaultdict(list)
        for item_id, key in db(pg_url, "SELECT id, finding_key FROM outbox WHERE kind IN ('reply', 'digest', 'note') "
                                       "ORDER BY id"):
            thread_items[key].append(item_id)
        for parent in parents:
            key = parent["metadata"]["event_payload"]["key"]
            keys = [m["metadata"]["event_payload"]["key"].rsplit(":", 1)[1] for m in slack.thread(CHANNEL, parent["ts"])]
            assert keys[:1] == ["details"], f"thread of {key}: the details reply first"
            replies = [int(k) for k in keys[1:]]  # then every outbox item, once each
            assert replies == thread_items[key], f"thread of {key}: once each, in the order written"
        assert sum(map(len, thread_items.values())) >= len(findings)  # every finding had repeats
        assert "another replica is syncing" in "".join(r.log_text() for r in replicas), \
            "the replicas contended for the sync lock"
    except BaseException:
        for r in replicas:
            print(f"----- {r.name} -----\n{r.log_text()[-4000:]}")
        raise
    finally:
        for r in replicas:
            r.stop()


async def kill_a_sender_mid_delivery(replicas: list[Replica], url: str, slack) -> Replica:
    """Wait until a replica holds outbox threads with items still pending and some findings are
    already in Slack, then SIGKILL it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        holders = db(url, "SELECT l.replica, count(*) FROM outbox_leases l JOIN outbox o "
                          "ON o.finding_key = l.finding_key AND o.state = 'pending' GROUP BY l.replica")
        pids = {int(replica.split(":")[1]): n for replica, n in holders}
        if len(slack.messages(CHANNEL)) >= 5:
            for r in replicas:
                if r.proc is not None and pids.get(r.proc.pid, 0) >= 5:
                    r.kill()
                    return r
        await asyncio.sleep(0.05)
    raise AssertionError("no replica was ever mid-delivery")


async def settled(url: str, survivor: Replica, timeout: float) -> None:
    """Nothing pending for a while, and the survivor still alive."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        assert survivor.alive(), survivor.log_tail()
        pending = db(url, "SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0]
        events = db(url, "SELECT count(*) FROM events")[0][0]
        if pending == 0 and events == WAVES * PER_WAVE:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 2.5:
                return
        else:
            quiet_since = None
        await asyncio.sleep(0.2)
    raise AssertionError("the surviving replica did not finish delivering")
