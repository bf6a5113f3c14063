"""SlackChat (real slack_sdk) against the local Slack emulator over real HTTP."""
from __future__ import annotations

import json
import time

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import SlackChat
from bot.core.ports import ChatError
from emulators.slack import TEST_BOT_TOKEN, blocks_to_text

CHANNEL = "C0SECURITY"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Kernel Module Loaded*"}}]


async def test_post_update_and_thread_reply_reach_slack(slack_chat, slack_emu):
    ts = await slack_chat.post(CHANNEL, "Kernel Module Loaded", BLOCKS)
    await slack_chat.update(CHANNEL, ts, "Kernel Module Loaded (2x)", BLOCKS)
    reply_ts = await slack_chat.post(CHANNEL, "seen again", [], thread_ts=ts)

    assert [m["ts"] for m in slack_emu.messages(CHANNEL)] == [ts]
    assert slack_emu.message(CHANNEL, ts)["text"] == "Kernel Module Loaded (2x)"
    assert slack_emu.message(CHANNEL, ts)["blocks"] == BLOCKS
    assert [r["ts"] for r in slack_emu.thread(CHANNEL, ts)] == [reply_ts]
    assert float(reply_ts) > float(ts)


async def test_chat_calls_are_sent_as_json_with_bearer_token(slack_chat, slack_emu):
    await slack_chat.post(CHANNEL, "hello", BLOCKS)

    (params,) = slack_emu.calls_to("chat.postMessage")
    assert params["blocks"] == BLOCKS  # decoded structure, not a JSON string
    assert "token" not in params  # the token travelled in the Authorization header


async def test_form_encoded_calls_and_token_in_body_are_accepted(slack_emu):
    client = AsyncWebClient(base_url=slack_emu.api_url)  # no Authorization header
    form = {"token": TEST_BOT_TOKEN, "channel": CHANNEL, "text": "form", "blocks": json.dumps(BLOCKS)}

    response = await client.api_call("chat.postMessage", data=form)

    assert slack_emu.message(CHANNEL, response["ts"])["blocks"] == BLOCKS
    assert "token" not in slack_emu.calls_to("chat.postMessage")[0]


async def test_missing_token_is_not_authed(slack_emu):
    client = AsyncWebClient(base_url=slack_emu.api_url)

    with pytest.raises(SlackApiError) as caught:
        await client.auth_test()

    assert caught.value.response["error"] == "not_authed"


async def test_metadata_round_trips_and_find_posted_finds_it(slack_chat, slack_emu):
    metadata = {"event_type": "esm_finding", "event_payload": {"key": "kml|cluster-1"}}
    ts = await slack_chat.post(CHANNEL, "finding", BLOCKS, metadata=metadata)
    await slack_chat.post(CHANNEL, "other", BLOCKS, metadata={"event_type": "esm_finding", "event_payload": {"key": "x"}})

    assert slack_emu.message(CHANNEL, ts)["metadata"] == metadata
    assert await slack_chat.find_posted(CHANNEL, "esm_finding", "kml|cluster-1") == ts
    assert await slack_chat.find_posted(CHANNEL, "esm_finding", "missing") is None
    assert await slack_chat.find_posted(CHANNEL, "other_type", "kml|cluster-1") is None


async def test_find_posted_pages_through_history(slack_emu):
    chat = SlackChat(TEST_BOT_TOKEN, slack_emu.api_url)
    metadata = {"event_type": "esm_finding", "event_payload": {"key": "oldest"}}
    ts = await chat.post(CHANNEL, "oldest", BLOCKS, metadata=metadata)
    for n in range(150):
        await chat.post(CHANNEL, f"filler {n}", BLOCKS)

    assert await chat.find_posted(CHANNEL, "esm_finding", "oldest") == ts
    assert len(slack_emu.calls_to("conversations.history")) == 2
    assert await chat.find_posted(CHANNEL, "esm_finding", "oldest", limit=100) is None
    await chat.close()


async def test_history_hides_metadata_unless_asked(slack_chat, slack_emu):
    metadata = {"event_type": "esm_finding", "event_payload": {"key": "k"}}
    await slack_chat.post(CHANNEL, "finding", BLOCKS, metadata=metadata)
    client = AsyncWebClient(token=TEST_BOT_TOKEN, base_url=slack_emu.api_url)

    plain = await client.conversations_history(channel=CHANNEL)
    with_metadata = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)

    assert "metadata" not in plain["messages"][0]
    assert with_metadata["messages"][0]["metadata"] == metadata


