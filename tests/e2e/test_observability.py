"""/metrics, /healthz, /readyz and JSON logs with a correlation id, on the real server against
the emulators."""
from __future__ import annotations

import asyncio
import io
import json
import time
import logging
import re

import aiohttp
import pytest

from bot.observability import logs, metrics
from tests.e2e.conftest import ADMIN_TOKEN, DBX_TOKEN, SLACK_TOKEN, WEBHOOK_PASSWORD, Bot, capsule8

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def get(bot: Bot, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(bot.url + path, headers=headers or {}) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name + ("{" + label_text + "}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_metrics_count_a_webhook_through_to_the_slack_posts(bot: Bot):
    _, _, before = await get(bot, "/metrics")
    bot.add(
        capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10),
        capsule8("c8-2", "Kernel Module Loaded", "i-0driver000000001", 9),
        capsule8("c8-3", "Heartbeat", "i-0driver000000001", 8),
    )
    await bot.webhook()
    await bot.settle()
    status, content_type, after = await get(bot, "/metrics")
    assert status == 200 and content_type.startswith("text/plain") and "version=0.0.4" in content_type

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("esm_events_total", disposition="new_finding") == 1
    assert delta("esm_events_total", disposition="repeat") == 1
    assert delta("esm_events_total", disposition="ignored") == 1
    assert delta("esm_findings_posted_total") == 1
    assert delta("esm_slack_messages_total", kind="reply") == 1
    assert delta("esm_syncs_total", result="ok") >= 1
    assert delta("esm_sync_duration_seconds_count") >= 1
    assert delta("esm_webhooks_total") == 1
    assert sample(after, "esm_outbox_depth") == 0
    for family in ("esm_events_total", "esm_sync_duration_seconds", "esm_outbox_depth", "esm_slack_errors_total",
                   "esm_slack_retries_total", "esm_databricks_errors_total", "esm_actions_total"):
        assert f"# TYPE {family} " in after, family
    assert 'esm_sync_duration_seconds_bucket{le="+Inf"}' in after


async def test_slack_and_databricks_failures_are_counted(bot: Bot):
    before = metrics.render()
    bot.slack.fail("chat.postMessage", status=200, error="channel_not_found")
    bot.dbx.fail("clusters/list", status=500, times=None)
    bot.add(capsule8("c8-1", "Boot Files Modified", "i-0nowhere0000001", 10))
    await bot.webhook()
    await bot.settle()
    after = metrics.render()
    assert sample(after, "esm_slack_errors_total", method="chat.postMessage", error="channel_not_found") - \
        sample(before, "esm_slack_errors_total", method="chat.postMessage", error="channel_not_found") == 1
    assert sample(after, "esm_databricks_errors_total", lookup="cluster list") > \
        sample(before, "esm_databricks_errors_total", lookup="cluster list")


async def test_a_rate_limited_post_counts_a_retry(bot: Bot):
    before = metrics.SLACK_RETRIES.value()
    bot.slack.fail("chat.postMessage", status=429, retry_after=0, times=1)
    bot.slack.fail("chat.postMessage", status=503, times=1)
    bot.add(capsule8("c8-1", "Boot Files Modified", "i-0etl00000000001", 10))
    await bot.webhook()
    await bot.settle(timeout=20)
    assert len(bot.findings()) == 1
    assert metrics.SLACK_RETRIES.value() > before


async def test_healthz_is_alive_without_dependencies(bot: Bot):
    bot.slack.fail("auth.test", status=503, times=None)
    status, _, body = await get(bot, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}


async def test_readyz_checks_state_slack_and_databricks(bot: Bot):
    status, _, body = await get(bot, "/readyz", ADMIN)
    report = json.loads(body)
    assert status == 200, report
    assert report["status"] == "ready"
    assert set(report["checks"]) == {"state", "slack", "databricks", "degraded"}
    assert all(check["ok"] for check in report["checks"].values())
    assert bot.slack.calls_to("auth.test")
    assert bot.dbx.calls_to("/scim/v2/Me")


async def test_readyz_is_503_with_the_failing_check_and_no_secret(bot: Bot):
    bot.slack.fail("auth.test", status=200, error="invalid_auth", times=None)
    bot.dbx.fail("/scim/v2/Me", status=401, times=None)
    status, _, body = await get(bot, "/readyz", ADMIN)
    report = json.loads(body)
    assert status == 503
    assert report["checks"]["state"]["ok"] is True
    assert report["checks"]["slack"] == {"ok": False, "detail": "auth.test: invalid_auth"}
    assert report["checks"]["databricks"]["ok"] is False
    for secret in (SLACK_TOKEN, DBX_TOKEN, WEBHOOK_PASSWORD):
        assert secret not in body


async def test_readyz_times_out_a_slow_dependency(bot: Bot):
    bot.slack.delay("auth.test", 5.0)
    status, _, body = await get(bot, "/readyz", ADMIN)
    assert status == 503
    assert "within" in json.loads(body)["checks"]["slack"]["detail"]


async def test_readyz_shows_details_only_to_the_admin_token(bot: Bot):
    """Without `Authorization: Bearer <ESM_ADMIN_TOKEN>` (or with a wrong one): ok / not ok per
    check and the failing checks' names, no host, principal, team or SDK detail."""
    _, _, admin_body = await get(bot, "/readyz", ADMIN)
    assert "esm-bot@example.com" in admin_body and bot.dbx.host in admin_body  # the admin sees who and where
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}, {"Authorization": ADMIN_TOKEN},
                    {"Authorization": "Bearer "}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        status, _, body = await get(bot, "/readyz", headers)
        report = json.loads(body)
        assert status == 200 and report["checks"] == {
            "state": {"ok": True}, "slack": {"ok": True}, "databricks": {"ok": True},
            "degraded": {"ok": True, "parts": []}}, body
        for hidden in ("esm-bot@example.com", "127.0.0.1", bot.dbx.host, "auth.test", "detail"):
            assert hidden not in body


