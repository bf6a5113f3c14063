"""Scenario 2 (storm) and scenario 5 (growth): N new Capsule8 events over 200 clusters and 12
detections, one webhook, one sync.

What is timed, from this process:
  * sync_s: the bot's own measurement, its `sync done: SyncReport(seconds=...)` log line
    (fetch -> decide -> enrich -> one SQLite transaction per page);
  * stored_s: webhook sent -> every event in the bot's state store (read-only polling, 20 ms);
  * delivered_s: webhook sent -> outbox empty and every finding posted, with
    ESM_SLACK_POST_INTERVAL=0 (Slack's rate limit excluded);
events_per_s = events / sync_s.
"""
from __future__ import annotations

import re

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings
from bench.harness import (
    CHANNEL,
    BotProcess,
    expected_groups,
    notebook_rows,
    start_emulators,
    state_progress,
    stop_emulators,
    storm_rows,
)

CLUSTERS = 200
DETECTIONS = 12
THREAD_REPLIES = Settings().thread_replies  # the bot's default ESM_THREAD_REPLIES


def expected_messages(events: int) -> dict[str, int]:
    """Slack messages one sync needs at least: a parent per group, its first repeats as replies,
    one digest for the rest (a repeat more than the budget is posted, never digested alone)."""
    groups = expected_groups(events, CLUSTERS, DETECTIONS)
    digested = {key: n - 1 > THREAD_REPLIES + 1 for key, n in groups.items()}
    replies = sum(THREAD_REPLIES if digested[key] else n - 1 for key, n in groups.items())
    digests = sum(digested.values())
    return {"groups": len(groups), "parents": len(groups), "replies": replies, "digests": digests,
            "messages": len(groups) + replies + digests}


async def run_storm(events: int, *, post_interval: float = 0.0, profile_to: Path | None = None,
                    timeout: float = 400.0, workdir: Path | None = None, deliver: bool = True,
                    hold_seconds: float | None = None) -> dict[str, Any]:
    """deliver=False (growth): stop once every event is stored and the sync has logged its
    report; the Slack messages it queued are counted from the outbox, not waited for."""
    folder = Path(workdir or tempfile.mkdtemp(prefix=f"esm-bench-storm{events}-"))
    slack, dbx = await start_emulators(CLUSTERS)
    # growth runs sweep on every sync (ESM_LATE_SWEEP_INTERVAL=0), so the sweep's cost over the whole
    # storm is measured: after the storm's rows are stored, its ids are read again and found seen
    sweep_env = {} if deliver else {"ESM_LATE_SWEEP_INTERVAL": "0"}
    bot = BotProcess(folder, slack.api_url, dbx.host, {"ESM_SLACK_POST_INTERVAL": f"{post_interval:g}", **sweep_env,
                     **({} if hold_seconds is None else {"BENCH_DUCKDB_HOLD": str(hold_seconds)})},
                     counted=True, profile_to=profile_to)
    try:
        source = bot.source()
        started = time.perf_counter()
        source.insert_rows(notebook_rows(CLUSTERS))
        inserted = source.insert_rows(storm_rows(events, CLUSTERS, DETECTIONS))
        seed_s = time.perf_counter() - started
        await bot.start_async()
        rss_idle_kb = bot.proc_status("VmRSS")
        cpu_before = bot.cpu_seconds() or 0.0
        slack.calls.clear()
        dbx.calls.clear()
        slack.post_times.clear()
        result = await _trigger_and_wait(bot, events, timeout, deliver)
        result["bot_cpu_s"] = round((bot.cpu_seconds() or 0.0) - cpu_before, 2)
        result["peak_rss_mb"] = round((bot.proc_status("VmHWM") or 0) / 1024, 1)
        result["idle_rss_mb"] = round((rss_idle_kb or 0) / 1024, 1)
        slack_calls = slack.api_calls()
        dbx_calls = [c for c in dbx.calls if "/api/" in c.path]
        await bot.stop_async()
        reports = [r for r in bot.sync_reports() if r.get("new_events")]
        sweeps = bot.sweep_reports()
        sync_s = sum(r["seconds"] for r in reports) if reports else None
        expected = expected_messages(events)
        checks = _lost_check(bot, slack, events, expected, deliver)
        with bot.state() as db:
            outbox = dict(db.execute("SELECT kind, count(*) FROM outbox GROUP BY kind").fetchall())
        queries = bot.query_counts()
        total_slack = sum(slack_calls.values())
        result.update({
            "events": events, "inserted": inserted, "seed_s": round(seed_s, 2),
            "sync_s": None if sync_s is None else round(sync_s, 3), "syncs": len(reports),
            "events_per_s": None if not sync_s else round(events / sync_s),
            "groups": expected["groups"], "expected_messages": expected,
            "slack_calls": slack_calls, "slack_calls_total": total_slack,
            "slack_calls_per_1000_events": round(total_slack / events * 1000, 1),
            "slack_calls_per_group": round(total_slack / expected["groups"], 2),
            "databricks_calls": _paths(dbx_calls),
            "databricks_calls_per_cluster": round(len(dbx_calls) / CLUSTERS, 3),
            "outbox_items": outbox, "outbox_items_per_group": round(sum(outbox.values()) / expected["groups"], 2),
            "audit_queries": queries, "audit_queries_total": sum(queries.values()),
            "audit_queries_per_event": round(sum(queries.values()) / events, 4),
            "sweep": sweeps[-1] if sweeps else None,
            "check": checks,
        })
        return result
    finally:
        await bot.stop_async()
        await stop_emulators(slack, dbx)


