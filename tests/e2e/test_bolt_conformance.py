"""Slack's request bodies as bolt-python's own tests give them, signed and posted to the real server.

The sample bodies are quoted from slackapi/bolt-python, tests/scenario_tests_async/
(test_events_url_verification.py, test_ssl_check.py, test_slash_command.py,
test_block_actions.py, test_view_submission.py). Where a sample has to point at this test's
world, the substitution is named next to it (a response_url on the Slack emulator instead of
hooks.slack.com, the bot's own command and buttons instead of bolt's `/hello-world` and `a`). The
view_submission sample's envelope carries the Mark benign modal with every input type it has,
plus one block of each other Slack input type, in the `state.values` shapes Slack sends.
"""
from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.e2e.conftest import CHANNEL, Bot, capsule8

# ---- quoted from bolt-python -------------------------------------------------------------------

URL_VERIFICATION = {  # test_events_url_verification.py: event_body
    "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
    "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    "type": "url_verification",
}

SSL_CHECK = "token=random&ssl_check=1"  # test_ssl_check.py

SLASH_COMMAND = (  # test_slash_command.py: slash_command_body
    "token=verification_token"
    "&team_id=T111"
    "&team_domain=test-domain"
    "&channel_id=C111"
    "&channel_name=random"
    "&user_id=W111"
    "&user_name=primary-owner"
    "&command=%2Fhello-world"
    "&text=Hi"
    "&enterprise_id=E111"
    "&enterprise_name=Org+Name"
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT111%2F111%2Fxxxxx"
    "&trigger_id=111.111.xxx"
)

BLOCK_ACTIONS = {  # test_block_actions.py: body
    "type": "block_actions",
    "user": {"id": "W111", "username": "primary-owner", "name": "primary-owner", "team_id": "T111"},
    "api_app_id": "A111",
    "token": "verification_token",
    "container": {"type": "message", "message_ts": "111.222", "channel_id": "C111", "is_ephemeral": True},
    "trigger_id": "111.222.valid",
    "team": {"id": "T111", "domain": "workspace-domain", "enterprise_id": "E111", "enterprise_name": "Sandbox Org"},
    "channel": {"id": "C111", "name": "test-channel"},
    "response_url": "https://hooks.slack.com/actions/T111/111/random-value",
    "actions": [
        {
            "action_id": "a",
            "block_id": "b",
            "text": {"type": "plain_text", "text": "Button", "emoji": True},
            "value": "click_me_123",
            "type": "button",
            "action_ts": "1596530385.194939",
        }
    ],
}

VIEW_SUBMISSION = {  # test_view_submission.py: body
    "type": "view_submission",
    "team": {"id": "T111", "domain": "workspace-domain", "enterprise_id": "E111", "enterprise_name": "Sandbox Org"},
    "user": {"id": "W111", "username": "primary-owner", "name": "primary-owner", "team_id": "T111"},
    "api_app_id": "A111",
    "token": "verification_token",
    "trigger_id": "111.222.valid",
    "view": {
        "id": "V111",
        "team_id": "T111",
        "type": "modal",
        "blocks": [
            {
                "type": "input",
                "block_id": "hspI",
                "label": {"type": "plain_text", "text": "Label"},
                "optional": False,
                "element": {"type": "plain_text_input", "action_id": "maBWU"},
            }
        ],
        "private_metadata": "This is for you!",
        "callback_id": "view-id",
        "state": {"values": {"hspI": {"maBWU": {"type": "plain_text_input", "value": "test"}}}},
        "hash": "1596530361.3wRYuk3R",
        "title": {"type": "plain_text", "text": "My App"},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": {"type": "plain_text", "text": "Cancel"},
        "submit": {"type": "plain_text", "text": "Submit"},
        "previous_view_id": None,
        "root_view_id": "V111",
        "app_id": "A111",
        "external_id": "",
        "app_installed_team_id": "T111",
        "bot_id": "B111",
    },
    "response_urls": [],
}

# ---- Slack's state.values shape for every input type (api.slack.com, view_submission payloads) -

OPTION = {"text": {"type": "plain_text", "text": "One"}, "value": "one"}
OTHER_INPUT_TYPES = {
    "multi_static_select": {"selected_options": [OPTION]},
    "external_select": {"selected_option": OPTION},
    "users_select": {"selected_user": "U0ALICE"},
    "multi_users_select": {"selected_users": ["U0ALICE", "U0BOB"]},
    "conversations_select": {"selected_conversation": "C0OTHER"},
    "channels_select": {"selected_channel": "C0OTHER"},
    "timepicker": {"selected_time": "13:37"},
    "datetimepicker": {"selected_date_time": 1628633820},
    "email_text_input": {"value": "alex@example.com"},
    "url_text_input": {"value": "https://example.com"},
    "number_input": {"value": "42"},
    "rich_text_input": {"rich_text_value": {"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": "hi"}]}]}},
    "file_input": {"files": [{"id": "F0FILE", "name": "x.txt"}]},
}
RESPONDERS = "W111 U0RESPONDER"
IN_A_MONTH = date.today() + timedelta(days=30)


def form_body(fields: str) -> bytes:
    return fields.encode()


def replace_field(body: str, name: str, value: str) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" if part.startswith(f"{name}=") else part
                    for part in body.split("&"))


def payload(value: dict[str, Any]) -> bytes:
    return f"payload={quote(json.dumps(value))}".encode()


@pytest.fixture
async def bolt_bot(tmp_path, slack, dbx):
    instance = Bot(tmp_path, slack, dbx, ESM_RESPONDERS=RESPONDERS)
    await instance.start()
    yield instance
    await instance.stop()


