"""The bot process runs with known secret values at DEBUG level through failures that tend to
print credentials (wrong webhook password, a bad Slack signature, Slack refusing the token,
Databricks refusing and failing): none of the values appears anywhere in its output. Every other
bot process of the suite has its log searched the same way when it stops (harness.BotProcess)."""
from __future__ import annotations

import time

from emulators.slack_signing import slash_command_body
from tests.reliability.harness import (
    LOG_SCAN,
    SECRETS,
    WEBHOOK_PASSWORD,
    add_clusters,
    capsule8,
    minutes_ago,
    record,
)


def test_no_known_secret_in_any_log_line(host, make_bot):
    clusters = add_clusters(host, 2)
    instance = next(iter(clusters.values()))[0]
    bot = make_bot(ESM_LOG_LEVEL="DEBUG")
    bot.seed([capsule8(f"sec-{n}", "Kernel Module Loaded", instance, minutes_ago(5 + n)) for n in range(3)]
             + [capsule8("sec-x", "Boot Files Modified", instance, minutes_ago(4))])
    host.call(host.dbx.fail, "/api/2.1/clusters", status=401, times=3)
    host.call(host.dbx.fail, "/api/2.1/clusters", status=500, times=None)
    host.call(host.slack.fail, "chat.postMessage", status=200, error="invalid_auth", times=1)
    host.call(host.slack.fail, "chat.postMessage", status=503, times=2)
    bot.start()
    assert bot.webhook(password=WEBHOOK_PASSWORD + "x") == 401
    assert bot.webhook(password=WEBHOOK_PASSWORD[:-1]) == 401
    assert bot.slack_request(slash_command_body(text="status"), secret="wrong-" + SECRETS[1]).status_code == 401
    assert bot.webhook() == 202
    bot.wait_drained(4, timeout=60)
    assert bot.slack_request(slash_command_body(text="status")).status_code == 200
    time.sleep(0.5)
    log = bot.log_text()
    assert "DEBUG" in log and "refused by Slack" in log, "the failures really were logged, at DEBUG"
    bot.stop()  # searches every log of this bot for the secrets
    record(
        "log_secrets",
        f"secrets: {len(SECRETS)} known secret values searched in {LOG_SCAN.files} bot logs "
        f"({LOG_SCAN.bytes / 1e6:.1f} MB, DEBUG level included) of this session: {LOG_SCAN.found} found",
        secrets=len(SECRETS), log_files=LOG_SCAN.files, log_bytes=LOG_SCAN.bytes, found=LOG_SCAN.found,
    )
    assert LOG_SCAN.found == 0
