"""Storm roll-ups (#14): the real bot server against the Slack emulator (which enforces Slack's
~1 message/s/channel pace here, with 429 and Retry-After) and the Databricks emulator.

A storm over many clusters is one incident message per detection naming every affected cluster
(message and thread); its select menu opens one cluster's finding privately; "Terminate all"
is responders only, confirmed in a modal that lists every cluster, runs once, reports each
cluster's outcome in the thread and honours ESM_DRY_RUN; a calm sync posts findings one by one.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from emulators.pagerduty import TEST_ROUTING_KEY, PagerDutyEmulator
from emulators.slack import blocks_to_text
from emulators.slack_signing import block_actions_payload, payload_body, view_submission_body
from tests.e2e.conftest import CHANNEL, OUTSIDER, RESPONDER, SIGNING_SECRET, Bot, capsule8

CLUSTERS = 24
DETECTIONS = ("Kernel Module Loaded", "Suspicious Interactive Shell", "New File Executed in Container")
DELETE = "/api/2.1/clusters/delete"
STORM_ENV = {"ESM_SLACK_POST_INTERVAL": "0.05", "ESM_STORM_BUDGET": "1s"}  # 72 findings x 0.05 s > 1 s


def cluster(n: int) -> str:
    return f"0202-000000-st{n:04d}"


def driver(n: int) -> str:
    return f"i-0storm{n:09d}"


@pytest.fixture
async def storm_dbx(dbx):
    for n in range(CLUSTERS):
        dbx.add_cluster(cluster(n), name=f"storm-cluster-{n}", creator=f"owner{n}@example.com",
                        data_security_mode="SINGLE_USER" if n % 2 else "USER_ISOLATION",
                        driver_instance_id=driver(n))
    return dbx


@pytest.fixture
async def make_bot(tmp_path, slack, storm_dbx):
    started: list[Bot] = []

    async def make(**env: str) -> Bot:
        folder = tmp_path / f"bot{len(started)}"
        folder.mkdir()
        instance = await Bot(folder, slack, storm_dbx, **{**STORM_ENV, **env}).start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


def storm_rows(prefix: str = "st", repeats: int = 2) -> list[dict[str, Any]]:
    rows = []
    for d, detection in enumerate(DETECTIONS):
        for n in range(CLUSTERS):
            for r in range(repeats):
                rows.append(capsule8(f"{prefix}-{d}-{n}-{r}", detection, driver(n), 20 - r * 0.1))
    return rows


def metadata_key(message: dict[str, Any]) -> tuple[str, str]:
    meta = message.get("metadata") or {}
    return meta.get("event_type", ""), (meta.get("event_payload") or {}).get("key", "")


def incidents(bot: Bot) -> list[dict[str, Any]]:
    return [m for m in bot.findings() if metadata_key(m)[0] == "esm_incident"]


def element(message: dict[str, Any], action_id: str) -> dict[str, Any] | None:
    return next((e for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == action_id), None)


async def storm(bot: Bot, repeats: int = 2) -> list[dict[str, Any]]:
    bot.add(*storm_rows(repeats=repeats))
    status, _ = await bot.webhook()
    assert status == 202
    await bot.settle(timeout=60)
    return incidents(bot)


async def test_a_storm_is_one_incident_per_detection_naming_every_cluster(make_bot, slack):
    slack.post_rate, slack.post_burst = 20.0, 3  # the channel's pace (scaled with ESM_SLACK_POST_INTERVAL)
    bot = await make_bot()
    found = await storm(bot)

    assert len(found) == len(DETECTIONS), [blocks_to_text(m.get("blocks") or []) for m in bot.findings()]
    assert len(bot.findings()) == len(DETECTIONS)  # nothing posted one by one
    texts = [bot.text_of(m) for m in found]
    assert "New File Executed in Container" in texts[-1]  # the most severe detections first (high, high, medium)
    for message, text in zip(found, texts):
        assert f"{CLUSTERS * 2} events" in text.replace("*", "")
        assert f"{CLUSTERS} clusters" in text
        thread = "\n".join(blocks_to_text(r.get("blocks") or []) for r in bot.replies(message))
        for n in range(CLUSTERS):  # every affected cluster named in the thread
            assert f"storm-cluster-{n}" in thread and cluster(n) in thread
        menu = element(slack.message(CHANNEL, message["ts"]) or message, "esm_incident.open")
        assert menu is not None and len(menu["options"]) == CLUSTERS
    # every per-cluster finding still exists: in the store and in /esm
    counts = await bot.runtime.store.counts()
    assert counts["findings"] == CLUSTERS * len(DETECTIONS) and counts["posted"] == 0
    # the channel's pace held: never more than the emulator's rate over any 10 s (plus its burst)
    assert max(slack.peak_post_rate().values()) <= 20.0 + 3 / 10


async def test_a_calm_sync_after_the_storm_posts_findings_individually(make_bot):
    bot = await make_bot()
    await storm(bot)
    before = len(bot.findings())
    bot.add(capsule8("calm-1", "Kernel Module Loaded", "i-0driver000000001", 1),
            capsule8("calm-2", "Kernel Module Loaded", "i-0etl00000000001", 1))
    await bot.webhook()
    await bot.settle()
    new = bot.findings()[before:]
    assert [metadata_key(m)[0] for m in new] == ["esm_finding", "esm_finding"]
    # the storm is over: its incidents are closed (and say so)
    assert all("storm over" in bot.text_of(m) for m in incidents(bot))


async def test_later_repeats_fold_into_the_incident_counts(make_bot):
    bot = await make_bot()
    [first, *_] = await storm(bot)
    before = len(bot.findings())
    replies_before = len(bot.replies(first))
    bot.add(*[capsule8(f"again-{n}", DETECTIONS[0], driver(n), 1) for n in range(CLUSTERS)])
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == before  # no new messages in the channel
    message = next(m for m in incidents(bot) if DETECTIONS[0] in bot.text_of(m))
    assert f"{CLUSTERS * 3} events" in bot.text_of(message).replace("*", "")
    assert len(bot.replies(first)) == replies_before  # no cluster is new: nothing more listed


async def select(bot: Bot, message: dict[str, Any], finding_key: str, user: str = RESPONDER) -> list[dict[str, Any]]:
    current = bot.slack.message(CHANNEL, message["ts"]) or message
    response_url = bot.slack.new_response_url(CHANNEL, message["ts"])
    payload = block_actions_payload(action_id="esm_incident.open", user_id=user, channel_id=CHANNEL,
                                    message=current, response_url=response_url, trigger_id=bot.slack.trigger_id())
    menu = element(current, "esm_incident.open")
    option = next(o for o in menu["options"] if o["value"] == finding_key)
    payload["actions"] = [{"type": "static_select", "action_id": "esm_incident.open", "block_id": "incident_actions",
                           "selected_option": option, "placeholder": menu["placeholder"],
                           "action_ts": f"{time.time():.6f}"}]
    status, _ = await bot.slack_request(payload_body(payload))
    assert status == 200
    return await bot.answers(response_url)


async def test_the_menu_opens_one_clusters_finding_privately_with_its_buttons(make_bot):
    bot = await make_bot()
    [message, *_] = await storm(bot)
    menu = element(bot.slack.message(CHANNEL, message["ts"]), "esm_incident.open")
    chosen = menu["options"][5]["value"]
    [answer] = await select(bot, message, chosen)
    assert answer["response_type"] == "ephemeral" and answer.get("replace_original") is False
    text = blocks_to_text(answer["blocks"])
    finding = await bot.runtime.store.finding(chosen)
    assert finding.context.cluster.name in text
    buttons = [e["action_id"] for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "esm.terminate_cluster" in buttons and "esm.acknowledge" in buttons


async def click_terminate_all(bot: Bot, message: dict[str, Any], user: str,
                              action_id: str = "esm_incident.terminate_all") -> tuple[str, str]:
    """Click a button of the incident message (or of a note in its thread) as Slack would."""
    current = bot.slack.message(CHANNEL, message["ts"]) or message
    if element(current, action_id) is None:
        current = message  # a forged message: the button is not on Slack's
    button = element(current, action_id)
    assert button is not None, f"no {action_id} button on that message"
    response_url = bot.slack.new_response_url(CHANNEL, message["ts"])
    trigger = bot.slack.trigger_id()
    payload = block_actions_payload(action_id=action_id, value=button["value"], user_id=user,
                                    channel_id=CHANNEL, message=current, response_url=response_url,
                                    trigger_id=trigger, block_id="incident_actions")
    status, _ = await bot.slack_request(payload_body(payload))
    assert status == 200
    return response_url, button["value"]


async def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def submit(bot: Bot, key: str, user: str = RESPONDER, view_id: str = "V00000001",
                 callback_id: str = "esm_incident.terminate_all.confirm") -> None:
    body = view_submission_body(callback_id=callback_id, private_metadata=key, user_id=user, view_id=view_id)
    status, _ = await bot.slack_request(body)
    assert status == 200


def deletes(dbx: Any) -> list[str]:
    return [(c.data or {}).get("cluster_id") for c in dbx.calls if c.path == DELETE]


async def test_terminate_all_is_confirmed_runs_once_and_reports_every_cluster(make_bot, storm_dbx):
    bot = await make_bot()
    [message, *_] = await storm(bot)
    views_before = len(bot.slack.views)
    response_url, key = await click_terminate_all(bot, message, RESPONDER)
    await wait_for(lambda: len(bot.slack.views) > views_before)
    modal = bot.slack.views[-1]
    listed = blocks_to_text(modal["blocks"])
    for n in range(CLUSTERS):  # the modal names every cluster it will touch
        assert cluster(n) in listed
    assert deletes(storm_dbx) == []  # nothing happens before the confirmation

    # two submissions (two responders' modals, or a double submit) run it once
    await asyncio.gather(submit(bot, key), submit(bot, key, view_id="V00000002"))
    await wait_for(lambda: len(deletes(storm_dbx)) >= CLUSTERS)
    await bot.settle()
    assert sorted(deletes(storm_dbx)) == sorted(cluster(n) for n in range(CLUSTERS))
    thread = "\n".join(blocks_to_text(r.get("blocks") or []) for r in bot.replies(message))
    for n in range(CLUSTERS):
        assert f"{cluster(n)}): terminated" in thread
    for finding in await bot.runtime.store.incident_members(key):
        assert finding.status.value == "terminated"
    audit = await bot.runtime.store.actions_for(key)
    assert [a["outcome"] for a in audit].count("done") == 1 and "already" in [a["outcome"] for a in audit]
    assert element(bot.slack.message(CHANNEL, message["ts"]), "esm_incident.terminate_all") is None  # none left


async def test_terminate_all_refuses_a_non_responder_without_any_call(make_bot, storm_dbx):
    bot = await make_bot()
    [message, *_] = await storm(bot)
    views_before, calls_before = len(bot.slack.views), len(storm_dbx.calls)
    response_url, key = await click_terminate_all(bot, message, OUTSIDER)
    [answer] = await bot.answers(response_url)
    assert answer["text"].startswith("Refused")
    await submit(bot, key, OUTSIDER)  # a forged submission is refused too
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(await bot.runtime.store.actions_for(key)) < 2:
        await asyncio.sleep(0.05)
    assert [a["outcome"] for a in await bot.runtime.store.actions_for(key)] == ["refused", "refused"]
    assert len(bot.slack.views) == views_before and len(storm_dbx.calls) == calls_before
    assert deletes(storm_dbx) == []


async def test_terminate_all_in_dry_run_changes_nothing_and_says_so(make_bot, storm_dbx):
    bot = await make_bot(ESM_DRY_RUN="true")
    [message, *_] = await storm(bot)
    _, key = await click_terminate_all(bot, message, RESPONDER)
    await wait_for(lambda: bool(bot.slack.views))
    assert "Dry run" in blocks_to_text(bot.slack.views[-1]["blocks"])
    await submit(bot, key)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not await bot.runtime.store.actions_for(key):
        await asyncio.sleep(0.05)
    await bot.settle()
    assert deletes(storm_dbx) == []
    thread = "\n".join(blocks_to_text(r.get("blocks") or []) for r in bot.replies(message))
    assert "dry run" in thread.lower() and thread.count("): dry run") == CLUSTERS
    assert [a["outcome"] for a in await bot.runtime.store.actions_for(key)] == ["dry_run"]


async def test_a_storm_pages_on_call_once_per_incident_not_once_per_finding(make_bot):
    """ESM_PAGE_SEVERITY with roll-ups: one page per incident at or above it (the detections
    here are high, high and medium), its note in the incident's thread, never 48 pages."""
    async with PagerDutyEmulator() as pager:
        bot = await make_bot(ESM_PAGERDUTY_ROUTING_KEY=TEST_ROUTING_KEY, ESM_PAGERDUTY_URL=pager.url,
                             ESM_PAGE_SEVERITY="high")
        found = await storm(bot)

        def paged() -> list[dict[str, Any]]:
            return [m for m in found if "paged on-call: PagerDuty incident triggered" in "\n".join(
                blocks_to_text(r.get("blocks") or []) for r in bot.replies(m))]

        deadline = time.monotonic() + 30
        while len(paged()) < 2 and time.monotonic() < deadline:  # the page, then its note in the thread
            bot.runtime.outbox.kick()
            await asyncio.sleep(0.05)
        await bot.settle()

        assert len(paged()) == 2
        assert [e["event_action"] for e in pager.events] == ["trigger", "trigger"], pager.events
        assert len({e["dedup_key"] for e in pager.events}) == 2


