"""Shared fixtures for contract tests (real clients against local emulators)."""
from __future__ import annotations

import pytest


# ---------------------------------------------------------------- Slack (emulators/slack.py)

from emulators.slack import TEST_BOT_TOKEN, SlackEmulator  # noqa: E402


@pytest.fixture
async def slack_emu():
    """A started Slack Web API emulator that requires TEST_BOT_TOKEN."""
    async with SlackEmulator(token=TEST_BOT_TOKEN) as emu:
        yield emu


@pytest.fixture
async def slack_chat(slack_emu):
    """The real SlackChat adapter against `slack_emu`, with test-speed retry backoff."""
    from bot.adapters.slack import SlackChat

    chat = SlackChat(TEST_BOT_TOKEN, slack_emu.api_url, retry_backoff=0.01, timeout=5)
    yield chat
    await chat.close()
