"""The Mark benign modal opens within Slack's trigger_id lifetime however slow the audit source is:
at once, its preview "computing…", then updated (views.update) when the count arrives.

The audit source is the SQL warehouse (the Thrift emulator) holding every statement for seconds;
the Slack emulator expires a trigger_id as Slack does, here after 1 s instead of 3 so that
waiting for anything before views.open would fail."""
from __future__ import annotations

import asyncio
import time


from bot.render.benign_modal import PREVIEW_COMPUTING
from emulators.thrift_sql import ThriftSQLEmulator
from tests.e2e.conftest import Bot
from tests.e2e.test_benign import MARK, ca_finding, change_in_modal, form, preview_of

SLOW = 2.5  # seconds every warehouse statement is held


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_the_modal_opens_at_once_computing_and_the_slow_preview_arrives_by_views_update(
        warehouse_bot: Bot, warehouse: ThriftSQLEmulator):
    bot = warehouse_bot
    finding = await ca_finding(bot)
    bot.slack.trigger_ttl = 1.0  # stricter than Slack's 3 s: nothing slow may come before views.open
    warehouse.delay(SLOW)
    clicked = time.monotonic()
    status, _ = await bot.click(finding, MARK)
    assert status == 200

    await wait_for(lambda: bot.slack.views, timeout=5)
    opened_after = time.monotonic() - clicked
    [opened] = bot.slack.calls_to("views.open")
    assert preview_of(opened["view"]) == PREVIEW_COMPUTING and opened_after < 1.0
    assert bot.slack.calls_to("views.update") == []  # the count is still running

    await wait_for(lambda: "Would match 2 events of the last 7 days" in preview_of(bot.slack.views[0]))
    [update] = bot.slack.calls_to("views.update")
    assert update["view_id"] == bot.slack.views[0]["id"] and update["hash"]  # guarded by the opened view's hash
    [answer] = await bot.answers(bot.last_response_url, timeout=30)
    assert answer["text"] == "Opened the benign form"


async def test_a_scope_change_shows_computing_at_once_then_the_new_count(warehouse_bot: Bot, warehouse):
    bot = warehouse_bot
    finding = await ca_finding(bot)
    status, _ = await bot.click(finding, MARK)
    await bot.answers(bot.last_response_url, timeout=30)
    view = bot.slack.views[0]
    warehouse.delay(SLOW)
    action = {"type": "radio_buttons", "block_id": "scope", "action_id": "benign.scope",
              "selected_option": {"text": {"type": "plain_text", "text": "cluster"}, "value": "cluster"}}
    status, _ = await change_in_modal(bot, view, action, form(scope="cluster", reason=None))
    assert status == 200
    await wait_for(lambda: preview_of(bot.slack.views[0]) == PREVIEW_COMPUTING, timeout=2)
    await wait_for(lambda: "Would match 3 events" in preview_of(bot.slack.views[0]))


async def test_a_change_made_while_counting_wins_over_the_late_first_count(warehouse_bot: Bot, warehouse):
    bot = warehouse_bot
    finding = await ca_finding(bot)
    warehouse.delay(SLOW)
    await bot.click(finding, MARK)
    await wait_for(lambda: bot.slack.views, timeout=5)
    view = bot.slack.views[0]
    warehouse.delay(0)  # the user's change counts quickly; the first count is still held
    action = {"type": "radio_buttons", "block_id": "scope", "action_id": "benign.scope",
              "selected_option": {"text": {"type": "plain_text", "text": "workspace"}, "value": "workspace"}}
    await change_in_modal(bot, view, action, form(scope="workspace", reason=None))
    await wait_for(lambda: "Would match 4 events" in preview_of(bot.slack.views[0]))
    await bot.answers(bot.last_response_url, timeout=30)  # the first count has arrived by now
    assert "Would match 4 events" in preview_of(bot.slack.views[0]), "the stale count did not overwrite it"
