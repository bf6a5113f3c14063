"""Who may run actions and who may read (bot/core/authz.py): fail closed, groups looked up."""
from __future__ import annotations

import pytest

from bot.core.authz import Authorizer, ReadAccess

GROUPS = {"S0SECTEAM": {"U0TEAMMATE"}, "S0AUDITORS": {"U0AUDITOR"}}


async def members_of(group: str) -> set[str]:
    if group == "S0BROKEN":
        raise RuntimeError("usergroups.users.list: missing_scope")
    return GROUPS.get(group, set())


async def test_responders_are_users_and_group_members_only():
    authorizer = Authorizer(["U0RESPONDER", "S0SECTEAM"], members_of)
    assert (await authorizer.allows("U0RESPONDER"))[0]
    assert (await authorizer.allows("U0TEAMMATE"))[0]
    allowed, why = await authorizer.allows("U0OUTSIDER")
    assert not allowed and "ESM_RESPONDERS" in why
    assert not (await authorizer.allows("<@U0RESPONDER>"))[0], "not a user id"
    assert not (await Authorizer([], members_of).allows("U0RESPONDER"))[0], "empty refuses everybody"


async def test_without_esm_readers_suppressions_are_for_responders_and_events_for_everyone():
    access = ReadAccess.build(["U0RESPONDER", "S0SECTEAM"], [], members_of)
    assert not access.restricted
    assert (await access.suppressions("U0TEAMMATE"))[0]
    allowed, why = await access.suppressions("U0OUTSIDER")
    assert not allowed and "ESM_READERS" in why
    assert (await access.events("U0OUTSIDER"))[0]


async def test_with_esm_readers_both_are_for_readers_and_responders():
    access = ReadAccess.build(["U0RESPONDER"], ["U0READER", "S0AUDITORS", "S0BROKEN"], members_of)
    assert access.restricted
    for user in ("U0RESPONDER", "U0READER", "U0AUDITOR"):
        assert (await access.suppressions(user))[0] and (await access.events(user))[0], user
    allowed, why = await access.events("U0OUTSIDER")
    assert not allowed and "could not be checked" in why, "a group that cannot be read counts as not a member"
    assert not (await access.suppressions("U0OUTSIDER"))[0]


@pytest.mark.parametrize("user", ["", "U", "C0CHANNEL", "S0SECTEAM", "U0" + "X" * 40])
async def test_what_is_not_a_user_id_may_read_nothing(user):
    access = ReadAccess.build(["U0RESPONDER"], [], members_of)
    assert not (await access.suppressions(user))[0]
