"""The daily digest end to end against the Slack stand-in: posted once a day across restarts and
replicas (the claim in the state store), validated against Slack's limits by the stand-in, and
`/esm digest` typed on the demo page answers the caller privately."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp

from bot.cli.demo import CHANNEL, RESPONDER, demo_stack
from bot.core.digest import DailyAt
from bot.services.digest import DigestService
from emulators.block_kit import message_problems
from emulators.slack import blocks_to_text
from tests.e2e.test_home import until


async def test_the_digest_is_posted_once_a_day_across_restarts_and_replicas(tmp_path):
    async with demo_stack(tmp_path / "demo") as demo:
        assert await demo.send_alert() == 202
        await demo.delivered()
        runtime, slack = demo.runtime, demo.slack
        # the demo's events lie within the last hour: read the day in a zone where it is now about
        # noon, so they all fall on one local day whatever the hour of the run
        utc_now = datetime.now(timezone.utc)
        shift = 12 - utc_now.hour  # hours east of UTC; Etc/GMT-N is N hours east
        zone = "UTC" if shift == 0 else f"Etc/GMT{'-' if shift > 0 else '+'}{abs(shift)}"
        at = DailyAt(0, 0, zone)
        events_day = utc_now.astimezone(at.tz())
        next_day = (events_day + timedelta(days=1)).replace(hour=9, minute=0)
        posted_before = len(slack.messages(CHANNEL))

        def replica() -> DigestService:  # a process of its own: nothing shared but the state store
            return DigestService(runtime.store, runtime.chat, CHANNEL, at, home=runtime.home, now=lambda: next_day)

        first, second = replica(), replica()
        ts = await first.tick()
        assert ts is not None
        assert await second.tick() is None, "another replica (or a restart) does not post it again"
        assert await first.tick() is None
        messages = slack.messages(CHANNEL)
        assert len(messages) == posted_before + 1
        digest = slack.message(CHANNEL, ts)
        assert message_problems(digest["blocks"]) == []
        text = blocks_to_text(digest["blocks"])
        assert f"ESM daily digest for {events_day.date().isoformat()} ({zone})" in text
        assert "Kernel Module Loaded" in text and "0101-090000-ds0002" in text  # by detection and by cluster
        assert "Findings still open* (5)" in text
        [chart] = [b for b in digest["blocks"] if b["type"] == "image"]
        assert chart["slack_file"]["id"] in {f["id"] for f in slack.files()}
        assert await runtime.store.digest_of(next_day.date().isoformat()) == (runtime.store.replica, ts)


async def test_a_claim_whose_replica_died_before_posting_is_taken_over(tmp_path):
    async with demo_stack(tmp_path / "demo") as demo:
        store = demo.runtime.store
        now = datetime(2026, 12, 5, 9, tzinfo=timezone.utc)
        assert await store.claim_digest("2026-12-05", now)
        assert not await store.claim_digest("2026-12-05", now + timedelta(minutes=5))  # still its claim
        assert await store.claim_digest("2026-12-05", now + timedelta(minutes=11))  # stale: taken over
        await store.digest_posted("2026-12-05", "1.2")
        assert not await store.claim_digest("2026-12-05", now + timedelta(hours=2)), "posted: never again"


async def test_esm_digest_answers_the_caller_privately(tmp_path):
    async with demo_stack(tmp_path / "demo") as demo:
        assert await demo.send_alert() == 202
        await demo.delivered()
        async with aiohttp.ClientSession() as session:
            async with session.post(demo.slack.base_url + "/ui/command",
                                    json={"user": RESPONDER, "channel": CHANNEL, "text": "/esm digest"}) as response:
                assert (await response.json()) == {"ok": True}
        [answer] = await until(lambda: demo.slack.ephemerals(CHANNEL))
        assert answer["user"] == RESPONDER
        assert message_problems(answer["blocks"]) == []
        assert "ESM daily digest for" in blocks_to_text(answer["blocks"])