async def test_readyz_without_the_token_names_the_failing_check_only(tmp_path, slack, dbx):
    bot = Bot(tmp_path, slack, dbx)
    await bot.start()
    try:
        slack.fail("auth.test", status=200, error="invalid_auth", times=None)
        status, _, body = await get(bot, "/readyz")
        report = json.loads(body)
        assert status == 503 and report["failing"] == ["slack"]
        assert report["checks"]["slack"] == {"ok": False} and "invalid_auth" not in body
    finally:
        await bot.stop()


async def test_readyz_probes_slack_and_databricks_at_most_once_per_period(bot: Bot):
    """500 requests, 50 at a time, within the 10 s period: one auth.test and one SCIM Me call."""
    before_slack, before_dbx = len(bot.slack.calls_to("auth.test")), len(bot.dbx.calls_to("/scim/v2/Me"))
    semaphore = asyncio.Semaphore(50)
    async with aiohttp.ClientSession() as session:
        async def one(n: int) -> int:
            async with semaphore:
                headers = ADMIN if n % 2 else {}
                async with session.get(bot.url + "/readyz", headers=headers) as response:
                    await response.read()
                    return response.status

        started = time.monotonic()
        statuses = await asyncio.gather(*(one(n) for n in range(500)))
        elapsed = time.monotonic() - started
    assert statuses == [200] * 500
    assert elapsed < 10, "all within one period"
    slack_calls = len(bot.slack.calls_to("auth.test")) - before_slack
    dbx_calls = len(bot.dbx.calls_to("/scim/v2/Me")) - before_dbx
    print(f"\n[readyz] 500 requests (50 at a time, half with the admin token) in {elapsed:.2f}s: "
          f"{slack_calls} auth.test and {dbx_calls} SCIM Me calls")
    assert slack_calls == 1 and dbx_calls == 1


def configure_into(stream: io.StringIO, fmt: str, secrets: list[str]) -> None:
    """bot.observability.logs.configure as the CLI calls it, with its handler writing into `stream`."""
    logs.configure("INFO", secrets, fmt)
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]


@pytest.fixture
def captured_logs():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.fixture
def json_logs(captured_logs):
    configure_into(captured_logs, "json", [SLACK_TOKEN, DBX_TOKEN, WEBHOOK_PASSWORD])
    return lambda: [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.startswith("{")]