async def test_short_429_is_retried_after_retry_after(slack_chat, slack_emu):
    slack_emu.fail("chat.postMessage", status=429, times=1, retry_after=1)

    started = time.monotonic()
    ts = await slack_chat.post(CHANNEL, "rate limited once", BLOCKS)

    assert time.monotonic() - started >= 1.0  # waited as Slack asked
    assert len(slack_emu.calls_to("chat.postMessage")) == 2  # the 429, then the delivery
    assert [m["ts"] for m in slack_emu.messages(CHANNEL)] == [ts]


async def test_long_429_surfaces_retry_after_without_waiting(slack_chat, slack_emu):
    slack_emu.fail("chat.postMessage", status=429, times=1, retry_after=30)

    started = time.monotonic()
    with pytest.raises(ChatError) as caught:
        await slack_chat.post(CHANNEL, "rate limited for long", BLOCKS)

    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 30.0
    assert not caught.value.permanent
    assert len(slack_emu.calls_to("chat.postMessage")) == 1
    assert slack_emu.messages(CHANNEL) == []


async def test_503_is_retried_then_succeeds(slack_chat, slack_emu):
    slack_emu.fail("chat.update", status=503, times=1)
    ts = await slack_chat.post(CHANNEL, "before", BLOCKS)

    await slack_chat.update(CHANNEL, ts, "after", BLOCKS)

    assert len(slack_emu.calls_to("chat.update")) == 2
    assert slack_emu.message(CHANNEL, ts)["text"] == "after"


async def test_503_past_retries_is_a_transient_chat_error(slack_chat, slack_emu):
    slack_emu.fail("chat.update", status=503, times=10)
    ts = await slack_chat.post(CHANNEL, "before", BLOCKS)

    with pytest.raises(ChatError) as caught:
        await slack_chat.update(CHANNEL, ts, "down", BLOCKS)

    assert not caught.value.permanent
    assert caught.value.retry_after is None
    assert len(slack_emu.calls_to("chat.update")) == 3  # first try + max_retries (2)
    assert slack_emu.message(CHANNEL, ts)["text"] == "before"


async def test_a_post_is_not_resent_after_a_503_since_slack_may_have_posted_it(slack_chat, slack_emu):
    slack_emu.lose_answers("chat.postMessage")

    with pytest.raises(ChatError) as caught:
        await slack_chat.post(CHANNEL, "maybe posted", BLOCKS)

    assert not caught.value.permanent, "the outbox retries it, after looking for it by metadata"
    assert len(slack_emu.calls_to("chat.postMessage")) == 1
    assert len(slack_emu.messages(CHANNEL)) == 1


async def test_invalid_token_is_permanent_and_never_echoed(slack_emu):
    secret = "xoxb-1234-wrong-secret-token"
    chat = SlackChat(secret, slack_emu.api_url)

    with pytest.raises(ChatError) as caught:
        await chat.post(CHANNEL, "hello", BLOCKS)
    await chat.close()

    assert caught.value.permanent
    assert "invalid_auth" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(chat)


@pytest.mark.parametrize(
    ("method", "error"),
    [("chat.postMessage", "channel_not_found"), ("chat.postMessage", "not_in_channel"), ("chat.update", "internal_error")],
)
async def test_slack_errors_are_classified(slack_chat, slack_emu, method, error):
    slack_emu.fail(method, status=200, times=None, error=error)

    with pytest.raises(ChatError) as caught:
        if method == "chat.update":
            await slack_chat.update(CHANNEL, "1.2", "x", BLOCKS)
        else:
            await slack_chat.post(CHANNEL, "x", BLOCKS)

    assert caught.value.permanent == (error != "internal_error")
    assert error in str(caught.value)


async def test_updating_a_missing_message_is_permanent(slack_chat):
    with pytest.raises(ChatError, match="message_not_found") as caught:
        await slack_chat.update(CHANNEL, "1700000000.999999", "x", BLOCKS)
    assert caught.value.permanent


async def test_oversize_blocks_are_rejected_with_slacks_reason(slack_chat):
    too_many = BLOCKS * 51

    with pytest.raises(ChatError, match="invalid_blocks") as caught:
        await slack_chat.post(CHANNEL, "x", too_many)
    assert caught.value.permanent
    assert "50 items" in str(caught.value)


