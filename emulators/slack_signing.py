"""Inbound Slack traffic for tests: request bodies shaped as Slack sends them, signed as Slack
signs them (v0 HMAC-SHA256 over "v0:{timestamp}:{body}"), so the bot's request verification
stays switched on in every test.

Slash commands arrive form-encoded; interactions (block_actions, view_submission) arrive
form-encoded with a single `payload` field holding JSON.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
TEAM = {"id": "T0ESM", "domain": "esm-emulated"}
APP_ID = "A0ESM"
# The deprecated verification token Slack still puts in bodies; Bolt ignores it. Not a secret.
VERIFICATION_TOKEN = "legacy-verification-token"


def signature(signing_secret: str, body: bytes, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to every request; `timestamp` defaults to now (Unix seconds)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(signing_secret, body, ts),
    }


def signed_form_headers(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """signed_headers plus the Content-Type Slack uses for commands and interactions."""
    return {"Content-Type": FORM, **signed_headers(signing_secret, body, timestamp)}


def slash_command_body(
    *,
    command: str = "/esm",
    text: str = "",
    user_id: str = "U0RESPONDER",
    user_name: str = "responder",
    channel_id: str = "C0SECURITY",
    channel_name: str = "security-alerts",
    response_url: str = "https://hooks.slack.com/commands/T0ESM/1/x",
    trigger_id: str = "1337.42.trigger",
    team_id: str = TEAM["id"],
    enterprise_id: str | None = None,
) -> bytes:
    """A slash-command POST body with every field Slack sends (enterprise fields on Enterprise Grid)."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM["domain"],
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    if enterprise_id is not None:
        fields.update({"enterprise_id": enterprise_id, "enterprise_name": "ESM Emulated Org"})
    return urlencode(fields).encode()


def payload_body(payload: dict[str, Any]) -> bytes:
    """An interaction POST body: `payload=<JSON>`, form-encoded."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def _user(user_id: str, user_name: str) -> dict[str, str]:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM["id"]}


def block_actions_payload(
    *,
    action_id: str,
    value: str = "",
    block_id: str = "actions",
    user_id: str = "U0RESPONDER",
    user_name: str = "responder",
    channel_id: str = "C0SECURITY",
    message: dict[str, Any] | None = None,
    response_url: str = "https://hooks.slack.com/actions/T0ESM/1/x",
    trigger_id: str = "1337.42.trigger",
    action_ts: str | None = None,
) -> dict[str, Any]:
    """A block_actions payload for a button click on a message (`message` as Slack stored it)."""
    message = message or {"type": "message", "ts": "1700000000.000100", "text": "", "blocks": []}
    action = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": action_id, "emoji": True},
        "value": value,
        "action_ts": action_ts or f"{time.time():.6f}",
    }
    return {
        "type": "block_actions",
        "user": _user(user_id, user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": TEAM,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "security-alerts"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def block_actions_body(**kwargs: Any) -> bytes:
    """payload_body(block_actions_payload(...)); takes the same keyword arguments."""
    return payload_body(block_actions_payload(**kwargs))


def view_submission_payload(
    *,
    callback_id: str,
    values: dict[str, dict[str, Any]] | None = None,
    private_metadata: str = "",
    user_id: str = "U0RESPONDER",
    user_name: str = "responder",
    view_id: str = "V00000001",
    blocks: list[dict[str, Any]] | None = None,
    trigger_id: str = "1337.43.trigger",
) -> dict[str, Any]:
    """A view_submission payload. `values` is Slack's state shape:
    {block_id: {action_id: {"type": "plain_text_input", "value": "..."}}}."""
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": _user(user_id, user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": TEAM["id"],
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": values or {}},
            "hash": "1700000000.abcdef",
            "title": {"type": "plain_text", "text": "esm-bot"},
            "app_id": APP_ID,
            "external_id": "",
            "root_view_id": view_id,
            "previous_view_id": None,
            "bot_id": "B0ESMBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission_body(**kwargs: Any) -> bytes:
    """payload_body(view_submission_payload(...)); takes the same keyword arguments."""
    return payload_body(view_submission_payload(**kwargs))