async def test_json_logs_carry_one_correlation_id_from_webhook_to_slack_post(bot: Bot, json_logs):
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10),
            capsule8("c8-2", "Kernel Module Loaded", "i-0driver000000001", 9))
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": aiohttp.encode_basic_auth("databricks", WEBHOOK_PASSWORD),
                   "X-Request-Id": "req-e2e-42"}
        async with session.post(bot.url + "/webhooks/dbsql", json={"event": "TRIGGERED", "alert": {"id": "a1"}},
                                headers=headers) as response:
            assert response.status == 202
            assert (await response.json())["correlation_id"] == "req-e2e-42"
            assert response.headers["X-Request-Id"] == "req-e2e-42"
    await bot.settle()
    records = json_logs()
    assert records, "JSON log lines were written"
    for record in records:
        assert {"ts", "level", "logger", "message", "correlation_id"} <= set(record)
    mine = [r for r in records if r["correlation_id"] == "req-e2e-42"]
    messages = " | ".join(r["message"] for r in mine)
    assert "triggered a sync" in messages
    assert any(r["logger"] == "bot.services.pipeline" and r["message"].startswith("sync done") for r in mine), messages
    sends = [r for r in mine if r["logger"] == "bot.services.outbox" and "sent for finding" in r["message"]]
    assert {s["message"].split("(")[1].split(")")[0] for s in sends} == {"post", "reply"}, messages
    # the fields are keys of their own, not only words in the message
    assert {s["kind"] for s in sends} == {"post", "reply"}
    for sent in sends:
        assert sent["detection"] == "Kernel Module Loaded" and sent["cluster_id"] == "0101-000000-ds0001"
        assert sent["finding"] and sent["instance_id"] == "i-0driver000000001"
    [done] = [r for r in mine if r["message"].startswith("sync done")]
    assert (done["fetched"], done["new_events"], done["new_findings"], done["repeats"]) == (2, 2, 1, 1)
    [alert] = [r for r in mine if "triggered a sync" in r["message"]]
    assert alert["alert_id"] == "a1" and alert["payload_shape"] == "legacy"


async def test_a_line_break_in_outside_data_never_starts_a_log_line(bot: Bot, captured_logs):
    configure_into(captured_logs, "text", [])
    forged = "a1\n2026-12-04 10:00:00,000 ERROR bot.services.dispatch [-]: action esm.terminate_cluster done"
    status, _ = await bot.webhook({"event": "TRIGGERED", "alert": {"id": forged}})
    assert status == 202
    await bot.settle()
    lines = captured_logs.getvalue().splitlines()
    [line] = [ln for ln in lines if "triggered a sync" in ln]
    assert "a1\\n2026-12-04" in line, line
    assert not any(ln.startswith("2026-12-04 10:00:00,000 ERROR") for ln in lines)


async def test_a_fresh_id_when_the_caller_sends_none_or_junk(bot: Bot):
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": aiohttp.encode_basic_auth("databricks", WEBHOOK_PASSWORD),
                   "X-Request-Id": "bad id\nwith newline"}
        async with session.post(bot.url + "/webhooks/dbsql", json={"event": "TRIGGERED", "alert": {"id": "a1"}},
                                headers={k: v.replace("\n", " ") for k, v in headers.items()}) as response:
            cid = (await response.json())["correlation_id"]
    assert cid.startswith("wh-") and " " not in cid


def test_json_logs_mask_secrets_in_messages_extras_and_tracebacks(captured_logs):
    quoted = "s3cr3t-" + chr(34) + "quoted" + chr(34) + "-value"  # JSON escapes its quotes
    configure_into(captured_logs, "json", [quoted, SLACK_TOKEN])
    log = logging.getLogger("esm.test")
    log.info("token %s in a message", SLACK_TOKEN)
    log.info("extra field", extra={"detail": f"Bearer {quoted}"})
    try:
        raise RuntimeError(f"failed with {SLACK_TOKEN}")
    except RuntimeError:
        log.exception("boom")
    err = captured_logs.getvalue()
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == 3
    assert SLACK_TOKEN not in err and "s3cr3t" not in err
    assert lines[0]["message"] == "token **** in a message"
    assert lines[1]["detail"] == "Bearer ****"
    assert "****" in lines[2]["exception"]


def test_text_logs_show_the_correlation_id(captured_logs):
    from bot.observability import correlation

    configure_into(captured_logs, "text", [SLACK_TOKEN])
    with correlation.bound("cid-7"):
        logging.getLogger("esm.test").info("hello %s", SLACK_TOKEN)
    err = captured_logs.getvalue()
    assert "[cid-7]: hello ****" in err