async def test_timeout_is_a_transient_chat_error(slack_emu):
    slack_emu.delay("chat.postMessage", 0.3)
    chat = SlackChat(TEST_BOT_TOKEN, slack_emu.api_url, timeout=0.1)

    with pytest.raises(ChatError) as caught:
        await chat.post(CHANNEL, "slow", BLOCKS)
    await chat.close()

    assert not caught.value.permanent


async def test_unreachable_slack_is_a_transient_chat_error():
    chat = SlackChat(TEST_BOT_TOKEN, "http://127.0.0.1:9/api/", retry_backoff=0.01, timeout=2)

    with pytest.raises(ChatError) as caught:
        await chat.post(CHANNEL, "nobody home", BLOCKS)
    await chat.close()

    assert not caught.value.permanent


async def test_response_url_posts_are_recorded_and_replace_the_message(slack_chat, slack_emu):
    ts = await slack_chat.post(CHANNEL, "open", BLOCKS)
    url = slack_emu.new_response_url(channel=CHANNEL, ts=ts)

    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"replace_original": True, "text": "acknowledged"}) as resp:
            assert resp.status == 200

    assert slack_emu.responses(url) == [{"replace_original": True, "text": "acknowledged"}]
    assert slack_emu.message(CHANNEL, ts)["text"] == "acknowledged"


async def test_views_and_directory_methods_through_the_real_client(slack_emu):
    slack_emu.usergroups["S0RESPONDERS"] = ["U1", "U2"]
    client = AsyncWebClient(token=TEST_BOT_TOKEN, base_url=slack_emu.api_url)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Mark benign"},
             "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Scope"}}]}

    opened = await client.views_open(trigger_id=slack_emu.trigger_id(), view=modal)
    updated = await client.views_update(view_id=opened["view"]["id"], view={**modal, "callback_id": "benign"})
    members = await client.usergroups_users_list(usergroup="S0RESPONDERS")
    user = await client.users_info(user="U1")
    auth = await client.auth_test()

    assert updated["view"]["callback_id"] == "benign"
    assert members["users"] == ["U1", "U2"]
    assert user["user"]["id"] == "U1"
    assert auth["bot_id"] and auth["user_id"]


async def test_unknown_method_is_reported_as_slack_does(slack_emu):
    client = AsyncWebClient(token=TEST_BOT_TOKEN, base_url=slack_emu.api_url)

    with pytest.raises(SlackApiError) as caught:
        await client.api_call("no.such.method")

    assert caught.value.response["error"] == "unknown_method"


def test_blocks_to_text_renders_a_finding_message():
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Kernel Module Loaded"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "On <https://x.cloud/cluster/1|etl-cluster>"},
            "fields": [{"type": "mrkdwn", "text": "*Owner*\nalice@example.com"}],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "seen 3x on 2 hosts"}]},
        {"type": "divider"},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}, "action_id": "ack"},
                {"type": "button", "text": {"type": "plain_text", "text": "Terminate"}, "action_id": "kill"},
            ],
        },
        {
            "type": "rich_text",
            "elements": [{"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "insmod evil.ko"}]}],
        },
    ]

    assert blocks_to_text(blocks).splitlines() == [
        "== Kernel Module Loaded ==",
        "On etl-cluster (https://x.cloud/cluster/1)",
        "  *Owner* alice@example.com",
        "seen 3x on 2 hosts",
        "-" * 40,
        "[Acknowledge] [Terminate]",
        "insmod evil.ko",
    ]


async def test_viewer_shows_messages_and_threads(slack_chat, slack_emu):
    ts = await slack_chat.post(CHANNEL, "parent", [{"type": "header", "text": {"type": "plain_text", "text": "Boot <Files>"}}])
    await slack_chat.post(CHANNEL, "a reply", [], thread_ts=ts)

    async with aiohttp.ClientSession() as session:
        async with session.get(slack_emu.base_url + "/ui/state") as resp:
            state = await resp.json()
        async with session.get(slack_emu.base_url + "/") as resp:
            page = await resp.text()
        async with session.get(slack_emu.base_url + "/text") as resp:
            text = await resp.text()

    [channel] = state["channels"]
    [message] = channel["messages"]
    assert channel["id"] == CHANNEL and message["ts"] == ts
    assert message["blocks"][0]["text"]["text"] == "Boot <Files>"  # as sent: the page renders it as text
    assert [r["text"] for r in message["replies"]] == ["a reply"]
    assert "Boot" not in page, "the page holds no message text: its script builds text nodes from the state"
    assert "== Boot <Files> ==" in text and "a reply" in text and f"#{CHANNEL}" in text
