"""The alert pipeline end to end: a webhook over real HTTP with Basic auth, the real bot server,
the real slack_sdk against the Slack emulator, the real databricks-sdk against the Databricks
emulator, an embedded DuckDB audit store."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.conftest import (
    CURRENT_PAYLOAD,
    LEGACY_PAYLOAD,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    Bot,
    basic_auth,
    capsule8,
    notebook_command,
)
from tests.payloads import minimal_current

DS_CLUSTER = "0101-000000-ds0001"
AUTH = basic_auth(WEBHOOK_USER, WEBHOOK_PASSWORD)


async def test_a_webhook_posts_each_new_finding_with_its_context(bot: Bot):
    bot.add(
        notebook_command("nb-1", DS_CLUSTER, 12, "dana@example.com", "%sh sudo insmod ./helper.ko"),
        capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10,
                 containerId="8c1f5e0a9b7d", processLineage="python3(1) > bash(2) > insmod(3)",
                 commandLine="insmod ./helper.ko"),
    )
    status, body = await bot.webhook()
    assert status == 202 and body["accepted"] is True
    await bot.settle()

    [finding] = bot.findings()
    text = bot.text_of(finding)
    # the parent: a screenful at most; what, where, whose, the evidence, the buttons
    assert len(text.splitlines()) <= 12, text
    for shown in ("Kernel Module Loaded", "Kernel Related Events", "data-science-shared", "dana@example.com",
                  "insmod ./helper.ko", "[Acknowledge]", "in the thread"):
        assert shown in text, shown
    for left_out in ("USER_ISOLATION", "insmod(3)", "Reproduce", "/compute/clusters/"):
        assert left_out not in text, left_out
    assert finding["metadata"]["event_payload"]["key"]
    # the first reply: everything else
    details = bot.details(finding)
    for context in ("data-science-shared", DS_CLUSTER, "dana@example.com", "USER_ISOLATION", "POL123",
                    "driver", "i-0driver000000001", "container", "8c1f5e0a9b7d", "insmod(3)",
                    "sudo insmod ./helper.ko", "Reproduce in Databricks SQL", f"/compute/clusters/{DS_CLUSTER}"):
        assert context in details, context
    assert len(bot.replies(finding)) == 1, "a single event: the details reply only"


async def test_with_the_full_style_a_finding_is_one_long_message(tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx, ESM_MESSAGE_STYLE="full")
    bot.add(
        notebook_command("nb-1", DS_CLUSTER, 12, "dana@example.com", "%sh sudo insmod ./helper.ko"),
        capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10, processLineage="python3(1) > insmod(3)",
                 commandLine="insmod ./helper.ko"),
    )
    await bot.start()
    try:
        await bot.webhook()
        await bot.settle()
        [finding] = bot.findings()
        text = bot.text_of(finding)
        for context in ("data-science-shared", DS_CLUSTER, "USER_ISOLATION", "insmod(3)", "sudo insmod ./helper.ko",
                        "Reproduce in Databricks SQL", f"/compute/clusters/{DS_CLUSTER}", "[Acknowledge]"):
            assert context in text, context
        assert bot.replies(finding) == [], "no details reply"
    finally:
        await bot.stop()


async def test_an_unknown_detection_shows_its_raw_event_and_a_host_event_no_container_id(bot: Bot):
    bot.add(capsule8("c8-new", "Packet Socket Opened On Host", "i-0etl00000000001", 9,
                     containerId="0000000000000000", socketFamily="AF_PACKET"))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    details = bot.details(finding)
    assert "Review the raw event below" in details
    assert "Raw event" in details and "AF_PACKET" in details and "c8-new" in details
    assert "Origin:* host" in details
    assert "0000000000000000" not in bot.text_of(finding) + details.replace('"0000000000000000"', "")


async def test_repeats_on_one_cluster_are_one_finding_with_a_thread(bot: Bot):
    bot.add(
        capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 30),
        capsule8("c8-2", "Kernel Module Loaded", "i-0exec0000000001", 29),
        capsule8("c8-3", "Kernel Module Loaded", "i-0exec0000000002", 28),
    )
    await bot.webhook()
    await bot.settle()

    [finding] = bot.findings()
    assert "seen 3× on 3 hosts" in bot.text_of(finding).lower()
    replies = bot.repeats(finding)
    assert len(replies) == 2
    assert "i-0exec0000000001" in json.dumps(replies[0]) and "i-0exec0000000002" in json.dumps(replies[1])
    bot.details(finding)  # first in the thread

    bot.add(capsule8("c8-4", "Kernel Module Loaded", "i-0exec0000000001", 5))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 1, "a repeat within the window joins the existing finding"
    assert len(bot.repeats(finding)) == 3
    assert "seen 4× on 3 hosts" in bot.text_of(finding).lower()
    assert len(bot.text_of(finding).splitlines()) <= 12, "an updated parent keeps the compact shape"
    assert bot.slack.calls_to("chat.update"), "the parent message was updated"


async def test_a_second_webhook_without_new_events_posts_nothing(bot: Bot):
    bot.add(capsule8("c8-1", "Boot Files Modified", "i-0etl00000000001", 10))
    await bot.webhook()
    await bot.settle()
    calls_after_first = len(bot.slack.calls)

    status, _ = await bot.webhook()
    assert status == 202
    await bot.settle()
    assert len(bot.slack.calls) == calls_after_first
    assert len(bot.findings()) == 1


async def test_heartbeats_are_dropped_and_unknown_detections_still_posted(bot: Bot):
    bot.add(
        capsule8("c8-hb", "Heartbeat", "i-0driver000000001", 10),
        capsule8("c8-new", "Packet Socket Opened On Host", "i-0etl00000000001", 9),
    )
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    text = bot.text_of(finding)
    assert "Packet Socket Opened On Host" in text and "Uncategorised" in text
    assert "Heartbeat" not in json.dumps(bot.slack.calls_to("chat.postMessage"))
    counts = await bot.runtime.store.counts()
    assert counts["ignored"] == 1, "the heartbeat is still stored and counted"


async def test_the_documented_current_payload_and_its_minimal_form_trigger_a_sync(bot: Bot):
    bot.add(capsule8("c8-1", "AppArmor Disabled In Kernel", "i-0etl00000000001", 3))
    status, body = await bot.webhook(CURRENT_PAYLOAD)
    assert status == 202 and body["alert_id"] == "9876543210987654"
    await bot.settle()
    bot.add(capsule8("c8-2", "Kernel Module Loaded", "i-0driver000000001", 2))
    status, body = await bot.webhook(minimal_current("a-2"))  # fields without values are omitted
    assert status == 202 and body["alert_id"] == "a-2"
    await bot.settle()
    assert len(bot.findings()) == 2


async def test_the_legacy_alert_payload_triggers_a_sync_too(bot: Bot):
    bot.add(capsule8("c8-1", "AppArmor Disabled In Kernel", "i-0etl00000000001", 3))
    status, body = await bot.webhook(LEGACY_PAYLOAD)
    assert status == 202 and body["alert_id"] == "legacy-7"
    await bot.settle()
    assert len(bot.findings()) == 1


async def test_wrong_credentials_and_bad_bodies_are_refused_and_the_bot_stays_up(bot: Bot):
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 3))
    for user, password in ((WEBHOOK_USER, "wrong"), ("someone", WEBHOOK_PASSWORD), ("", "")):
        status, body = await bot.webhook(user=user, password=password)
        assert status == 401, (user, password)
    status, _ = await bot.post("/webhooks/dbsql", b"{}", {"Content-Type": "application/json"})
    assert status == 401, "no credentials at all"

    cases = [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"event": "x"}', "not a Databricks SQL alert payload: field 'alert' is missing: expected "
                            "'alert.alert.id' (current SQL alerts"),
        (b'{"alert": {"alert": {"name": "no id"}}}', "alert.alert.id"),
        (b'{"alert": {"name": "no id"}}', "neither 'alert.alert.id' nor 'alert.id' is given: expected "
                                         "'alert.alert.id' (current SQL alerts: {event, alert: {title, alert: "
                                         "{id, name, …}}}) or 'alert.id' (legacy alerts"),
    ]
    for body, message in cases:
        status, answer = await bot.post("/webhooks/dbsql", body, {"Content-Type": "application/json", **AUTH})
        assert status == 400 and message in answer["error"], (body, answer)
    status, _ = await bot.post("/webhooks/dbsql", b"a=1", {"Content-Type": "application/x-www-form-urlencoded", **AUTH})
    assert status == 415
    assert await bot.healthy()
    await bot.settle()
    assert bot.findings() == [], "no refused request started a sync"


async def test_a_restart_continues_the_same_thread(bot: Bot):
    bot.add(capsule8("c8-1", "Suspicious Interactive Shell", "i-0etl00000000001", 20))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()

    await bot.restart()
    bot.add(capsule8("c8-2", "Suspicious Interactive Shell", "i-0etl00000000001", 2))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 1
    assert len(bot.repeats(finding)) == 1
    assert "seen 2× on 1 host" in bot.text_of(finding).lower()


async def test_concurrent_webhooks_coalesce_and_post_each_finding_once(bot: Bot):
    bot.add(*(capsule8(f"c8-{n}", "Kernel Module Loaded", "i-0driver000000001", 20 - n) for n in range(5)))
    bot.add(capsule8("c8-x", "Boot Files Modified", "i-0etl00000000001", 4))
    results = await asyncio.gather(*(bot.webhook() for _ in range(10)))
    assert all(status == 202 for status, _ in results)
    assert sum(body["sync"] == "started" for _, body in results) <= 2
    await bot.settle()
    assert len(bot.findings()) == 2
    assert bot.runtime.pipeline.runs <= 3, "one running sync plus at most one queued per burst"


async def test_the_first_sync_looks_back_a_day_only(bot: Bot):
    bot.add(
        capsule8("c8-old", "Kernel Module Loaded", "i-0driver000000001", 25 * 60),
        capsule8("c8-new", "Boot Files Modified", "i-0etl00000000001", 23 * 60),
    )
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    assert "Boot Files Modified" in bot.text_of(finding)


async def test_a_databricks_outage_still_posts_the_finding_saying_what_is_missing(bot: Bot):
    bot.dbx.fail("/api/2.1/clusters", status=500, times=None)
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    text = bot.text_of(finding)
    assert "Kernel Module Loaded" in text and "cluster unknown" in text
    assert "clusters.list failed" in bot.details(finding)
    assert "dapi-e2e-token" not in json.dumps(bot.slack.calls)


async def test_slack_failing_then_recovering_delivers_every_finding_once(bot: Bot):
    bot.slack.fail("chat.postMessage", status=503, times=4)
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5),
            capsule8("c8-2", "Boot Files Modified", "i-0etl00000000001", 4))
    await bot.webhook()
    await bot.settle(timeout=30)
    assert sorted("Kernel" in bot.text_of(m) for m in bot.findings()) == [False, True]
    assert len(bot.findings()) == 2


async def test_polling_finds_events_without_any_webhook_and_shares_the_sync(tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx, ESM_POLL_INTERVAL="1s")
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5))
    await bot.start()
    try:
        for _ in range(100):
            if bot.findings():
                break
            await asyncio.sleep(0.05)
        bot.add(capsule8("c8-2", "Boot Files Modified", "i-0etl00000000001", 1))
        await asyncio.gather(*(bot.webhook() for _ in range(3)))
        await asyncio.sleep(1.2)  # at least one more poll lands on top of the webhooks
        await bot.settle()
        assert len(bot.findings()) == 2, "each event posted once, by whichever sync saw it first"
        assert len(bot.slack.calls_to("chat.postMessage")) == 4, "two parents, each with its details reply"
    finally:
        await bot.stop()


async def test_a_burst_on_one_cluster_costs_one_cluster_listing(bot: Bot):
    hosts = ["i-0driver000000001", "i-0exec0000000001", "i-0exec0000000002"]
    bot.add(*(capsule8(f"c8-{n}", "Kernel Module Loaded", hosts[n % 3], 50 - n * 0.5) for n in range(60)))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 1
    assert len(bot.dbx.calls_to("/api/2.1/clusters/list")) == 1
    assert bot.dbx.calls_to("/api/2.1/clusters/get") == []
    [finding] = bot.findings()
    replies = bot.repeats(finding)
    assert len(replies) == 2, "the first repeat in full, then one digest for the rest"
    assert "+58 more on 3 hosts" in replies[-1]["text"]
    # the parent, its details, the first repeat and the digest
    assert len(bot.slack.calls_to("chat.postMessage")) + len(bot.slack.calls_to("chat.update")) <= 4


async def test_a_post_slack_accepted_but_never_answered_is_not_posted_twice(bot: Bot):
    """Slack stores the message, the answer is lost: the retry finds it by its metadata."""
    bot.slack.lose_answers("chat.postMessage", times=4)  # the parent, its details, then two thread replies
    bot.add(*(capsule8(f"c8-{n}", "Kernel Module Loaded", "i-0driver000000001", 10 - n) for n in range(3)))
    await bot.webhook()
    await bot.settle(timeout=30)
    [finding] = bot.findings()
    replies = bot.replies(finding)
    assert len(replies) == 3, [r["text"] for r in replies]
    assert len({r["metadata"]["event_payload"]["key"] for r in replies}) == 3
    bot.details(finding)  # still first in the thread
    assert len(bot.slack.calls_to("chat.postMessage")) == 4, "each lost answer was recovered, not re-sent"


async def test_repeats_that_pile_up_during_a_slack_outage_cost_one_digest_and_one_update(bot: Bot):
    bot.slack.fail("chat.postMessage", status=503, times=None)
    bot.add(capsule8("c8-0", "Kernel Module Loaded", "i-0driver000000001", 30))
    for batch in range(3):  # three syncs while Slack is down
        bot.add(*(capsule8(f"c8-{batch}-{n}", "Kernel Module Loaded", "i-0exec0000000001", 29 - batch - n / 10)
                  for n in range(7)))
        await bot.webhook()
        runs = bot.runtime.pipeline.runs
        for _ in range(100):
            if not bot.runtime.syncs.busy and bot.runtime.pipeline.runs >= runs:
                break
            await asyncio.sleep(0.02)
    bot.slack.clear_faults()
    await bot.settle(timeout=40)

    [finding] = bot.findings()
    replies = bot.repeats(finding)
    assert len(replies) == 2, [r["text"] for r in replies]
    assert "+20 more on 1 host" in replies[-1]["text"]
    assert len(bot.slack.calls_to("chat.update")) <= 1
    assert "seen 22× on 2 hosts" in bot.text_of(finding).lower()


async def test_a_clamav_infection_is_posted_with_its_files_and_a_clean_scan_is_not(bot: Bot):
    scan = {"event_time": capsule8("x", "x", "x", 4)["event_time"], "workspace_id": 1234567890123456,
            "service_name": "clamAVScanService-dataplane", "action_name": "clamAVScanFinished",
            "request_params": {"instanceId": "i-0etl00000000001"}, "user_identity": {"email": None}}
    bot.add(
        {**scan, "event_id": "av-1", "response": {"status_code": 200, "result":
            "/local_disk0/tmp/miner.bin: Unix.Coinminer.Generic-7 FOUND\n<!channel>.sh: Eicar-Test FOUND\nInfected files: 2"}},
        {**scan, "event_id": "av-2", "response": {"status_code": 200, "result": "Scanned files: 10\nInfected files: 0"}},
    )
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    text = bot.text_of(finding)
    assert "ClamAV Infection" in text and "Malware Scanning" in text and "nightly-etl" in text
    assert "/local_disk0/tmp/miner.bin" in text and "Unix.Coinminer.Generic-7" in text
    assert "<!channel>" not in json.dumps(finding["blocks"]), "scan text is escaped"
    assert (await bot.runtime.store.counts())["ignored"] == 1, "the clean scan is stored, not posted"


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("failure", ["refused", "accepted, answer lost"])
async def test_a_stop_between_the_parent_and_its_details_neither_loses_nor_repeats_the_details(
        tmp_path, slack, dbx, failure):
    bot = Bot(tmp_path, slack, dbx, ESM_SLACK_POST_INTERVAL="1")  # a second between parent and details
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5, commandLine="insmod ./x.ko"))
    await bot.start()
    try:
        await bot.webhook()
        await _until(lambda: len(slack.calls_to("chat.postMessage")) >= 1)
        if failure == "refused":
            slack.fail("chat.postMessage", status=503, times=None)
        else:
            slack.lose_answers("chat.postMessage", times=1)
        await _until(lambda: len(slack.calls_to("chat.postMessage")) >= 2)
        await bot.stop()  # the parent is in Slack, its item not finished
        slack.clear_faults()
        await bot.start()
        await bot.settle(timeout=20)
        [finding] = bot.findings()
        replies = bot.replies(finding)
        assert len(replies) == 1, [r["text"] for r in replies]
        assert "Reproduce in Databricks SQL" in bot.details(finding)
    finally:
        await bot.stop()
