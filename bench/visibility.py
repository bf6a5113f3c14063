"""Scenario 6 (#14): time to visibility, the headline figure. A storm of N new Capsule8 events
over C clusters x 12 detections, one webhook, Slack at its real pace: the emulator answers
chat.postMessage with 429 and Retry-After once a channel exceeds 1 message/s sustained (a burst
of 3), as Slack does, and the bot paces itself at ESM_SLACK_POST_INTERVAL=1.

Measured, from this process:
  * visible_s: webhook sent -> every event counted in a Slack message. The emulator records the
    metadata of every message it accepts (posts and updates); a finding's parent and an incident
    carry the events they count (`events`), and the latest one of each message counts;
  * slack_calls: every Web API call the bot made until its outbox was empty (or a cut-off);
  * peak_rate: the most chat.postMessage calls a channel took in any 10 s window, per second,
    and the 429s the emulator answered;
  * due_ms: the outbox's next-due query (the bot's own StateStore.due_outbox on the bot's state
    file, from this process) timed every 0.5 s while the bot works: max and p99;
  * healthz_ms: GET /healthz every 0.1 s throughout: max and p99.
A calm run (fewer findings than the budget) shows the findings posted one by one, as before.
The `no roll-up` variant (ESM_STORM_BUDGET very large) measures the outbox with every finding
queued on its own, the case #14 found at 1.6 s per next-due query: it stops after `hold_s`.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import (
    BotProcess,
    notebook_rows,
    percentile,
    start_emulators,
    state_progress,
    stop_emulators,
    storm_rows,
)
from bot.adapters.state.store import StateStore

DETECTIONS = 12
SLACK_RATE, SLACK_BURST = 1.0, 3  # Slack: about one message per second per channel, a small burst


async def run_visibility(events: int, clusters: int, *, budget: str = "60s", timeout: float = 600.0,
                         hold_s: float | None = None, drain_cutoff_s: float = 180.0,
                         extra_env: dict[str, str] | None = None, keep: bool = False) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"esm-bench-visible{events}-"))
    slack, dbx = await start_emulators(clusters)
    slack.post_rate, slack.post_burst = SLACK_RATE, SLACK_BURST
    bot = BotProcess(folder, slack.api_url, dbx.host, {"ESM_SLACK_POST_INTERVAL": "1", "ESM_STORM_BUDGET": budget,
                                                         **(extra_env or {})})
    store: StateStore | None = None
    try:
        source = bot.source()
        source.insert_rows(notebook_rows(clusters))
        source.insert_rows(storm_rows(events, clusters, DETECTIONS, prefix=f"vis{events}"))
        await bot.start_async()
        store = await StateStore.open(str(bot.state_path))
        slack.calls.clear()
        slack.visibility.clear()
        cpu0 = bot.cpu_seconds() or 0.0
        probes = _Probes(bot.url, store)
        async with aiohttp.ClientSession() as session:
            t0 = time.monotonic()
            status = await bot.webhook_async(session)
            probing = asyncio.create_task(probes.run(session))
            visible_s = stored_s = drained_s = None
            deadline = t0 + timeout
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # (visibility is timed by the emulator, not by this poll)
                now = time.monotonic() - t0
                progress = await asyncio.to_thread(state_progress, bot)
                if stored_s is None and progress["events"] >= events:
                    stored_s = now
                if visible_s is None:
                    at = _all_visible_at(slack.visibility, events)
                    if at is not None:
                        visible_s = at - t0
                if hold_s is not None and now >= hold_s:
                    break
                if stored_s is not None and progress["pending"] == 0:
                    drained_s = now
                    break
                if visible_s is not None and now - visible_s > drain_cutoff_s:
                    break
            probes.stop = True
            await probing
        calls = slack.api_calls()
        progress = state_progress(bot)
        kinds = dict(bot.query("SELECT kind, count(*) FROM outbox GROUP BY kind"))
        top_level = [m for m in slack.messages(bot.identity.channel)]
        return {
            "events": events, "clusters": clusters, "detections": DETECTIONS, "budget": budget,
            "webhook_status": status,
            "visible_s": _r(visible_s), "stored_s": _r(stored_s), "drained_s": _r(drained_s),
            "findings": progress["findings"], "findings_posted_alone": progress["posted"],
            "incidents": sum(1 for m in top_level if (m.get("metadata") or {}).get("event_type") == "esm_incident"),
            "top_level_messages": len(top_level),
            "slack_calls": calls, "slack_calls_total": sum(calls.values()),
            "peak_posts_per_s_per_channel": max(slack.peak_post_rate().values(), default=0.0),
            "rate_limited_429": slack.rate_limited,
            "outbox_rows": kinds, "outbox_pending_at_end": progress["pending"], "outbox_dead": progress["dead"],
            "due_ms_max": _r(max(probes.due_ms, default=None)), "due_ms_p99": _r(percentile(probes.due_ms, 99)),
            "due_samples": len(probes.due_ms), "pending_max": max(probes.pending, default=0),
            "healthz_ms_max": _r(max(probes.healthz_ms, default=None)),
            "healthz_ms_p99": _r(percentile(probes.healthz_ms, 99)), "healthz_samples": len(probes.healthz_ms),
            "healthz_failures": probes.healthz_failures,
            "bot_cpu_s": round((bot.cpu_seconds() or 0.0) - cpu0, 2),
            "timed_out": visible_s is None,
            **({"folder": str(folder)} if keep else {}),
        }
    finally:
        if store is not None:
            await store.close()
        await bot.stop_async()
        await stop_emulators(slack, dbx)


class _Probes:
    """/healthz every 0.1 s and the next-due query every 0.5 s, until stopped."""

    def __init__(self, url: str, store: StateStore):
        self.url, self.store = url, store
        self.stop = False
        self.healthz_ms: list[float] = []
        self.healthz_failures = 0
        self.due_ms: list[float] = []
        self.pending: list[int] = []

    async def run(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(self._healthz(session), self._due())

    async def _healthz(self, session: aiohttp.ClientSession) -> None:
        while not self.stop:
            started = time.perf_counter()
            try:
                async with session.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
                    if response.status != 200:
                        self.healthz_failures += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                self.healthz_failures += 1
            self.healthz_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)

    async def _due(self) -> None:
        while not self.stop:
            started = time.perf_counter()
            try:
                await self.store.due_outbox()
                self.due_ms.append((time.perf_counter() - started) * 1000)
                self.pending.append(await self.store.outbox_depth())
            except Exception:  # before the first sync's tables settle: try again
                pass
            await asyncio.sleep(0.5)


def _all_visible_at(log: list[tuple[float, str, str, str, dict[str, Any]]], events: int) -> float | None:
    """The moment the messages' latest counts first add up to every event (None: not yet)."""
    latest: dict[tuple[str, str], int] = {}
    total = 0
    for at, _method, channel, root, payload in list(log):
        count = payload.get("events")
        if not isinstance(count, int):
            continue
        key = (channel, root)
        total += count - latest.get(key, 0)
        latest[key] = count
        if total >= events:
            return at
    return None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def run_all(quick: bool = False) -> dict[str, Any]:
    """The 10k storm (200 clusters), the 100k storm (1,000 clusters), a calm sync, and the 100k
    storm without roll-ups (its outbox only: held 60 s)."""
    runs: dict[str, tuple[int, int, dict[str, Any]]] = (
        {"storm_2k": (2_000, 100, {}), "calm": (24, 2, {})} if quick else {
            "storm_10k": (10_000, 200, {}),
            "storm_100k": (100_000, 1_000, {}),
            "calm": (24, 2, {}),
            "no_rollup_100k": (100_000, 1_000, {"budget": "1000000s", "hold_s": 60.0}),
        })
    results: dict[str, Any] = {}
    for key, (events, clusters, options) in runs.items():
        try:
            results[key] = await run_visibility(events, clusters, **options)
        except Exception as exc:  # report it and go on with the other runs
            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return results
