"""Finding buttons over /slack/events, signed as Slack signs them."""
from __future__ import annotations

import time

from tests.e2e.conftest import OUTSIDER, RESPONDER, Bot, capsule8

ACK = "esm.acknowledge"


async def posted_finding(bot: Bot) -> dict:
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    return finding


async def test_acknowledge_records_who_and_shows_it_on_the_message(bot: Bot):
    finding = await posted_finding(bot)
    status, _ = await bot.click(finding, ACK)
    assert status == 200
    [answer] = await bot.answers(bot.last_response_url)
    assert "acknowledged" in answer["text"]
    await bot.settle()
    text = bot.text_of(finding)
    assert f"Acknowledged* by @{RESPONDER}" in text
    assert "[Acknowledge]" not in text, "an acknowledged finding no longer offers Acknowledge"
    assert any(RESPONDER in r["text"] for r in bot.repeats(finding)), "the thread records it"
    [record] = await bot.runtime.store.actions_for(finding["metadata"]["event_payload"]["key"])
    assert (record["action"], record["user_id"], record["outcome"]) == (ACK, RESPONDER, "done")


async def test_a_member_of_a_responder_group_may_act(bot: Bot):
    finding = await posted_finding(bot)
    await bot.click(finding, ACK, user_id="U0TEAMMATE")
    [answer] = await bot.answers(bot.last_response_url)
    assert "acknowledged" in answer["text"]


async def test_someone_not_a_responder_is_refused_and_nothing_changes(bot: Bot):
    finding = await posted_finding(bot)
    await bot.click(finding, ACK, user_id=OUTSIDER)
    [answer] = await bot.answers(bot.last_response_url)
    assert answer["text"].startswith("Refused")
    await bot.settle()
    assert "[Acknowledge]" in bot.text_of(finding)
    assert bot.repeats(finding) == []


async def test_a_tampered_button_value_is_refused(bot: Bot):
    finding = await posted_finding(bot)
    await bot.click(finding, ACK, value='{"v":1,"finding_key":"not-a-real-finding"}')
    [answer] = await bot.answers(bot.last_response_url)
    assert "no longer known" in answer["text"]
    await bot.click(finding, ACK, value="garbage")
    [answer] = await bot.answers(bot.last_response_url)
    assert "not valid" in answer["text"]


async def test_forged_or_stale_signatures_get_401_and_cause_nothing(bot: Bot):
    from emulators.slack_signing import block_actions_body

    finding = await posted_finding(bot)
    button = next(e for b in finding["blocks"] if b["type"] == "actions" for e in b["elements"] if e["action_id"] == ACK)
    body = block_actions_body(action_id=ACK, value=button["value"], user_id=RESPONDER,
                              response_url=bot.slack.new_response_url())
    assert (await bot.slack_request(body, secret="not-the-secret"))[0] == 401
    assert (await bot.slack_request(body, timestamp=int(time.time()) - 600))[0] == 401
    assert (await bot.post("/slack/events", body, {"Content-Type": "application/x-www-form-urlencoded"}))[0] == 401
    await bot.settle()
    assert await bot.runtime.store.actions_for(finding["metadata"]["event_payload"]["key"]) == []
    assert "[Acknowledge]" in bot.text_of(finding)
