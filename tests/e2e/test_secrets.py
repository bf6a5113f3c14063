"""Secrets never reach logs, errors or Slack, even when everything around them fails."""
from __future__ import annotations

import logging

from bot.observability import logs
from tests.e2e.conftest import (
    DBX_TOKEN,
    SIGNING_SECRET,
    SLACK_TOKEN,
    WEBHOOK_PASSWORD,
    Bot,
    capsule8,
)

SECRETS = (SLACK_TOKEN, SIGNING_SECRET, WEBHOOK_PASSWORD, DBX_TOKEN)


async def exercise_failures(bot: Bot) -> None:
    """Wrong credentials, a Databricks outage, Slack refusing then failing, a sync, a click."""
    await bot.webhook(password=WEBHOOK_PASSWORD + "x")
    bot.dbx.fail("/api/2.1/clusters", status=500, times=None)
    bot.slack.fail("chat.postMessage", status=503, times=2)
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 3))
    await bot.webhook()
    await bot.settle(timeout=30)
    [finding] = bot.findings()
    bot.slack.fail("chat.update", status=200, error="invalid_auth", times=None)
    await bot.click(finding, "esm.acknowledge")
    await bot.answers(bot.last_response_url)
    await bot.settle(timeout=30)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


async def test_no_secret_in_any_log_record_or_slack_message(bot: Bot, caplog):
    caplog.set_level(logging.INFO)
    await exercise_failures(bot)
    assert "refused by Slack" in caplog.text, "the failures really were logged"
    assert_no_secret(caplog.text)
    assert_no_secret(repr(bot.slack.calls))
    assert_no_secret(repr(bot.runtime.settings))


async def test_debug_logging_through_the_product_handler_masks_secrets(bot: Bot, capsys):
    logs.configure("DEBUG", SECRETS)
    try:
        await exercise_failures(bot)
    finally:
        logs.configure("WARNING")
    err = capsys.readouterr().err
    assert "DEBUG" in err or "INFO" in err
    assert_no_secret(err)
