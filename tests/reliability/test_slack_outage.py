"""Slack answering 429 (with Retry-After) and then 503 for a period, losing a few answers to
messages it did post, then recovering: every finding is delivered, none twice, threads in order."""
from __future__ import annotations

import random
import time
from datetime import timedelta

from tests.reliability.harness import (
    add_clusters,
    assert_exactly_once,
    capsule8,
    check_delivery,
    now,
    record,
    source_event_ids,
)

DETECTIONS = ["Kernel Module Loaded", "Suspicious Interactive Shell", "Boot Files Modified", "BPF Program Executed",
              "Userland Container Escape", "AppArmor Profile Modified", "Kernel Exploit", "Unlisted Detection X"]
EVENTS = 1500
RATE_LIMITED_S = 3.0
UNAVAILABLE_S = 3.0
LOST_ANSWERS = 6
SLACK_METHODS = ("chat.postMessage", "chat.update", "conversations.history", "conversations.replies")


def outage_rows(rng: random.Random, clusters: dict[str, list[str]]) -> list[dict]:
    hosts = [i for ids in clusters.values() for i in ids]
    start = now() - timedelta(hours=4)
    return [
        capsule8(f"out-{n:05d}", rng.choice(DETECTIONS), rng.choice(hosts), start + timedelta(hours=4) * rng.random())
        for n in range(EVENTS)
    ]


def test_slack_429_then_503_then_recovery_delivers_everything_once(host, make_bot):
    rng = random.Random(5)
    clusters = add_clusters(host, 10)
    bot = make_bot()
    expected = bot.seed(outage_rows(rng, clusters))
    slack = host.slack
    host.call(slack.fail, "chat.postMessage", status=429, times=None, retry_after=1)
    bot.start()
    began = time.monotonic()
    assert bot.webhook() == 202
    deadline = time.monotonic() + 30
    while not host.calls("chat.postMessage") and time.monotonic() < deadline:  # the outage starts with delivery
        time.sleep(0.02)
    time.sleep(RATE_LIMITED_S)
    rate_limited = len(host.calls("chat.postMessage"))
    host.call(slack.clear_faults)
    for method in SLACK_METHODS:
        host.call(slack.fail, method, status=503, times=None)
    time.sleep(UNAVAILABLE_S)
    unavailable = sum(len(host.calls(m)) for m in SLACK_METHODS) - rate_limited
    host.call(slack.clear_faults)
    recovered_at = time.monotonic()
    for _ in range(LOST_ANSWERS):  # Slack posts the message but the answer is lost (a 503)
        host.call(slack.lose_answers, "chat.postMessage", 1)
        time.sleep(0.3)
    drained = bot.wait_drained(expected, timeout=120)
    catch_up = time.monotonic() - recovered_at

    delivery = check_delivery(host, bot)
    lost = source_event_ids(bot.audit_path) - {r[0] for r in bot.query("SELECT event_id FROM events")}
    findings = bot.scalar("SELECT count(*) FROM findings")
    retried = bot.scalar("SELECT count(*) FROM outbox WHERE attempts > 1") or 0
    record(
        "slack_outage",
        f"slack outage: {expected} events, {findings} findings, {delivery.replies} thread replies; "
        f"429 for {RATE_LIMITED_S:.0f} s ({rate_limited} calls), 503 for {UNAVAILABLE_S:.0f} s ({unavailable} calls), "
        f"{LOST_ANSWERS} answers lost after posting; {retried} items retried, "
        f"{delivery.duplicate_parents + delivery.duplicate_replies} duplicates, "
        f"{delivery.missing_parents} missing, {len(lost)} events lost, all delivered {catch_up:.1f} s after recovery "
        f"(total {time.monotonic() - began:.1f} s)",
        events=expected, findings=findings, replies=delivery.replies, calls_429=rate_limited, calls_503=unavailable,
        lost_answers=LOST_ANSWERS, retried_items=retried,
        duplicates=delivery.duplicate_parents + delivery.duplicate_replies, missing=delivery.missing_parents,
        lost=len(lost), recovered_s=round(catch_up, 1), drained_s=round(drained, 1),
    )
    assert lost == set()
    assert_exactly_once(delivery, bot, host)
    assert bot.healthy()
