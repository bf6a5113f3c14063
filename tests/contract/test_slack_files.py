"""File uploads (files_upload_v2) from SlackChat to the strict Slack emulator over real HTTP: the
three steps as Slack runs them, and what Slack refuses."""
from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.ports import ChatError
from emulators.slack import TEST_BOT_TOKEN

CHANNEL = "C0SECURITY"
CSV = b"time,source,what\n2026-01-01T00:00:00Z,capsule8,Kernel Module Loaded\n"


async def test_a_file_is_shared_in_the_thread_with_its_exact_bytes(slack_chat, slack_emu):
    ts = await slack_chat.post(CHANNEL, "finding", [])

    file_id = await slack_chat.upload_file(CHANNEL, "timeline.csv", CSV, title="Timeline", thread_ts=ts,
                                           initial_comment="The timeline as CSV")

    (shared,) = slack_emu.files(CHANNEL)
    assert shared["id"] == file_id and shared["content"] == CSV
    assert (shared["name"], shared["title"], shared["thread_ts"]) == ("timeline.csv", "Timeline", ts)
    assert [m["text"] for m in slack_emu.thread(CHANNEL, ts)] == ["The timeline as CSV"]
    assert [c.method for c in slack_emu.calls if c.method.startswith(("files.", "upload"))] == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


async def test_without_files_write_the_upload_is_refused_as_missing_scope(slack_chat, slack_emu):
    slack_emu.scopes.remove("files:write")

    with pytest.raises(ChatError) as caught:
        await slack_chat.upload_file(CHANNEL, "timeline.csv", CSV)

    assert "missing_scope" in str(caught.value) and caught.value.permanent
    assert slack_emu.files() == []


async def test_an_empty_file_is_refused_before_slack(slack_chat, slack_emu):
    with pytest.raises(ChatError, match="empty"):
        await slack_chat.upload_file(CHANNEL, "timeline.csv", b"")
    assert slack_emu.calls_to("files.getUploadURLExternal") == []


async def test_an_unknown_thread_or_channel_is_refused(slack_emu, slack_chat):
    slack_emu.channels = {CHANNEL}
    with pytest.raises(ChatError, match="thread_not_found"):
        await slack_chat.upload_file(CHANNEL, "t.csv", CSV, thread_ts="1.000001")
    with pytest.raises(ChatError, match="channel_not_found"):
        await slack_chat.upload_file("C0ELSEWHERE", "t.csv", CSV)
    assert slack_emu.files() == []


async def test_the_emulator_holds_slack_to_its_documented_arguments(slack_emu):
    client = AsyncWebClient(base_url=slack_emu.api_url, token=TEST_BOT_TOKEN)
    for args, error in (({"filename": "a.csv", "length": 0}, "missing_argument"),
                        ({"filename": "a.csv", "length": 3, "alt_txt": "x" * 1001}, "alt_txt_too_large")):
        with pytest.raises(SlackApiError) as caught:
            await client.files_getUploadURLExternal(**args)
        assert caught.value.response["error"] == error

    step1 = await client.files_getUploadURLExternal(filename="a.csv", length=3)
    with pytest.raises(SlackApiError) as caught:  # completed before any bytes arrived
        await client.files_completeUploadExternal(files=[{"id": step1["file_id"], "title": "a"}])
    assert caught.value.response["error"] == "file_not_found"

    async with aiohttp.ClientSession() as session:
        async with session.post(step1["upload_url"], data=b"four") as wrong_size:
            assert wrong_size.status == 400
        async with session.post(step1["upload_url"], data=b"abc") as right:
            assert right.status == 200
    done = await client.files_completeUploadExternal(files=[{"id": step1["file_id"], "title": "a"}])
    assert done["files"][0]["id"] == step1["file_id"]
    with pytest.raises(SlackApiError) as caught:  # a file is shared once
        await client.files_completeUploadExternal(files=[{"id": step1["file_id"], "title": "a"}])
    assert caught.value.response["error"] == "file_not_found"
