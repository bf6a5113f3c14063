"""A storm of several thousand Capsule8 events over many clusters and detections, with the bot
killed with SIGKILL at random points (seeded, printed) during syncs and deliveries and then
restarted: every finding is posted exactly once, every thread keeps its order, no event is lost.

The events arrive in waves, one per bot life, each later in time than the last (plus a few
late rows inside the sync overlap), so syncs, thread replies, digests and parent updates of
earlier findings interleave with the kills. Set ESM_RELIABILITY_SEED to replay a run.
"""
from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta

from tests.reliability.harness import (
    add_clusters,
    assert_exactly_once,
    capsule8,
    check_delivery,
    delivered_keys,
    now,
    record,
    source_event_ids,
)

SEED = int(os.environ.get("ESM_RELIABILITY_SEED", "0") or 0) or random.SystemRandom().randrange(1, 10**6)
EVENTS = int(os.environ.get("ESM_STORM_EVENTS", "3000"))
KILLS = int(os.environ.get("ESM_STORM_KILLS", "5"))
DETECTIONS = [
    "Kernel Module Loaded", "Suspicious Interactive Shell", "Container Escape via Kernel Exploitation",
    "Boot Files Modified", "BPF Program Executed", "Root Certificate Store Modified",
    "Quantum Flux Capacitor Tampered",  # not in the catalogue: posted as Uncategorised
]
HOURS = 6
UNKNOWN_HOSTS = ["i-0unknown0000001", "i-0unknown0000002"]


def storm_waves(rng: random.Random, clusters: dict[str, list[str]], waves: int) -> list[list[dict]]:
    """`waves` lists of rows; wave w lies in the w-th slice of the last HOURS hours, and each
    wave after the first also has a few late rows from the last minutes of the slice before."""
    start = now() - timedelta(hours=HOURS)
    span = timedelta(hours=HOURS) / waves
    hosts = [i for ids in clusters.values() for i in ids] + UNKNOWN_HOSTS
    out: list[list[dict]] = []
    counter = 0
    for w in range(waves):
        rows = []
        for _ in range(EVENTS // waves):
            counter += 1
            late = w > 0 and rng.random() < 0.01
            base = start + span * w
            at = base - timedelta(minutes=rng.uniform(0.5, 5)) if late else base + span * rng.random()
            detection = "Heartbeat" if rng.random() < 0.03 else rng.choice(DETECTIONS)
            rows.append(capsule8(f"storm-{counter:05d}", detection, rng.choice(hosts), at,
                                 commandLine=f"cmd {counter} <!channel> *bold*", origin="container"))
        out.append(rows)
    return out


def wait_for_kill_point(bot, rng: random.Random, expected: int) -> str:
    """Aim most kills into delivery (a random moment after this life's sync committed its
    events and outbox items), some into the sync itself (a random moment after the webhook)."""
    if rng.random() < 0.3:
        time.sleep(rng.uniform(0.05, 0.6))
        return "sync"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (bot.stored_events() < expected or bot.outbox_pending() == 0):
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.25))
    return "delivery"


def test_sigkill_storm_delivers_every_finding_exactly_once_in_thread_order(host, make_bot):
    rng = random.Random(SEED)
    print(f"\n[reliability] storm seed {SEED} (set ESM_RELIABILITY_SEED={SEED} to replay)")
    clusters = add_clusters(host, 8)
    bot = make_bot()
    waves = storm_waves(rng, clusters, KILLS + 1)
    began = time.monotonic()
    kills: list[dict] = []
    expected = 0
    for life, rows in enumerate(waves):
        expected += bot.seed(rows)  # the bot is down: the file is ours
        bot.start()
        for _ in range(rng.randint(1, 3)):  # several alerts at once coalesce into one queued sync
            assert bot.webhook() == 202
        if life == len(waves) - 1:
            break
        where = wait_for_kill_point(bot, rng, expected)
        posted_before = len(host.messages())
        bot.kill()
        in_flight = bot.query("SELECT finding_key, kind, id FROM outbox WHERE state = 'pending' AND attempts > 0")
        slack_keys = delivered_keys(host)
        answered = sum(1 for key, kind, item in in_flight if (key if kind == "post" else f"{key}:{item}") in slack_keys)
        kills.append({
            "life": life, "aimed_at": where, "stored": bot.stored_events(), "expected": expected, "pending": bot.outbox_pending(),
            "posted": posted_before, "answered_unrecorded": answered,
            "interrupted": bot.scalar("SELECT count(*) FROM outbox WHERE state = 'pending' AND attempts > 0") or 0,
        })
        print(f"[reliability] SIGKILL {len(kills)}: {kills[-1]}")

    drained = bot.wait_drained(expected, timeout=150)
    total = time.monotonic() - began
    stored = {r[0] for r in bot.query("SELECT event_id FROM events")}
    lost = source_event_ids(bot.audit_path) - stored
    delivery = check_delivery(host, bot)
    findings = bot.scalar("SELECT count(*) FROM findings")
    during_delivery = sum(1 for k in kills if k["pending"] > 0)
    mid_sync = sum(1 for k in kills if k["stored"] < k["expected"])
    interrupted = sum(k["interrupted"] for k in kills)
    unrecorded = sum(k["answered_unrecorded"] for k in kills)
    watermark = bot.watermark()
    newest = max(r["event_time"] for rows in waves for r in rows)
    record(
        "sigkill_storm",
        f"storm: {expected} events, {findings} findings, {delivery.replies} thread replies, {len(kills)} SIGKILLs "
        f"({during_delivery} during delivery, {mid_sync} mid-sync, {interrupted} posts in flight, {unrecorded} of them already in Slack), "
        f"{delivery.duplicate_parents + delivery.duplicate_replies} duplicates, {len(lost)} lost, "
        f"{delivery.out_of_order_threads} threads out of order, drained in {drained:.1f} s "
        f"(total {total:.1f} s, seed {SEED})",
        seed=SEED, events=expected, findings=findings, replies=delivery.replies, kills=len(kills),
        kills_during_delivery=during_delivery, kills_mid_sync=mid_sync, posts_in_flight=interrupted, in_slack_unrecorded=unrecorded,
        duplicates=delivery.duplicate_parents + delivery.duplicate_replies, lost=len(lost),
        out_of_order=delivery.out_of_order_threads, drained_s=round(drained, 1), total_s=round(total, 1),
    )
    assert lost == set(), f"{len(lost)} events never stored, e.g. {sorted(lost)[:5]}"
    assert_exactly_once(delivery, bot, host)
    newest_at = datetime.fromisoformat(newest)  # reached, or the bot's clock less the skew allowance
    assert watermark is not None and newest_at - timedelta(minutes=3) <= watermark <= newest_at, (watermark, newest)
    assert during_delivery >= 1, "no SIGKILL landed during delivery: the storm is too small for this machine"
