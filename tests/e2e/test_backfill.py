"""`esm-bot backfill`: past events from the embedded audit store, through the real pipeline, to the
Slack emulator. The CLI runs in a worker thread (its own event loop); the emulators answer here."""
from __future__ import annotations

import asyncio
import json

from bot.cli.main import main
from emulators.slack import blocks_to_text
from tests.e2e.conftest import CHANNEL, Bot, capsule8

DAY = 24 * 60


def old_events() -> list[dict]:
    return [
        capsule8("bf-1", "Kernel Module Loaded", "i-0driver000000001", 3 * DAY),
        capsule8("bf-2", "Kernel Module Loaded", "i-0exec0000000001", 3 * DAY - 5),  # same cluster: a repeat
        capsule8("bf-3", "Userland Container Escape", "i-0etl00000000001", 5 * DAY),
        capsule8("bf-4", "Heartbeat", "i-0driver000000001", 2 * DAY),
        capsule8("bf-5", "Boot Files Modified", "i-0driver000000001", 8 * DAY),  # before --since 7d
    ]


async def cli(capsys, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args), env)
    out, err = capsys.readouterr()
    return code, out, err


def texts(bot: Bot) -> list[str]:
    return [blocks_to_text(m.get("blocks") or []) for m in bot.findings()]


async def test_backfill_posts_findings_older_than_the_initial_lookback_once(capsys, tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx)
    bot.add(*old_events())

    code, _, err = await cli(capsys, bot.env, "sync")  # a live sync only looks back 24 h
    assert code == 0, err
    assert bot.findings() == []

    code, out, err = await cli(capsys, bot.env, "backfill", "--since", "7d")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["fetched"] == 4 and report["new_findings"] == 2 and report["repeats"] == 1
    assert report["outbox_pending"] == 0
    assert "backfill [" in err and "4/4 events" in err  # the progress bar
    posted = texts(bot)
    assert len(posted) == 2
    assert any("Kernel Module Loaded" in t for t in posted) and any("Userland Container Escape" in t for t in posted)
    assert not any("Boot Files Modified" in t or "Heartbeat" in t for t in posted)

    code, out, _ = await cli(capsys, bot.env, "backfill", "--since", "7d")  # seen events are skipped
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["new_events"] == 0
    assert len(bot.findings()) == 2


async def test_backfill_summary_posts_exactly_one_digest(capsys, tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx)
    bot.add(*old_events())

    code, out, err = await cli(capsys, bot.env, "backfill", "--since", "7d", "--summary")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["new_findings"] == 2 and report["outbox_pending"] == 0 and report["digest_ts"]
    (message,) = slack.messages(CHANNEL)
    text = blocks_to_text(message["blocks"])
    assert "ESM backfill since" in text and "3 events, 2 findings" in text
    assert "Kernel Module Loaded" in text and "Userland Container Escape" in text
    assert "0101-000000-ds0001" in text and "0101-000000-etl002" in text
    assert "Boot Files Modified" not in text and "1 heartbeats" in text
    assert len(message["blocks"]) <= 50

    code, _, err = await cli(capsys, bot.env, "sync")  # nothing was left queued for Slack
    assert code == 0, err
    assert len(slack.messages(CHANNEL)) == 1


async def test_backfill_with_a_bad_duration_names_the_option(capsys, tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx)
    code, _, err = await cli(capsys, bot.env, "backfill", "--since", "a week")
    assert code == 2 and "--since" in err
