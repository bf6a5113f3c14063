"""Fixtures of the reliability suite: emulators on a background loop, the bot as a process."""
from __future__ import annotations

import pytest

from tests.reliability.harness import BotProcess, EmulatorHost


@pytest.fixture
def host():
    emulators = EmulatorHost()
    yield emulators
    emulators.close()


@pytest.fixture
def make_bot(tmp_path, host):
    """make_bot(**env) -> a BotProcess (not started); every one is stopped and its logs searched
    for the known secrets at the end of the test."""
    bots: list[BotProcess] = []

    def make(**env: str) -> BotProcess:
        bot = BotProcess(tmp_path, host, **env)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.stop()


def pytest_sessionfinish(session, exitstatus):
    """One figure for the whole session: every bot log searched for the known secrets."""
    from tests.reliability.harness import LOG_SCAN, SECRETS, record

    if LOG_SCAN.files:
        record("log_scan", f"logs: {LOG_SCAN.files} bot process logs ({LOG_SCAN.bytes / 1e6:.1f} MB) of the whole run "
                           f"searched for {len(SECRETS)} known secret values: {LOG_SCAN.found} found",
               log_files=LOG_SCAN.files, log_bytes=LOG_SCAN.bytes, found=LOG_SCAN.found)
