"""Socket Mode: with SLACK_APP_TOKEN the same Bolt app and listeners receive Slack traffic over
the websocket that the Slack emulator hands out from apps.connections.open; the HTTP server
keeps serving webhooks, health and metrics."""
from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.conftest import CHANNEL, RESPONDER, Bot, capsule8

APP_TOKEN = "xapp-1-A0ESM-e2e-socket-token"


@pytest.fixture
async def socket_bot(tmp_path, slack, dbx):
    slack.app_token = APP_TOKEN
    instance = Bot(tmp_path, slack, dbx, SLACK_APP_TOKEN=APP_TOKEN)
    del instance.env["SLACK_SIGNING_SECRET"]  # Socket Mode needs no signing secret
    await instance.start()
    yield instance
    await instance.stop()


async def test_a_slash_command_over_socket_mode_is_acked_and_answered(socket_bot: Bot, slack):
    await slack.socket.wait_connected()
    assert len(slack.calls_to("apps.connections.open")) == 1
    response_url = slack.new_response_url(CHANNEL)
    envelope = await slack.socket.slash_command(text="help", user_id=RESPONDER, channel_id=CHANNEL,
                                                response_url=response_url)
    ack = await slack.socket.wait_ack(envelope)
    assert ack["envelope_id"] == envelope
    [answer] = await socket_bot.answers(response_url)
    assert "esm-bot" in answer["text"] and "/esm status" in answer["text"]


async def test_an_unknown_verb_is_answered_in_the_ack_payload(socket_bot: Bot, slack):
    await slack.socket.wait_connected()
    envelope = await slack.socket.slash_command(text="frobnicate", user_id=RESPONDER, channel_id=CHANNEL,
                                                response_url=slack.new_response_url(CHANNEL))
    ack = await slack.socket.wait_ack(envelope)
    assert "Unknown command `frobnicate`" in ack["payload"]["text"]


async def test_the_http_side_still_serves_webhooks_health_and_metrics_but_not_unsigned_slack(socket_bot: Bot):
    assert await socket_bot.healthy()
    socket_bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10))
    status, _ = await socket_bot.webhook()
    assert status == 202
    await socket_bot.settle()
    assert len(socket_bot.findings()) == 1
    async with aiohttp.ClientSession() as session:
        async with session.get(socket_bot.url + "/metrics") as response:
            assert response.status == 200 and "esm_findings_posted_total" in await response.text()
        async with session.post(socket_bot.url + "/slack/events", data=b"command=/esm") as response:
            assert response.status == 404, "no signing secret: Slack over HTTP is not mounted"


async def test_the_socket_reconnects_when_slack_drops_it(socket_bot: Bot, slack):
    await slack.socket.wait_connected()
    await slack.socket.disconnect_all()
    await slack.socket.wait_accepted(2)
    response_url = slack.new_response_url(CHANNEL)
    envelope = await slack.socket.slash_command(text="help", user_id=RESPONDER, channel_id=CHANNEL,
                                                response_url=response_url)
    await slack.socket.wait_ack(envelope)
    await socket_bot.answers(response_url)


async def test_an_envelope_from_another_workspace_is_not_run_over_socket_mode(tmp_path, slack, dbx):
    """ESM_SLACK_TEAM_ID (#11) holds over the websocket too: Bolt's middleware refuses the envelope
    before any listener runs, so it is never acknowledged nor answered."""
    import asyncio
    import secrets

    from emulators.slack_signing import APP_ID

    slack.app_token = APP_TOKEN
    bot = Bot(tmp_path, slack, dbx, SLACK_APP_TOKEN=APP_TOKEN, ESM_SLACK_TEAM_ID="T0ESM")
    del bot.env["SLACK_SIGNING_SECRET"]
    await bot.start()
    try:
        await slack.socket.wait_connected()
        foreign_url = slack.new_response_url(CHANNEL)
        envelope = await slack.socket.send("slash_commands", {
            "team_id": "T0OTHER", "team_domain": "elsewhere", "channel_id": CHANNEL, "user_id": RESPONDER,
            "command": "/esm", "text": "status", "api_app_id": APP_ID, "response_url": foreign_url,
            "trigger_id": f"{secrets.randbelow(10**6)}.42.trigger",
        }, accepts_response_payload=True)
        with pytest.raises(asyncio.TimeoutError):
            await slack.socket.wait_ack(envelope, timeout=1.5)
        assert slack.responses(foreign_url) == []
        own_url = slack.new_response_url(CHANNEL)
        await slack.socket.wait_ack(await slack.socket.slash_command(
            text="help", user_id=RESPONDER, channel_id=CHANNEL, response_url=own_url))
        assert "esm-bot" in (await bot.answers(own_url))[0]["text"]
    finally:
        await bot.stop()
