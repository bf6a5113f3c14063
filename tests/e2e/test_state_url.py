"""ESM_STATE_URL: the real bot on PostgreSQL state, chosen over ESM_STATE_PATH, its password never shown."""
from __future__ import annotations

from bot.adapters.state import StateStore
from bot.config import load_settings
from tests.e2e.conftest import Bot, capsule8
from tests.e2e.test_cli import esm_bot


async def test_the_bot_posts_findings_with_postgresql_state_and_state_url_wins_over_state_path(
    tmp_path, slack, dbx, pg_url
):
    bot = Bot(tmp_path, slack, dbx, ESM_STATE_URL=pg_url)
    await bot.start()
    try:
        assert isinstance(bot.runtime.store, StateStore) and bot.runtime.store.dialect == "postgresql"
        bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5),
                capsule8("c8-2", "Kernel Module Loaded", "i-0driver000000001", 4))
        status, _ = await bot.webhook()
        assert status == 202
        await bot.settle()
        [finding] = bot.findings()
        assert len(bot.repeats(finding)) == 1
        assert (await bot.runtime.store.counts())["posted"] == 1
        await bot.restart()  # a restart on the same database posts nothing again
        await bot.webhook()
        await bot.settle()
        assert len(bot.findings()) == 1
    finally:
        await bot.stop()
    assert not (tmp_path / "state.sqlite3").exists()


def test_the_state_url_is_a_secret_in_settings():
    settings = load_settings({"ESM_STATE_URL": "postgresql://esm:pw-77aa@db.example/esm"})
    assert "pw-77aa" not in repr(settings)


def test_a_malformed_state_url_is_one_line_without_its_value(tmp_path):
    result = esm_bot("sync", env={"ESM_STATE_URL": "mysql://esm:pw-1b2c@db/esm"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "esm-bot: configuration error: ESM_STATE_URL: must be a postgresql://user:password@host:port/database URL"
    ]


def test_an_unreachable_state_database_is_one_line_with_the_password_masked(tmp_path):
    env = {
        "SLACK_BOT_TOKEN": "xoxb-x", "ESM_SLACK_CHANNEL": "C0FINDINGS",
        "ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}",
        "ESM_STATE_URL": "postgresql://esm:pw-9d8e@127.0.0.1:1/esm?connect_timeout=2",
    }
    result = esm_bot("sync", env=env, timeout=90)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esm-bot: configuration error: ESM_STATE_URL: cannot connect")
    assert "pw-9d8e" not in result.stderr and "esm:****@127.0.0.1:1" in result.stderr
