"""Who may run a response action: the ESM_RESPONDERS list of user ids and user-group ids.

Fails closed: an empty list allows nobody, and a group whose membership cannot be read
counts as not containing the user.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,32}$")


class Authorizer:
    def __init__(self, responders: Sequence[str], members_of: Callable[[str], Awaitable[set[str]]]):
        self.users = frozenset(r for r in responders if r[:1] in ("U", "W"))
        self.groups = tuple(r for r in responders if r.startswith("S"))
        self._members_of = members_of

    @property
    def configured(self) -> bool:
        return bool(self.users or self.groups)

    async def allows(self, user_id: str) -> tuple[bool, str]:
        """(allowed, why) — the reason is shown to a refused user and kept in the audit trail."""
        if not SLACK_USER_ID.match(user_id or ""):
            return False, "the request did not name a valid Slack user"
        if not self.configured:
            return False, "no responders are configured (ESM_RESPONDERS is empty), so nobody may run this action"
        if user_id in self.users:
            return True, "listed in ESM_RESPONDERS"
        return await self._in_a_group(user_id)

    async def _in_a_group(self, user_id: str) -> tuple[bool, str]:
        failures = []
        for group in self.groups:
            try:
                if user_id in await self._members_of(group):
                    return True, f"member of responder group {group}"
            except Exception as exc:  # membership unknown counts as "not a member"
                failures.append(f"{group}: {exc}")
        if failures:
            return False, "you are not a listed responder, and a responder group could not be checked"
        return False, "you are not in ESM_RESPONDERS"