async def _trigger_and_wait(bot: BotProcess, events: int, timeout: float, deliver: bool = True) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        status = await bot.webhook_async(session)
        stored_s = delivered_s = None
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
            progress = await asyncio.to_thread(state_progress, bot)
            now = time.perf_counter() - t0
            if stored_s is None and progress["events"] >= events:
                stored_s = now
            if stored_s is not None and not deliver and any(r.get("new_events") for r in bot.sync_reports()):
                break
            if stored_s is not None and progress["pending"] == 0 and progress["posted"] == progress["findings"]:
                delivered_s = now
                break
    return {"webhook_status": status, "stored_s": _r(stored_s), "delivered_s": _r(delivered_s),
            "timed_out": stored_s is None or (deliver and delivered_s is None)}


_DIGEST = re.compile(r"^\+(\d+) more on")


def _events_not_shown(slack: Any, parents: list[dict[str, Any]], counts: dict[str, int]) -> int:
    """Every event of a finding is its parent, a reply, or counted in a digest of its thread."""
    missing = 0
    for parent in parents:
        key = ((parent.get("metadata") or {}).get("event_payload") or {}).get("key")
        shown = 1
        for reply in slack.thread(CHANNEL, parent["ts"]):
            if str(((reply.get("metadata") or {}).get("event_payload") or {}).get("key", "")).endswith(":details"):
                continue  # a compact parent's details reply: the parent's own event, not another
            digest = _DIGEST.match(reply.get("text") or "")
            shown += int(digest.group(1)) if digest else 1
        missing += abs(counts.get(key, 0) - shown)
    return missing


def _lost_check(bot: BotProcess, slack: Any, events: int, expected: dict[str, int], deliver: bool = True) -> dict[str, Any]:
    """Zero lost: every event stored and counted on a finding, every finding posted, every
    expected thread message delivered, nothing dead or pending."""
    progress = state_progress(bot)
    with bot.state() as db:
        counted = db.execute("SELECT coalesce(sum(count), 0) FROM findings").fetchone()[0]
        unfiled = db.execute("SELECT count(*) FROM events WHERE finding_key IS NULL").fetchone()[0]
    parents = slack.messages(CHANNEL)
    with bot.state() as db:
        counts = dict(db.execute("SELECT key, count FROM findings").fetchall())
    lost = {
        "events_not_stored": events - progress["events"],
        "events_not_on_a_finding": unfiled + (events - counted),
        "findings_not_posted": progress["findings"] - progress["posted"],
        "groups_missing": expected["groups"] - progress["findings"],
        "parents_missing_in_slack": expected["parents"] - len(parents),
        "events_not_shown_in_slack": _events_not_shown(slack, parents, counts),
        "outbox_pending": progress["pending"],
        "outbox_dead": progress["dead"],
    }
    if not deliver:  # growth runs stop before Slack has everything: check the store only
        lost = {k: lost[k] for k in ("events_not_stored", "events_not_on_a_finding", "groups_missing", "outbox_dead")}
    return {"lost": sum(abs(v) for v in lost.values()), **lost}


def _paths(calls: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = f"{call.method} {call.path}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def pace_check(messages_wanted: int = 60, interval: float = 0.1) -> dict[str, Any]:
    """A small storm with the outbox paced at `interval` s: how close the real drain comes to
    messages x interval. Scaled to Slack's 1 message/s it gives the storm's drain time."""
    # 12 detections x 4 clusters x 2 events -> 48 groups, 48 parents + 48 replies
    events = 96
    slack, dbx = await start_emulators(4)
    folder = Path(tempfile.mkdtemp(prefix="esm-bench-pace-"))
    bot = BotProcess(folder, slack.api_url, dbx.host, {"ESM_SLACK_POST_INTERVAL": f"{interval:g}"})
    try:
        source = bot.source()
        source.insert_rows(storm_rows(events, 4, DETECTIONS, prefix="pace"))
        await bot.start_async()
        slack.calls.clear()
        async with aiohttp.ClientSession() as session:
            t0 = time.perf_counter()
            await bot.webhook_async(session)
            while time.perf_counter() - t0 < 120:
                await asyncio.sleep(0.02)
                p = await asyncio.to_thread(state_progress, bot)
                if p["events"] >= events and p["pending"] == 0 and p["posted"] == p["findings"]:
                    break
            drain = time.perf_counter() - t0
        posts = slack.api_calls().get("chat.postMessage", 0)
        first, last = (slack.post_times[0], slack.post_times[-1]) if slack.post_times else (t0, t0)
        paced_span = last - first
        ideal_span = (posts - 1) * interval
        return {"interval_s": interval, "messages": posts, "drain_s": round(drain, 3),
                "paced_span_s": round(paced_span, 3), "ideal_span_s": round(ideal_span, 3),
                "pace_efficiency": round(ideal_span / paced_span, 3) if paced_span else None,
                "seconds_per_message": round(paced_span / max(posts - 1, 1), 4)}
    finally:
        await bot.stop_async()
        await stop_emulators(slack, dbx)