QUARANTINE_ALL, QUARANTINE_CONFIRM = "esm_incident.quarantine_all", "esm_incident.quarantine_all.confirm"
UNDO_ALL = "esm_incident.undo_quarantine_all"


def acl_puts(dbx: Any) -> list[str]:
    return [c.path.rsplit("/", 1)[-1] for c in dbx.calls if c.path.startswith("/api/2.0/permissions/clusters/")
            and c.method in ("PUT", "PATCH")]


def direct(acl: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(next(e[k] for k in ("user_name", "group_name", "service_principal_name") if e.get(k)),
             p["permission_level"]) for e in acl for p in e["all_permissions"] if not p["inherited"]}


def canonical(acl: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(entry, sort_keys=True) for entry in acl)


def thread_of(bot: Bot, message: dict[str, Any]) -> str:
    return "\n".join(blocks_to_text(r.get("blocks") or []) for r in bot.replies(message))


@pytest.fixture
def quarantinable(storm_dbx):
    """Every storm cluster shared with a data team (and one with a named user), a security team to keep them."""
    storm_dbx.groups.update({"security-team", "data-team"})
    storm_dbx.add_user("carol@example.com")
    for n in range(CLUSTERS):
        storm_dbx.grant(cluster(n), "CAN_ATTACH_TO", group="data-team")
    storm_dbx.grant(cluster(3), "CAN_RESTART", user="carol@example.com")
    return storm_dbx


