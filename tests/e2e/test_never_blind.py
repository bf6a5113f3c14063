"""Never blind (#11): a row dated in the future cannot push the watermark past the bot's clock,
and a row that lands hours late is found by the late-arrival sweep. The real server, the Slack
and Databricks emulators, an embedded DuckDB audit store."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from tests.e2e.conftest import Bot, capsule8

HOST = "i-0driver000000001"


async def test_a_row_dated_a_month_ahead_neither_blinds_the_bot_nor_goes_unposted(bot: Bot):
    bot.add(capsule8("c8-future", "Kernel Module Loaded", HOST, -30 * 24 * 60))
    await bot.webhook()
    await bot.settle()
    [future] = bot.findings()
    assert "the host's clock is ahead" in bot.text_of(future)
    watermark = await bot.runtime.store.watermark()
    assert watermark is not None and watermark <= datetime.now(timezone.utc)

    bot.add(*(capsule8(f"c8-now-{n}", "Container Escape" if n == 0 else "Kernel Module Loaded", "i-0etl00000000001", 1)
              for n in range(5)))
    await bot.webhook()
    await bot.settle()
    texts = [bot.text_of(m) for m in bot.findings()]
    assert any("Container Escape" in t for t in texts), "the escape after the future row is posted"
    assert await bot.runtime.store.seen([f"c8-now-{n}" for n in range(5)]) == {f"c8-now-{n}" for n in range(5)}


async def test_a_row_that_lands_three_hours_late_is_posted_by_the_next_sweep(tmp_path, slack, dbx):
    bot = await Bot(tmp_path, slack, dbx, ESM_LATE_SWEEP_INTERVAL="0").start()
    try:
        bot.add(capsule8("c8-on-time", "Kernel Module Loaded", HOST, 1))
        await bot.webhook()
        await bot.settle()
        assert len(bot.findings()) == 1

        bot.add(capsule8("c8-late", "Container Escape", "i-0etl00000000001", 180))  # behind watermark − overlap
        await bot.webhook()
        await bot.settle()
        late = [m for m in bot.findings() if "Container Escape" in bot.text_of(m)]
        assert len(late) == 1, "the late row is found and posted once"
        assert "landed 3 h after it happened" in bot.text_of(late[0])
        sweep = bot.runtime.pipeline.last_sweep
        assert sweep is not None and sweep.late_rows == 1 and sweep.ids_read >= 1

        await bot.webhook()  # the next sweep sees it stored: nothing posted twice
        await bot.settle()
        assert len([m for m in bot.findings() if "Container Escape" in bot.text_of(m)]) == 1
    finally:
        await bot.stop()


async def test_a_running_hosts_silent_sensor_is_a_finding_and_a_terminated_ones_is_not(bot: Bot):
    bot.add(
        capsule8("hb-1", "Heartbeat", HOST, 60), capsule8("hb-2", "Heartbeat", HOST, 45),  # then nothing
        capsule8("hb-3", "Heartbeat", "i-0gone0000000001", 50),  # no live cluster has it: terminated
        capsule8("hb-4", "Heartbeat", "i-0etl00000000001", 50),  # its heartbeats stopped, but
        capsule8("c8-etl", "Kernel Module Loaded", "i-0etl00000000001", 2),  # its sensor still reports
    )
    await bot.webhook()
    await bot.settle()
    [silent] = [m for m in bot.findings() if "ESM sensor silent" in bot.text_of(m)]
    text = bot.text_of(silent)
    assert "ESM sensor silent" in text and HOST in text and "data-science-shared" in text
    await bot.webhook()  # the same silence is one finding, however many syncs see it
    await bot.settle()
    assert len([m for m in bot.findings() if "ESM sensor silent" in bot.text_of(m)]) == 1


async def test_a_locked_state_store_is_loud_and_never_stalls_the_server(tmp_path, slack, dbx):
    import sqlite3
    import time

    import aiohttp

    from tests.e2e.conftest import CHANNEL

    bot = await Bot(tmp_path, slack, dbx, ESM_DEGRADED_AFTER="0").start()
    try:
        bot.add(capsule8("c8-1", "Kernel Module Loaded", HOST, 5))
        await bot.webhook()
        await bot.settle()
        [finding] = bot.findings()

        locker = sqlite3.connect(str(tmp_path / "state.sqlite3"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            bot.add(capsule8("c8-2", "Container Escape", "i-0etl00000000001", 1))
            await bot.webhook()
            async with aiohttp.ClientSession() as session:
                started = time.monotonic()
                async with session.get(bot.url + "/healthz") as response:
                    assert response.status == 200
                assert time.monotonic() - started < 0.5, "the event loop never waits on the database"

            started = time.monotonic()
            status, _ = await bot.click(finding, "esm.acknowledge")
            [answer] = await bot.answers(bot.last_response_url, timeout=5)
            assert status == 200 and time.monotonic() - started < 3.0
            assert "could not record this" in answer["text"] and "nothing was done" in answer["text"]

            deadline = time.monotonic() + 20
            said = []
            while time.monotonic() < deadline and not said:
                said = [m for m in slack.messages(CHANNEL) if "esm-bot is degraded: state store" in m.get("text", "")]
                await asyncio.sleep(0.1)
            assert len(said) == 1, "the channel is told once"
            async with aiohttp.ClientSession() as session:
                async with session.get(bot.url + "/readyz") as response:
                    body = await response.json()
            assert response.status == 503 and body["checks"]["degraded"]["parts"] == ["state store"]
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        await bot.webhook()  # the next sync works again: the escape is posted, and recovery said
        await bot.settle()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("esm-bot recovered: state store" in m.get("text", "")
                                                      for m in slack.messages(CHANNEL)):
            await asyncio.sleep(0.1)
        texts = [m.get("text", "") for m in slack.messages(CHANNEL)]
        assert any("esm-bot recovered: state store" in t for t in texts)
        assert any("Container Escape" in bot.text_of(m) for m in bot.findings())
    finally:
        await bot.stop()
