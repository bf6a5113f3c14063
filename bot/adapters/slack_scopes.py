"""Which bot-token scopes each Slack Web API method the bot calls needs, and the scopes
manifest.yml asks for. Used by `esm-bot doctor` (what a missing scope breaks) and by the test
that keeps manifest.yml in step with the code."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"

# Every scope listed is required (public and private channels both work).
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "chat.getPermalink": frozenset(),
    "conversations.history": frozenset({"channels:history", "groups:history"}),
    "conversations.replies": frozenset({"channels:history", "groups:history"}),
    "conversations.info": frozenset({"channels:read", "groups:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "users.info": frozenset({"users:read"}),
    "views.open": frozenset(),  # a trigger_id is the permission
    "views.push": frozenset(),
    "views.update": frozenset(),
    "views.publish": frozenset(),  # the App Home tab: no scope beyond the app having a Home
    "auth.test": frozenset(),
    "files.getUploadURLExternal": frozenset({"files:write"}),  # Investigate's CSV and chart (files_upload_v2)
    "files.completeUploadExternal": frozenset({"files:write"}),
    "apps.connections.open": frozenset(),  # app-level token (connections:write), not a bot scope
}
SLASH_COMMAND_SCOPE = "commands"

# What the bot uses if manifest.yml is not next to the package (an installed wheel)
FALLBACK_SCOPES = ("chat:write", "commands", "channels:history", "groups:history", "channels:read", "groups:read",
                   "usergroups:read", "users:read", "files:write")


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def manifest_bot_scopes(path: Path = MANIFEST) -> tuple[str, ...]:
    try:
        manifest = load_manifest(path)
    except OSError:
        return FALLBACK_SCOPES
    return tuple(((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot") or ())


def methods_needing(scope: str) -> list[str]:
    return sorted(m for m, scopes in METHOD_SCOPES.items() if scope in scopes) or (
        ["the /esm slash command"] if scope == SLASH_COMMAND_SCOPE else []
    )
