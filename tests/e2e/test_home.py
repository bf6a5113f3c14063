"""The App Home end to end: the Slack stand-in sends app_home_opened signed as Slack does, the bot
renders the Home, renders and uploads the chart (files_upload_v2's external upload calls) and
publishes it with views.publish; the stand-in checks both against Slack's limits."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.cli.demo import CHANNEL, OUTSIDER, RESPONDER, demo_stack
from emulators.block_kit import view_problems
from emulators.slack import blocks_to_text


async def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def open_home(base_url: str, user: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + "/ui/home_opened", json={"user": user}) as response:
            assert (await response.json()) == {"ok": True}


async def test_the_home_shows_open_findings_suppressions_last_sync_and_the_chart(tmp_path):
    async with demo_stack(tmp_path / "demo") as demo:
        slack = demo.slack
        assert await demo.send_alert() == 202
        await demo.delivered()
        await open_home(slack.base_url, RESPONDER)
        home = await until(lambda: slack.home(RESPONDER))
        assert view_problems(home) == [] and home["type"] == "home"
        text = blocks_to_text(home["blocks"])
        posted = slack.messages(CHANNEL)
        assert f"Open findings* ({len(posted)})" in text
        assert "Kernel Module Loaded" in text and "*high*" in text
        assert "Last sync:* 20" in text and "every part works" in text
        # each finding links to its message: the permalinks Slack gave for the posted ts
        links = [call for call in slack.calls_to("chat.getPermalink")]
        assert {c["message_ts"] for c in links} == {m["ts"] for m in posted}
        # the chart: a PNG uploaded through the external upload flow, shown by its file id
        [image] = [b for b in home["blocks"] if b["type"] == "image"]
        [chart] = slack.files()
        assert image["slack_file"] == {"id": chart["id"]}
        assert chart["content"].startswith(b"\x89PNG") and chart["channel"] is None
        assert slack.calls_to("files.getUploadURLExternal") and slack.calls_to("files.completeUploadExternal")
        assert len(slack.calls_to("views.publish")) == 1


async def test_the_home_is_refreshed_after_a_sync_and_publishes_stay_within_the_rate_limit(tmp_path):
    async with demo_stack(tmp_path / "demo") as demo:
        slack, home = demo.slack, demo.runtime.home
        assert home is not None
        await open_home(slack.base_url, RESPONDER)
        await until(lambda: slack.home(RESPONDER))
        assert "Open findings* (0)" in blocks_to_text(slack.home(RESPONDER)["blocks"])
        for _ in range(5):  # a user opening the tab again and again: coalesced, not five publishes
            await open_home(slack.base_url, RESPONDER)
        await open_home(slack.base_url, OUTSIDER)
        assert await demo.send_alert() == 202
        await demo.delivered()
        # after the sync the Home of both users shows the findings, without being opened again
        for user in (RESPONDER, OUTSIDER):
            await until(lambda: "Open findings* (0)" not in blocks_to_text((slack.home(user) or {}).get("blocks")), 40)
        publishes = slack.calls_to("views.publish")
        assert len([p for p in publishes if p["user_id"] == RESPONDER]) <= 3
        # the chart is uploaded again only when its counts changed: one before the sync, one after
        assert len(slack.files()) == 2
