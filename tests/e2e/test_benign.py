"""Mark benign end to end: the real server, signed block actions and view submissions as Slack
sends them, the modal's preview, the suppression's effect on later events, expiry, and
/esm benign list | remove."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.core.suppressions import Scope, Suppression
from emulators.slack_signing import (
    APP_ID,
    TEAM,
    VERIFICATION_TOKEN,
    payload_body,
    view_submission_body,
    view_submission_payload,
)
from tests.e2e.conftest import OUTSIDER, RESPONDER, WORKSPACE_ID, Bot, capsule8

MARK = "esm.mark_benign"
CALLBACK = "esm.mark_benign.submit"
CA = "Root Certificate Store Modified"
DRIVER, EXECUTOR, ETL = "i-0driver000000001", "i-0exec0000000001", "i-0etl00000000001"
CONTAINER = "3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12"
CA_PATH = "/usr/local/share/ca-certificates/corp-root-ca.crt"
HINT = "origin=container\nfile_path=/usr/local/share/ca-certificates/*"
REASON = "Corp private root CA installed by the cluster init script"


def ca(event_id: str, instance: str, minutes_ago: float, path: str = CA_PATH, **extra: Any) -> dict[str, Any]:
    return capsule8(event_id, CA, instance, minutes_ago, containerId=CONTAINER, filePath=path, **extra)


DAY = 24 * 60


async def ca_finding(bot: Bot) -> dict[str, Any]:
    """One posted CA-store finding on the driver, and a week of history around it."""
    bot.add(
        ca("ca-now", DRIVER, 5),
        ca("ca-exec", EXECUTOR, 3),  # same cluster, a repeat in the thread
        ca("ca-2d", DRIVER, 2 * DAY),  # older than the initial lookback: never synced, still counted
        ca("ca-3d-other-path", DRIVER, 3 * DAY, path="/etc/ssl/certs/other.pem"),
        ca("ca-8d", DRIVER, 8 * DAY),  # outside the 7 days
        ca("ca-etl", ETL, 2 * DAY),  # another cluster, same workspace
        capsule8("km-2d", "Kernel Module Loaded", DRIVER, 2 * DAY),  # another detection
    )
    other = ca("ca-other-ws", "i-0elsewhere000001", 2 * DAY)
    bot.add({**other, "workspace_id": 999})
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    return finding


def key_of(message: dict[str, Any]) -> str:
    return message["metadata"]["event_payload"]["key"]


def preview_of(view: dict[str, Any]) -> str:
    [block] = [b for b in view["blocks"] if b.get("block_id") == "preview"]
    return block["elements"][0]["text"]


def form(scope: str = "instance", patterns: str | None = HINT, expiry: str = "7d", reason: str | None = REASON,
         on_date: str | None = None, never: bool = False) -> dict[str, dict[str, Any]]:
    """view.state.values exactly as Slack reports every input block of the modal."""
    confirmed = [{"text": {"type": "plain_text", "text": "I confirm"}, "value": "confirmed"}] if never else []
    return {
        "scope": {"benign.scope": {"type": "radio_buttons", "selected_option": {
            "text": {"type": "plain_text", "text": scope}, "value": scope}}},
        "patterns": {"patterns": {"type": "plain_text_input", "value": patterns}},
        "expiry": {"benign.expiry": {"type": "static_select", "selected_option": {
            "text": {"type": "plain_text", "text": expiry}, "value": expiry}}},
        "expiry_date": {"date": {"type": "datepicker", "selected_date": on_date}},
        "never_confirm": {"never": {"type": "checkboxes", "selected_options": confirmed}},
        "reason": {"reason": {"type": "plain_text_input", "value": reason}},
    }


async def open_form(bot: Bot, finding: dict[str, Any], user_id: str = RESPONDER) -> dict[str, Any]:
    status, _ = await bot.click(finding, MARK, user_id=user_id)
    assert status == 200
    [answer] = await bot.answers(bot.last_response_url)
    assert answer["text"] == "Opened the benign form"
    [view] = bot.slack.views
    return view


async def submit(bot: Bot, view: dict[str, Any], values: dict[str, Any], user_id: str = RESPONDER) -> tuple[int, Any]:
    body = view_submission_body(callback_id=view["callback_id"], values=values, user_id=user_id,
                                private_metadata=view["private_metadata"], view_id=view["id"], blocks=view["blocks"])
    return await bot.slack_request(body)


async def change_in_modal(bot: Bot, view: dict[str, Any], action: dict[str, Any], values: dict[str, Any],
                          user_id: str = RESPONDER) -> tuple[int, Any]:
    """A block_actions payload from inside a modal (an input with dispatch_action), as Slack sends it."""
    state_view = view_submission_payload(callback_id=view["callback_id"], values=values, user_id=user_id,
                                         private_metadata=view["private_metadata"], view_id=view["id"],
                                         blocks=view["blocks"])["view"]
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "responder", "name": "responder", "team_id": TEAM["id"]},
        "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
        "container": {"type": "view", "view_id": view["id"]},
        "trigger_id": "1337.44.trigger", "team": TEAM, "enterprise": None, "is_enterprise_install": False,
        "view": {**state_view, "hash": view["hash"]},
        "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
    }
    return await bot.slack_request(payload_body(payload))


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def status_text(bot: Bot) -> str:
    url = await bot.command("status")
    [answer] = await bot.answers(url)
    return answer["text"]


# ---------------------------------------------------------------------------------- the modal


async def test_mark_benign_opens_a_modal_whose_preview_counts_last_weeks_matching_events(bot: Bot):
    finding = await ca_finding(bot)
    view = await open_form(bot, finding)
    assert view["callback_id"] == CALLBACK and view["private_metadata"] == key_of(finding)
    assert len(view["title"]["text"]) <= 24
    scope = next(b for b in view["blocks"] if b.get("block_id") == "scope")
    assert [o["value"] for o in scope["element"]["options"]] == ["instance", "cluster", "workspace", "everywhere"]
    assert scope["element"]["initial_option"]["value"] == "instance"
    patterns = next(b for b in view["blocks"] if b.get("block_id") == "patterns")
    assert patterns["element"]["initial_value"] == HINT
    assert CA in next(b for b in view["blocks"] if b.get("block_id") == "detection")["text"]["text"]
    # this instance, container, CA dir, 7 days: ca-now and ca-2d (not ca-8d, the other path, the executor)
    assert preview_of(view).startswith("Would match 2 events of the last 7 days")

    for scope_kind, expected in [("cluster", 3), ("workspace", 4), ("everywhere", 5)]:
        action = {"type": "radio_buttons", "block_id": "scope", "action_id": "benign.scope",
                  "selected_option": {"text": {"type": "plain_text", "text": scope_kind}, "value": scope_kind}}
        status, _ = await change_in_modal(bot, view, action, form(scope=scope_kind, reason=None))
        assert status == 200
        await wait_for(lambda: f"Would match {expected} events" in preview_of(bot.slack.views[0]))
        view = bot.slack.views[0]
        assert next(b for b in view["blocks"] if b.get("block_id") == "scope")["element"]["initial_option"]["value"] == scope_kind

    # without patterns the whole detection on the instance: ca-now, ca-2d and the other path
    refresh = {"type": "button", "block_id": "preview_actions", "action_id": "benign.refresh"}
    await change_in_modal(bot, view, refresh, form(scope="instance", patterns=None))
    await wait_for(lambda: "Would match 3 events" in preview_of(bot.slack.views[0]))


async def test_someone_not_a_responder_is_refused_and_no_modal_opens(bot: Bot):
    finding = await ca_finding(bot)
    await bot.click(finding, MARK, user_id=OUTSIDER)
    [answer] = await bot.answers(bot.last_response_url)
    assert answer["text"].startswith("Refused")
    assert bot.slack.views == []
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert (record["action"], record["user_id"], record["outcome"]) == (MARK, OUTSIDER, "refused")


async def test_a_submission_without_a_reason_or_with_bad_input_gets_field_errors_and_creates_nothing(bot: Bot):
    finding = await ca_finding(bot)
    view = await open_form(bot, finding)
    status, answer = await submit(bot, view, form(reason=None))
    assert status == 200
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {"reason"}
    status, answer = await submit(bot, view, form(patterns="origin=container\nfile_path", reason="   "))
    assert set(answer["errors"]) == {"patterns", "reason"} and answer["errors"]["patterns"].startswith("line 2")
    _, answer = await submit(bot, view, form(expiry="date", on_date="2020-01-01"))
    assert "in the past" in answer["errors"]["expiry_date"]
    _, answer = await submit(bot, view, form(expiry="never"))
    assert "tick the confirmation" in answer["errors"]["never_confirm"]
    await bot.settle()
    assert await bot.runtime.store.active_suppressions(datetime.now(timezone.utc)) == []
    assert "[Mark benign]" in bot.text_of(finding)


async def test_a_forged_submission_by_someone_not_a_responder_is_refused(bot: Bot):
    finding = await ca_finding(bot)
    view = await open_form(bot, finding)
    _, answer = await submit(bot, view, form(), user_id=OUTSIDER)
    assert answer["response_action"] == "errors" and answer["errors"]["reason"].startswith("Refused")
    await bot.settle()
    assert await bot.runtime.store.active_suppressions(datetime.now(timezone.utc)) == []
    outcomes = [(r["user_id"], r["outcome"]) for r in await bot.runtime.store.actions_for(key_of(finding))]
    assert (OUTSIDER, "refused") in outcomes
    assert "[Mark benign]" in bot.text_of(finding)


# ------------------------------------------------------------------ the suppression at work


async def test_marking_benign_closes_the_finding_and_hides_later_matching_events(bot: Bot):
    finding = await ca_finding(bot)
    view = await open_form(bot, finding)
    status, answer = await submit(bot, view, form())
    assert status == 200 and not answer, "an empty ack closes the modal"
    await bot.settle()

    text = bot.text_of(finding)
    assert f"Marked benign* by @{RESPONDER}" in text
    assert f"Reason: {REASON}" in text
    assert "[Mark benign]" not in text
    notes = [r["text"] for r in bot.repeats(finding) if "marked this finding benign" in r["text"]]
    assert len(notes) == 1 and RESPONDER in notes[0] and REASON in notes[0] and "`b1`" in notes[0]
    records = await bot.runtime.store.actions_for(key_of(finding))
    assert [(r["action"], r["user_id"], r["outcome"]) for r in records][-1] == (MARK, RESPONDER, "done")
    [made] = await bot.runtime.store.active_suppressions(datetime.now(timezone.utc))
    assert (made.id, made.scope, made.created_by, made.finding_key) == (
        "b1", Scope(workspace_id=str(WORKSPACE_ID), instance_id=DRIVER), RESPONDER, key_of(finding))
    assert timedelta(days=6, hours=23) < made.expires_at - datetime.now(timezone.utc) <= timedelta(days=7)

    # a later matching event: stored and counted, not posted
    replies_before = len(bot.repeats(finding))
    bot.add(ca("ca-later", DRIVER, 1, path="/usr/local/share/ca-certificates/corp-intermediate.crt"))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 1 and len(bot.repeats(finding)) == replies_before
    assert "1 similar event hidden by benign suppressions" in bot.text_of(finding)
    assert "suppressed: 1" in await status_text(bot)

    # the same detection on another instance is outside scope=instance: posted
    bot.add(ca("ca-etl-now", ETL, 1))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 2
    assert "suppressed: 1" in await status_text(bot)

    # /esm benign list shows it, with its count and expiry, to responders only (#11)
    url = await bot.command("benign list", user_id=OUTSIDER)
    [refused] = await bot.answers(url)
    assert refused["text"].startswith("Refused") and "b1" not in refused["text"]
    url = await bot.command("benign list")
    [listing] = await bot.answers(url)
    assert "b1" in listing["text"] and CA in listing["text"] and f"instance {DRIVER}" in listing["text"]
    assert "matched 1" in listing["text"] and "expires" in listing["text"] and REASON in listing["text"]


async def test_benign_remove_is_for_responders_and_brings_events_back(bot: Bot):
    finding = await ca_finding(bot)
    await submit(bot, await open_form(bot, finding), form(scope="cluster", patterns="origin=container"))
    await bot.settle()

    url = await bot.command("benign remove b1", user_id=OUTSIDER)
    [answer] = await bot.answers(url)
    assert answer["text"].startswith("Refused")
    assert len(await bot.runtime.store.active_suppressions(datetime.now(timezone.utc))) == 1

    url = await bot.command("benign remove b99")
    [answer] = await bot.answers(url)
    assert "No benign suppression `b99`" in answer["text"]

    url = await bot.command("benign remove b1")
    [answer] = await bot.answers(url)
    assert answer["text"].startswith("Removed suppression `b1`")
    assert await bot.runtime.store.active_suppressions(datetime.now(timezone.utc)) == []
    await bot.settle()
    assert any("removed benign suppression `b1`" in r["text"] and RESPONDER in r["text"] for r in bot.repeats(finding))
    outcomes = [(r["action"], r["user_id"], r["outcome"]) for r in await bot.runtime.store.actions_for(key_of(finding))]
    assert ("esm.benign_remove", OUTSIDER, "refused") in outcomes and ("esm.benign_remove", RESPONDER, "done") in outcomes

    url = await bot.command("benign list")
    [answer] = await bot.answers(url)
    assert answer["text"] == "No active benign suppressions."

    replies_before = len(bot.repeats(finding))
    bot.add(ca("ca-after-removal", EXECUTOR, 1))
    await bot.webhook()
    await bot.settle()
    assert len(bot.repeats(finding)) == replies_before + 1, "posted again, in the finding's thread"


async def test_a_suppression_expires_by_itself(bot: Bot):
    store = bot.runtime.store
    expires = datetime.now(timezone.utc) + timedelta(seconds=3)
    await store.add_suppression(Suppression(
        id="", detection="Kernel Module Loaded", scope=Scope(), match={}, reason="maintenance window",
        created_by=RESPONDER, created_at=datetime.now(timezone.utc), expires_at=expires))
    bot.add(capsule8("km-1", "Kernel Module Loaded", DRIVER, 1))
    await bot.webhook()
    await bot.settle()
    assert bot.findings() == []
    assert (await store.counts()).get("suppressed") == 1

    await asyncio.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    bot.add(capsule8("km-2", "Kernel Module Loaded", DRIVER, 0.5))
    await bot.webhook()
    await bot.settle()
    assert len(bot.findings()) == 1, "expired: matching events are posted again"
    assert "No active benign suppressions." == (await bot.answers(await bot.command("benign list")))[0]["text"]
    assert (await store.suppression_counts())["b1"] == 1
