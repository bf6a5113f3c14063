"""The Slack emulator rejects what Slack rejects, in Slack's error shape, through the real client.

Each example is one the emulator used to accept: 11 section fields, 11 context elements, 26
buttons, a 31-character confirm button, empty section text, duplicate action_ids, a modal with
inputs but no submit, and a trigger_id used after Slack's 3 seconds (or twice, or made up).
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from emulators.slack import TEST_BOT_TOKEN

CHANNEL = "C0STRICT"


def pt(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def md(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def button(action_id: str, **extra) -> dict:
    return {"type": "button", "action_id": action_id, "text": pt("Go"), **extra}


CONFIRM_31 = {"title": pt("Terminate?"), "text": pt("Really?"), "confirm": pt("x" * 31), "deny": pt("No")}
INPUT = {"type": "input", "block_id": "reason", "label": pt("Reason"),
         "element": {"type": "plain_text_input", "action_id": "reason"}}

BAD_MESSAGES = {
    "11 section fields": ([{"type": "section", "fields": [md("f")] * 11}], "fields attribute cannot exceed 10 items"),
    "11 context elements": ([{"type": "context", "elements": [md("c")] * 11}], "cannot exceed 10 elements"),
    "26 buttons": ([{"type": "actions", "elements": [button(f"b{i}") for i in range(26)]}],
                   "elements attribute cannot exceed 25 elements"),
    "a 31-character confirm button": ([{"type": "actions", "elements": [button("t", confirm=CONFIRM_31)]}],
                                      "confirm attribute cannot exceed 30 characters"),
    "empty section text": ([{"type": "section", "text": md("")}],
                           "must be more than 0 characters [json-pointer:/blocks/0/text/text]"),
    "duplicate action_ids": ([{"type": "actions", "elements": [button("same"), button("same")]}],
                             "action_id must be unique: 'same' is used twice"),
    "duplicate block_ids": ([{"type": "divider", "block_id": "d"}, {"type": "divider", "block_id": "d"}],
                            "block_id must be unique"),
    "51 blocks": ([{"type": "divider"}] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
    "a section field over 2,000 characters": ([{"type": "section", "fields": [md("x" * 2001)]}],
                                              "must be less than 2001 characters"),
    "a block type Slack does not know": ([{"type": "banner"}], "unsupported type: banner"),
}


@pytest.fixture
async def client(slack_emu):
    return AsyncWebClient(token=TEST_BOT_TOKEN, base_url=slack_emu.api_url)


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
async def test_a_message_breaking_a_block_kit_limit_is_invalid_blocks(client, slack_emu, case):
    blocks, words = BAD_MESSAGES[case]
    for call in (lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=blocks),
                 lambda: client.chat_postEphemeral(channel=CHANNEL, user="U1", text="x", blocks=blocks)):
        with pytest.raises(SlackApiError) as caught:
            await call()
        answer = caught.value.response.data
        assert answer["ok"] is False and answer["error"] == "invalid_blocks"
        assert any(words in m and m.startswith("[ERROR] ") for m in answer["response_metadata"]["messages"]), answer
        assert answer["errors"] == answer["response_metadata"]["messages"]
    assert slack_emu.messages(CHANNEL) == []


async def test_an_update_breaking_a_limit_leaves_the_message_as_it_was(client, slack_emu):
    posted = await client.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "section", "text": md("ok")}])
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="x", blocks=BAD_MESSAGES["26 buttons"][0])
    assert slack_emu.message(CHANNEL, posted["ts"])["blocks"] == [{"type": "section", "text": md("ok")}]


async def test_a_response_url_post_breaking_a_limit_is_refused(slack_emu):
    url = slack_emu.new_response_url(CHANNEL)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"text": "x", "blocks": BAD_MESSAGES["empty section text"][0]}) as response:
            assert (response.status, await response.text()) == (400, "invalid_blocks")
    assert slack_emu.responses(url) == []


def modal(**extra) -> dict:
    return {"type": "modal", "title": pt("Mark benign"), "submit": pt("Save"), "blocks": [INPUT], **extra}


@pytest.mark.parametrize("view, words", [
    ({k: v for k, v in modal().items() if k != "submit"}, "submit is required when a modal has input blocks"),
    (modal(title=pt("A title longer than 24 chars")), "title must be between 1 and 24 characters"),
    (modal(blocks=[]), "views must contain between 1 and 100 blocks"),
    (modal(blocks=[INPUT, {"type": "context", "elements": [md("c")] * 11}]), "cannot exceed 10 elements"),
    (modal(private_metadata="x" * 3001), "private_metadata cannot exceed 3000 characters"),
])
async def test_a_view_breaking_a_limit_is_invalid_arguments(client, slack_emu, view, words):
    with pytest.raises(SlackApiError) as caught:
        await client.views_open(trigger_id=slack_emu.trigger_id(), view=view)
    answer = caught.value.response.data
    assert answer["error"] == "invalid_arguments"
    assert any(words in m for m in answer["response_metadata"]["messages"]), answer
    assert slack_emu.views == []


async def test_a_trigger_id_opens_one_view_within_three_seconds_of_its_interaction(client, slack_emu):
    fresh = slack_emu.trigger_id()
    opened = await client.views_open(trigger_id=fresh, view=modal())
    assert opened["view"]["id"]
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        await client.views_open(trigger_id=fresh, view=modal())
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        await client.views_open(trigger_id="1337.42.made-up", view=modal())

    slack_emu.trigger_ttl = 0.2  # the same rule as Slack's 3 s, on a test's clock
    late = slack_emu.trigger_id()
    await asyncio.sleep(0.3)
    with pytest.raises(SlackApiError) as caught:
        await client.views_open(trigger_id=late, view=modal())
    assert caught.value.response.data == {"ok": False, "error": "expired_trigger_id"}
    # views.update needs no trigger: the view opened in time can still change
    updated = await client.views_update(view_id=opened["view"]["id"], view=modal(callback_id="later"))
    assert updated["view"]["callback_id"] == "later"


async def test_slacks_default_three_seconds():
    from emulators.slack import TRIGGER_TTL

    assert TRIGGER_TTL == 3.0
