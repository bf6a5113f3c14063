"""manifest.yml (and manifest.socket.yml) match the running app: the slash command Bolt answers,
where Slack sends requests, interactivity, and a bot scope for every Slack method the code calls."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack_scopes import METHOD_SCOPES, SLASH_COMMAND_SCOPE, load_manifest
from emulators.slack_signing import slash_command_body
from handlers import commands

ROOT = Path(__file__).resolve().parents[2]
HTTP = load_manifest(ROOT / "manifest.yml")
SOCKET = load_manifest(ROOT / "manifest.socket.yml")
WEB_API_FAMILIES = "chat|conversations|usergroups|users|views|auth|apps|reactions|files|pins|bookmarks|team"
METHOD_LITERAL = re.compile(r'["\']((?:' + WEB_API_FAMILIES + r')\.[A-Za-z]+(?:\.[A-Za-z]+)*)["\']')
CLIENT_METHOD = re.compile(r"\.((?:" + WEB_API_FAMILIES + r")_[A-Za-z_]+)\(")


def slack_methods_called() -> dict[str, set[str]]:
    """Web API method -> files naming it: method-name literals ("chat.update") as the adapters
    pass them to slack_sdk, and `client.views_open(…)`-style slack_sdk calls in the handlers."""
    found: dict[str, set[str]] = {}
    for folder in ("bot", "handlers"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "slack_scopes.py":  # the map itself
                continue
            text = path.read_text(encoding="utf-8")
            methods = set(METHOD_LITERAL.findall(text))
            methods |= {name.replace("_", ".") for name in CLIENT_METHOD.findall(text)}
            for method in methods:
                found.setdefault(method, set()).add(str(path.relative_to(ROOT)))
    return found


def bot_scopes(manifest: dict) -> set[str]:
    return set(manifest["oauth_config"]["scopes"]["bot"])


def test_the_scan_finds_the_methods_we_know_the_bot_calls():
    called = slack_methods_called()
    for method in ("chat.postMessage", "chat.update", "conversations.history", "usergroups.users.list",
                   "views.open", "views.update", "chat.postEphemeral", "conversations.info", "auth.test"):
        assert method in called, method


def test_every_called_method_has_a_known_scope_requirement():
    unknown = {m: files for m, files in slack_methods_called().items() if m not in METHOD_SCOPES}
    assert not unknown, f"add these to bot/slack_scopes.METHOD_SCOPES: {unknown}"


@pytest.mark.parametrize("manifest", [HTTP, SOCKET], ids=["manifest.yml", "manifest.socket.yml"])
def test_the_bot_scopes_cover_every_method_the_code_calls(manifest):
    needed = {SLASH_COMMAND_SCOPE}
    for method in slack_methods_called():
        needed |= METHOD_SCOPES.get(method, frozenset())
    missing = needed - bot_scopes(manifest)
    assert not missing, f"manifest lacks {sorted(missing)}"


def test_the_doctor_fallback_scopes_are_the_manifest_scopes():
    from bot.adapters.slack_scopes import FALLBACK_SCOPES

    assert set(FALLBACK_SCOPES) == bot_scopes(HTTP)


def test_http_requests_go_to_slack_events_and_interactivity_is_on():
    [command] = HTTP["features"]["slash_commands"]
    assert command["url"].endswith("/slack/events")
    assert HTTP["settings"]["interactivity"]["is_enabled"] is True
    assert HTTP["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert HTTP["settings"]["socket_mode_enabled"] is False


def test_the_socket_manifest_differs_only_in_the_transport():
    assert SOCKET["settings"]["socket_mode_enabled"] is True
    assert SOCKET["settings"]["interactivity"] == {"is_enabled": True}
    [command] = SOCKET["features"]["slash_commands"]
    assert "url" not in command
    [http_command] = HTTP["features"]["slash_commands"]
    assert {k: v for k, v in http_command.items() if k != "url"} == command
    assert bot_scopes(SOCKET) == bot_scopes(HTTP)
    assert SOCKET["display_information"] == HTTP["display_information"]


def test_socket_mode_enabled_is_documented_as_the_switch():
    text = (ROOT / "manifest.yml").read_text(encoding="utf-8")
    assert re.search(r"socket_mode_enabled: false\s+#.*Socket Mode", text)
    assert "SLACK_APP_TOKEN" in (ROOT / "manifest.socket.yml").read_text(encoding="utf-8")


async def _dispatch_command(app: AsyncApp, command: str) -> int:
    body = slash_command_body(command=command, text="frobnicate").decode()
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    return response.status


async def test_the_manifest_command_is_the_one_the_app_answers():
    async def authorize(**kwargs) -> AuthorizeResult:  # no auth.test: nothing leaves the process
        return AuthorizeResult(enterprise_id=None, team_id="T0ESM", bot_token="xoxb-unit", bot_id="B0", bot_user_id="U0")

    app = AsyncApp(signing_secret="unit", authorize=authorize)
    commands.register(app, lambda: None)  # an unknown verb is answered in the ack: no runtime needed
    [command] = HTTP["features"]["slash_commands"]
    assert await _dispatch_command(app, command["command"]) == 200
    assert await _dispatch_command(app, "/not-esm") == 404
