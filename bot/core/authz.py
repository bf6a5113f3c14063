"""Who may do what: ESM_RESPONDERS runs response actions; ESM_READERS (with the responders) reads.

An `Authorizer` is one list of user ids and user-group ids. It fails closed: an empty list
allows nobody, and a group whose membership cannot be read counts as not containing the user.

`ReadAccess` decides who may read, on the server, whatever the request claims:
* what tells how findings are hidden (benign suppressions: their patterns say what to add to a
  command to hide it) — responders and readers only, always;
* the audit data (`/esm recent`, `/esm status`, Recent on this host) — anyone in the workspace
  while ESM_READERS is unset (as before it existed), responders and readers once it is set.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,32}$")


class Authorizer:
    def __init__(
        self,
        responders: Sequence[str],
        members_of: Callable[[str], Awaitable[set[str]]],
        *,
        listed_in: str = "ESM_RESPONDERS",
        nobody: str = "no responders are configured (ESM_RESPONDERS is empty), so nobody may run this action",
    ):
        self.users = frozenset(r for r in responders if r[:1] in ("U", "W"))
        self.groups = tuple(r for r in responders if r.startswith("S"))
        self._members_of = members_of
        self._listed_in = listed_in
        self._nobody = nobody

    @property
    def configured(self) -> bool:
        return bool(self.users or self.groups)

    async def allows(self, user_id: str) -> tuple[bool, str]:
        """(allowed, why) — the reason is shown to a refused user and kept in the audit trail."""
        if not SLACK_USER_ID.match(user_id or ""):
            return False, "the request did not name a valid Slack user"
        if not self.configured:
            return False, self._nobody
        if user_id in self.users:
            return True, f"listed in {self._listed_in}"
        return await self._in_a_group(user_id)

    async def _in_a_group(self, user_id: str) -> tuple[bool, str]:
        failures = []
        for group in self.groups:
            try:
                if user_id in await self._members_of(group):
                    return True, f"member of group {group} in {self._listed_in}"
            except Exception as exc:  # membership unknown counts as "not a member"
                failures.append(f"{group}: {exc}")
        if failures:
            return False, f"you are not listed in {self._listed_in}, and a group there could not be checked"
        return False, f"you are not in {self._listed_in}"


READERS_LISTED_IN = "ESM_RESPONDERS or ESM_READERS"


@dataclass(frozen=True)
class ReadAccess:
    """Who may read suppressions, and (when ESM_READERS is set) the audit data."""

    readers: Authorizer  # responders and readers together
    restricted: bool  # ESM_READERS is set: the audit data is for readers and responders only

    @classmethod
    def build(
        cls, responders: Sequence[str], readers: Sequence[str], members_of: Callable[[str], Awaitable[set[str]]]
    ) -> "ReadAccess":
        both = Authorizer(
            [*responders, *readers], members_of, listed_in=READERS_LISTED_IN,
            nobody="nobody is listed in ESM_RESPONDERS or ESM_READERS, so nobody may see this",
        )
        return cls(both, restricted=bool(readers))

    async def suppressions(self, user_id: str) -> tuple[bool, str]:
        """Benign suppressions and their patterns: responders and readers, never anyone else."""
        return await self.readers.allows(user_id)

    async def events(self, user_id: str) -> tuple[bool, str]:
        """The audit data: open to the workspace until ESM_READERS is set."""
        if not self.restricted:
            return True, "ESM_READERS is unset: open to everyone in the workspace"
        return await self.readers.allows(user_id)