async def test_quarantine_all_contains_every_cluster_once_and_its_undo_restores_each_acl_exactly(
        make_bot, quarantinable):
    dbx = quarantinable
    bot = await make_bot(ESM_QUARANTINE_PRINCIPALS="group:security-team")
    [message, *_] = await storm(bot)
    before = {n: dbx.acl(cluster(n)) for n in range(CLUSTERS)}
    incident_buttons = [e["action_id"] for b in bot.slack.message(CHANNEL, message["ts"])["blocks"]
                        if b["type"] == "actions" for e in b["elements"]]
    assert incident_buttons.index(QUARANTINE_ALL) < incident_buttons.index("esm_incident.terminate_all")

    views_before = len(bot.slack.views)
    _, key = await click_terminate_all(bot, message, RESPONDER, QUARANTINE_ALL)
    await wait_for(lambda: len(bot.slack.views) > views_before)
    listed = blocks_to_text(bot.slack.views[-1]["blocks"])
    assert all(cluster(n) in listed for n in range(CLUSTERS)) and "keep running" in listed
    assert acl_puts(dbx) == []  # nothing changes before the confirmation

    # a double submission quarantines each cluster once
    await asyncio.gather(submit(bot, key, callback_id=QUARANTINE_CONFIRM),
                         submit(bot, key, view_id="V00000002", callback_id=QUARANTINE_CONFIRM))
    await wait_for(lambda: "ran Quarantine all" in thread_of(bot, message), timeout=30)
    await bot.settle()
    assert sorted(acl_puts(dbx)) == sorted(cluster(n) for n in range(CLUSTERS))
    for n in range(CLUSTERS):
        assert direct(dbx.acl(cluster(n))) == {("security-team", "CAN_MANAGE"), (dbx.user_name, "CAN_MANAGE")}
        assert f"{cluster(n)}): quarantined" in thread_of(bot, message)
    assert deletes(dbx) == []  # they keep running: the evidence stays
    audit = [a["outcome"] for a in await bot.runtime.store.actions_for(key) if a["action"] == "esm.quarantine_all"]
    assert audit.count("done") == 1 and "already" in audit
    for finding in await bot.runtime.store.incident_members(key):  # each cluster's own audit record
        assert [a["outcome"] for a in await bot.runtime.store.actions_for(finding.key)] == ["done"]

    # the undo in the thread: an outsider is refused with no call; a responder restores every list
    note = next(r for r in bot.replies(message) if element(r, UNDO_ALL) is not None)
    puts = len(acl_puts(dbx))
    refused_url, _ = await click_terminate_all(bot, note, OUTSIDER, UNDO_ALL)
    [refused] = await bot.answers(refused_url)
    assert refused["text"].startswith("Refused") and len(acl_puts(dbx)) == puts
    dbx.grant(cluster(5), "CAN_ATTACH_TO", user="carol@example.com")  # by hand, while quarantined
    await click_terminate_all(bot, note, RESPONDER, UNDO_ALL)
    await wait_for(lambda: "ran Undo quarantine of all" in thread_of(bot, message), timeout=30)
    await bot.settle()
    for n in range(CLUSTERS):
        assert canonical(dbx.acl(cluster(n))) == canonical(before[n]), f"cluster {n}: the list read back differs"
    thread = thread_of(bot, message)
    assert thread.count("): access restored") == CLUSTERS
    assert "added user carol@example.com CAN_ATTACH_TO" in thread  # what changed meanwhile is said
    await wait_for(lambda: element(bot.slack.message(CHANNEL, note["ts"]), UNDO_ALL) is None)  # offered no more
    assert "Undone by" in blocks_to_text(bot.slack.message(CHANNEL, note["ts"])["blocks"])

    # undone, the incident may be quarantined again
    views_before = len(bot.slack.views)
    await click_terminate_all(bot, message, RESPONDER, QUARANTINE_ALL)
    await wait_for(lambda: len(bot.slack.views) > views_before)