async def a_finding(bot: Bot) -> dict[str, Any]:
    bot.add(capsule8("c8-1", "Root Certificate Store Modified", "i-0driver000000001", 3,
                     containerId="3f9a1c2b7d4e", filePath="/usr/local/share/ca-certificates/corp.crt"))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    return finding


async def test_url_verification_answers_the_challenge(bolt_bot: Bot):
    status, answer = await bolt_bot.slack_request(json.dumps(URL_VERIFICATION).encode(),
                                                  headers={"Content-Type": "application/json"})
    assert (status, answer) == (200, {"challenge": URL_VERIFICATION["challenge"]})


async def test_ssl_check_is_answered_empty(bolt_bot: Bot):
    status, answer = await bolt_bot.slack_request(form_body(SSL_CHECK))
    assert status == 200 and answer in ("", None)


async def test_the_sample_slash_command_for_another_command_is_not_ours(bolt_bot: Bot):
    status, _ = await bolt_bot.slack_request(form_body(SLASH_COMMAND))
    assert status == 404 and await bolt_bot.healthy()  # Bolt: no listener for /hello-world


async def test_the_sample_slash_command_as_esm_help_is_answered(bolt_bot: Bot):
    url = bolt_bot.slack.new_response_url("C111")
    body = replace_field(replace_field(replace_field(SLASH_COMMAND, "command", "/esm"), "text", "help"),
                         "response_url", url)  # substituted: the bot's command, the emulator's response_url
    status, _ = await bolt_bot.slack_request(form_body(body))
    assert status == 200
    [answer] = await bolt_bot.answers(url)
    assert "/esm recent" in answer["text"]


async def test_the_sample_block_actions_for_an_unknown_button_is_not_ours(bolt_bot: Bot):
    status, _ = await bolt_bot.slack_request(payload(BLOCK_ACTIONS))
    assert status == 404 and await bolt_bot.healthy()  # Bolt: no listener for action "a"


async def test_the_sample_block_actions_as_a_click_on_acknowledge_runs_it(bolt_bot: Bot):
    finding = await a_finding(bolt_bot)
    button = next(e for b in finding["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "esm.acknowledge")
    url = bolt_bot.slack.new_response_url(CHANNEL, finding["ts"])
    click = copy.deepcopy(BLOCK_ACTIONS)
    # substituted: the bot's button on the posted finding, the emulator's channel and response_url
    click["actions"][0].update(action_id="esm.acknowledge", block_id=finding["blocks"][-1].get("block_id", "b"),
                               value=button["value"])
    click["container"].update(message_ts=finding["ts"], channel_id=CHANNEL, is_ephemeral=False)
    click["channel"]["id"] = CHANNEL
    click["response_url"] = url
    status, _ = await bolt_bot.slack_request(payload(click))
    assert status == 200
    [answer] = await bolt_bot.answers(url)
    assert "Acknowledged" in answer["text"] or "acknowledged" in answer["text"], answer
    await bolt_bot.settle()
    assert "Acknowledged* by @W111" in bolt_bot.text_of(finding)


async def test_the_sample_view_submission_with_every_input_type_creates_the_suppression(bolt_bot: Bot):
    finding = await a_finding(bolt_bot)
    key = finding["metadata"]["event_payload"]["key"]
    submission = copy.deepcopy(VIEW_SUBMISSION)
    values = {
        "scope": {"benign.scope": {"type": "radio_buttons", "selected_option": {
            "text": {"type": "plain_text", "text": "This instance"}, "value": "instance"}}},
        "patterns": {"patterns": {"type": "plain_text_input",
                                  "value": "file_path=/usr/local/share/ca-certificates/*"}},
        "expiry": {"benign.expiry": {"type": "static_select", "selected_option": {
            "text": {"type": "plain_text", "text": "Until the date below"}, "value": "date"}}},
        "expiry_date": {"date": {"type": "datepicker", "selected_date": IN_A_MONTH.isoformat()}},
        "never_confirm": {"never": {"type": "checkboxes", "selected_options": []}},
        "reason": {"reason": {"type": "plain_text_input", "value": "Corp root CA, installed by the init script"}},
    }
    values.update({f"other_{kind}": {kind: {"type": kind, **state}} for kind, state in OTHER_INPUT_TYPES.items()})
    # substituted: the bot's callback and finding; the state of every input type
    submission["view"].update(callback_id="esm.mark_benign.submit", private_metadata=key,
                              state={"values": values})
    status, answer = await bolt_bot.slack_request(payload(submission))
    assert status == 200 and answer in ("", None), answer  # an empty 200 closes the modal
    await bolt_bot.settle()
    [suppression] = await bolt_bot.runtime.store.active_suppressions(datetime.now(timezone.utc))
    assert suppression.scope.instance_id == "i-0driver000000001" and suppression.reason.startswith("Corp root CA")
    assert suppression.expires_at is not None and suppression.expires_at.date() >= IN_A_MONTH
    assert "marked this finding benign" in json.dumps(bolt_bot.slack.thread(CHANNEL, finding["ts"]))


async def test_the_sample_view_submission_for_another_view_is_not_ours(bolt_bot: Bot):
    status, _ = await bolt_bot.slack_request(payload(VIEW_SUBMISSION))
    assert status == 404 and await bolt_bot.healthy()


def test_quoted_samples_are_unchanged_by_the_tests():
    assert BLOCK_ACTIONS["actions"][0]["action_id"] == "a" and VIEW_SUBMISSION["view"]["callback_id"] == "view-id"
    assert urlencode({"ssl_check": 1}) in SSL_CHECK