async def test_quarantine_all_in_dry_run_changes_no_acl(make_bot, quarantinable):
    bot = await make_bot(ESM_QUARANTINE_PRINCIPALS="group:security-team", ESM_DRY_RUN="true")
    [message, *_] = await storm(bot)
    _, key = await click_terminate_all(bot, message, RESPONDER, QUARANTINE_ALL)
    await wait_for(lambda: bool(bot.slack.views))
    await submit(bot, key, callback_id=QUARANTINE_CONFIRM)
    await wait_for(lambda: "ran Quarantine all" in thread_of(bot, message), timeout=30)
    await bot.settle()
    assert acl_puts(quarantinable) == []
    thread = thread_of(bot, message)
    assert thread.count("): dry run — Dry run: would replace the ACL of cluster") == CLUSTERS
    assert all(element(r, UNDO_ALL) is None for r in bot.replies(message))  # nothing to undo


async def test_quarantine_all_is_offered_only_with_quarantine_principals(make_bot, quarantinable):
    bot = await make_bot()  # ESM_QUARANTINE_PRINCIPALS unset: no one would be left to investigate
    [message, *_] = await storm(bot)
    current = bot.slack.message(CHANNEL, message["ts"])
    assert element(current, QUARANTINE_ALL) is None
    # a forged click and a forged submission are refused, no modal, no ACL call
    forged = json.loads(json.dumps(current))
    [actions] = [b for b in forged["blocks"] if b["type"] == "actions"]
    key = element(current, "esm_incident.terminate_all")["value"]
    actions["elements"].append({"type": "button", "action_id": QUARANTINE_ALL, "value": key,
                                "text": {"type": "plain_text", "text": "Quarantine all"}})
    views_before = len(bot.slack.views)
    response_url, _ = await click_terminate_all(bot, forged, RESPONDER, QUARANTINE_ALL)
    [answer] = await bot.answers(response_url)
    assert "not offered here" in answer["text"]
    await submit(bot, key, callback_id=QUARANTINE_CONFIRM)
    await wait_for(lambda: any("not offered here" in e.get("text", "") for e in bot.slack.ephemerals(CHANNEL)))
    assert len(bot.slack.views) == views_before and acl_puts(quarantinable) == []
    assert "ran Quarantine all" not in thread_of(bot, message)
