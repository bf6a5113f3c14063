"""Terminate cluster (issue #3): the real bot server, the real databricks-sdk against the
Databricks emulator, and button clicks signed exactly as Slack signs them."""
from __future__ import annotations

import asyncio
import json

import pytest

from emulators.slack import blocks_to_text
from emulators.slack_signing import block_actions_body
from tests.e2e.conftest import CHANNEL, OUTSIDER, RESPONDER, Bot, capsule8

TERMINATE = "esm.terminate_cluster"
CLUSTER = "0101-000000-ds0001"  # data-science-shared; i-0driver000000001 is its driver
OTHER_CLUSTER = "0101-000000-etl002"
TEAMMATE = "U0TEAMMATE"  # in responder group S0SECTEAM
DELETE = "/api/2.1/clusters/delete"


@pytest.fixture(autouse=True)
def never_permanently_deletes(dbx):
    yield
    sent = [c.path for c in dbx.calls if "permanent-delete" in c.path or "permanent_delete" in c.path]
    assert sent == [], "terminate must use clusters.delete, never permanent-delete"


@pytest.fixture
async def make_bot(tmp_path, slack, dbx):
    """A bot with extra settings (ESM_RESPONDERS="", ESM_DRY_RUN=true, ...)."""
    started: list[Bot] = []

    async def make(**env: str) -> Bot:
        folder = tmp_path / f"bot{len(started)}"
        folder.mkdir()
        instance = await Bot(folder, slack, dbx, **env).start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


async def posted_finding(bot: Bot, **params: str) -> dict:
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 5, **params))
    await bot.webhook()
    await bot.settle()
    [finding] = bot.findings()
    return finding


def key_of(finding: dict) -> str:
    return finding["metadata"]["event_payload"]["key"]


def terminate_button(bot: Bot, finding: dict) -> dict | None:
    current = bot.slack.message(CHANNEL, finding["ts"]) or finding
    return next((e for b in current["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == TERMINATE), None)


async def click(bot: Bot, finding: dict, user_id: str = RESPONDER, value: str | None = None) -> str:
    """Click Terminate as Slack would; returns this click's own response_url. With `value`, the
    click may come from an older copy of the message that still showed the button."""
    button = terminate_button(bot, finding) if value is None else {"value": value}
    assert button is not None, "the finding offers no Terminate button"
    response_url = bot.slack.new_response_url(CHANNEL, finding["ts"])
    body = block_actions_body(action_id=TERMINATE, value=button["value"], user_id=user_id,
                              channel_id=CHANNEL, message=bot.slack.message(CHANNEL, finding["ts"]),
                              response_url=response_url)
    status, answer = await bot.slack_request(body)
    assert status == 200, answer
    return response_url


async def answer_to(bot: Bot, response_url: str) -> str:
    [answer] = await bot.answers(response_url)
    return answer["text"]


def thread_text(bot: Bot, finding: dict) -> str:
    return "\n".join(blocks_to_text(r["blocks"]) for r in bot.repeats(finding))


def deletes(bot: Bot) -> list:
    return bot.dbx.calls_to(DELETE, "POST")


# ---- the button itself ------------------------------------------------------------------------


async def test_the_button_is_danger_styled_and_its_confirm_names_the_cluster(bot: Bot):
    finding = await posted_finding(bot)
    button = terminate_button(bot, finding)
    assert button is not None and button["style"] == "danger"
    assert json.loads(button["value"])["cluster_id"] == CLUSTER
    confirm = button["confirm"]
    assert confirm["style"] == "danger"
    text = confirm["text"]["text"]
    assert f"data-science-shared ({CLUSTER})" in text
    assert "notebooks and jobs on it stop" in text and "started again" in text


# ---- (a) an authorised responder terminates ---------------------------------------------------


async def test_a_responder_terminates_the_cluster_once_and_everyone_can_see_it(bot: Bot):
    finding = await posted_finding(bot)
    answer = await answer_to(bot, await click(bot, finding))
    await bot.settle()

    assert [c.data for c in deletes(bot)] == [{"cluster_id": CLUSTER}]
    assert bot.dbx.clusters[CLUSTER]["state"] in ("TERMINATING", "TERMINATED")
    assert answer.startswith(f"<@{RESPONDER}> terminated cluster data-science-shared ({CLUSTER})")
    assert "which was RUNNING; interrupted" in answer and "started again" in answer
    assert f"@{RESPONDER} terminated cluster data-science-shared ({CLUSTER})" in thread_text(bot, finding)
    parent = bot.text_of(finding)
    assert f"Cluster terminated* by @{RESPONDER}" in parent
    assert f"Note: Terminated data-science-shared ({CLUSTER}), which was RUNNING" in parent
    assert "[Terminate cluster]" not in parent
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert (record["action"], record["user_id"], record["outcome"], record["dry_run"]) == (
        TERMINATE, RESPONDER, "done", 0)


# ---- (b), (c) who may not ---------------------------------------------------------------------


async def test_someone_not_a_responder_is_refused_and_nothing_is_called(bot: Bot):
    finding = await posted_finding(bot)
    answer = await answer_to(bot, await click(bot, finding, user_id=OUTSIDER))
    await bot.settle()

    assert answer.startswith("Refused") and "ESM_RESPONDERS" in answer
    assert deletes(bot) == []
    assert bot.dbx.clusters[CLUSTER]["state"] == "RUNNING"
    assert "[Terminate cluster]" in bot.text_of(finding)
    assert bot.repeats(finding) == []
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert (record["user_id"], record["outcome"]) == (OUTSIDER, "refused")


async def test_with_no_responders_configured_nobody_may_terminate(make_bot):
    bot = await make_bot(ESM_RESPONDERS="")
    finding = await posted_finding(bot)
    answer = await answer_to(bot, await click(bot, finding))

    assert answer.startswith("Refused") and "ESM_RESPONDERS" in answer
    assert deletes(bot) == []


# ---- (d) nothing to do -------------------------------------------------------------------------


async def test_an_already_terminated_cluster_is_not_terminated_again(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.clusters[CLUSTER]["state"] = "TERMINATED"  # stopped by someone else meanwhile
    answer = await answer_to(bot, await click(bot, finding))
    await bot.settle()

    assert deletes(bot) == []
    assert "already terminated" in answer
    assert "already terminated" in thread_text(bot, finding)
    assert "Cluster terminated*" in bot.text_of(finding), "the finding now shows the cluster as stopped"
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert record["outcome"] == "already"


async def test_a_cluster_that_no_longer_exists_is_reported_not_terminated(bot: Bot):
    finding = await posted_finding(bot)
    del bot.dbx.clusters[CLUSTER]
    answer = await answer_to(bot, await click(bot, finding))

    assert "no longer exists" in answer
    assert deletes(bot) == []


# ---- (e) the API says no, and a later click retries --------------------------------------------


@pytest.mark.parametrize("status", [500, 403])
async def test_an_api_error_is_reported_and_a_later_click_can_retry(bot: Bot, status: int):
    finding = await posted_finding(bot)
    bot.dbx.fail(DELETE, status)
    answer = await answer_to(bot, await click(bot, finding))
    await bot.settle()

    reason = f"emulated failure (HTTP {status})"
    assert answer.startswith("Could not terminate cluster") and reason in answer
    assert reason in thread_text(bot, finding)
    assert "Config:" not in answer + thread_text(bot, finding), "the SDK's client config stays out of Slack"
    assert bot.dbx.clusters[CLUSTER]["state"] == "RUNNING"
    assert "[Terminate cluster]" in bot.text_of(finding)

    answer = await answer_to(bot, await click(bot, finding))  # the fault has cleared
    await bot.settle()
    assert "terminated cluster" in answer
    assert len(deletes(bot)) == 2
    assert bot.dbx.clusters[CLUSTER]["state"] in ("TERMINATING", "TERMINATED")
    records = await bot.runtime.store.actions_for(key_of(finding))
    assert [r["outcome"] for r in records] == ["failed", "done"]


async def test_a_failing_cluster_lookup_fails_the_action_without_terminating(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.fail("/api/2.1/clusters/get", 403)
    answer = await answer_to(bot, await click(bot, finding))

    assert "emulated failure (HTTP 403)" in answer
    assert deletes(bot) == []


# ---- (f) two responders at once ----------------------------------------------------------------


async def test_two_responders_clicking_at_once_terminate_it_once(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.delay("/api/2.1/clusters/get", 0.3)  # keep the first click in flight while the second arrives
    urls = await asyncio.gather(click(bot, finding, RESPONDER), click(bot, finding, TEAMMATE))
    answers = [await answer_to(bot, url) for url in urls]
    await bot.settle()

    assert len(deletes(bot)) == 1
    assert sum("terminated cluster" in a for a in answers) == 1, answers
    assert sum("already" in a for a in answers) == 1, answers
    outcomes = sorted(r["outcome"] for r in await bot.runtime.store.actions_for(key_of(finding)))
    assert outcomes == ["already", "done"]


# ---- (g) dry run -------------------------------------------------------------------------------


async def test_dry_run_says_what_it_would_do_and_does_nothing(make_bot):
    bot = await make_bot(ESM_DRY_RUN="true")
    finding = await posted_finding(bot)
    answer = await answer_to(bot, await click(bot, finding))
    await bot.settle()

    expected = f"Dry run: would terminate cluster data-science-shared ({CLUSTER}), state RUNNING, interrupting"
    assert answer.startswith(expected)
    assert expected in thread_text(bot, finding)
    assert deletes(bot) == []
    assert bot.dbx.clusters[CLUSTER]["state"] == "RUNNING"
    assert "[Terminate cluster]" in bot.text_of(finding), "a dry run changes nothing, so the button stays"
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert (record["outcome"], record["dry_run"]) == ("dry_run", 1)

    answer = await answer_to(bot, await click(bot, finding))  # a dry run does not use up the action
    assert answer.startswith("Dry run: would terminate")


# ---- (h) a tampered button --------------------------------------------------------------------


async def test_a_button_value_naming_another_cluster_is_refused(bot: Bot):
    finding = await posted_finding(bot)
    value = json.loads(terminate_button(bot, finding)["value"])
    value["cluster_id"] = OTHER_CLUSTER
    answer = await answer_to(bot, await click(bot, finding, value=json.dumps(value)))
    await bot.settle()

    assert answer.startswith("Refused") and "different cluster" in answer
    assert deletes(bot) == []
    assert {c["state"] for c in bot.dbx.clusters.values()} == {"RUNNING"}
    assert bot.repeats(finding) == []

    del value["cluster_id"]
    answer = await answer_to(bot, await click(bot, finding, value=json.dumps(value)))
    assert answer.startswith("Refused")
    assert deletes(bot) == []

    answer = await answer_to(bot, await click(bot, finding))  # the refusals did not use up the action
    assert "terminated cluster" in answer


# ---- (i) what stopping it interrupts ----------------------------------------------------------


async def test_running_job_runs_on_the_cluster_are_named(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.add_run(11, CLUSTER, job_id=7, run_name="feature-refresh")
    bot.dbx.add_run(12, OTHER_CLUSTER, job_id=8, run_name="nightly-etl-run")
    bot.dbx.add_run(13, CLUSTER, job_id=9, run_name="old-run", state="TERMINATED")
    answer = await answer_to(bot, await click(bot, finding))
    await bot.settle()

    assert "interrupted 1 running job run: feature-refresh (run 11)" in answer
    assert "nightly-etl-run" not in answer and "old-run" not in answer
    assert "feature-refresh (run 11)" in thread_text(bot, finding)
    [record] = await bot.runtime.store.actions_for(key_of(finding))
    assert "feature-refresh (run 11)" in record["message"]


async def test_dry_run_names_the_job_runs_it_would_interrupt(make_bot):
    bot = await make_bot(ESM_DRY_RUN="true")
    finding = await posted_finding(bot)
    bot.dbx.add_run(11, CLUSTER, run_name="feature-refresh")
    bot.dbx.add_run(12, CLUSTER, run_name="model-train")
    answer = await answer_to(bot, await click(bot, finding))

    assert "interrupting 2 running job runs: " in answer
    assert "feature-refresh (run 11)" in answer and "model-train (run 12)" in answer


async def test_when_running_jobs_cannot_be_listed_it_says_so_and_still_terminates(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.fail("/jobs/runs/list", 500)
    answer = await answer_to(bot, await click(bot, finding))

    assert "could not list running jobs: " in answer and "emulated failure (HTTP 500)" in answer
    assert "terminated cluster" in answer
    assert len(deletes(bot)) == 1


# ---- markup and configuration ------------------------------------------------------------------


async def test_markup_in_a_cluster_name_stays_inert(bot: Bot):
    finding = await posted_finding(bot)
    bot.dbx.clusters[CLUSTER]["cluster_name"] = "<!channel> *x* <http://evil.example|click>"
    url = await click(bot, finding)
    [answer] = await bot.answers(url)
    await bot.settle()

    shown = json.dumps(answer["blocks"]) + json.dumps([r["blocks"] for r in bot.repeats(finding)])
    assert "<!channel>" not in shown and "<http://evil" not in shown
    assert f"<@{RESPONDER}>" in shown, "the clicker's own mention still works"


async def test_without_a_databricks_workspace_it_refuses_clearly(make_bot):
    bot = await make_bot(DATABRICKS_HOST="", DATABRICKS_TOKEN="")
    finding = await posted_finding(bot, clusterId=CLUSTER)  # the event itself names its cluster
    answer = await answer_to(bot, await click(bot, finding))

    assert "no Databricks workspace configured" in answer and "DATABRICKS_HOST" in answer
    assert deletes(bot) == []


async def test_acknowledging_does_not_close_the_finding_for_termination(bot: Bot):
    finding = await posted_finding(bot)
    await bot.click(finding, "esm.acknowledge")
    await bot.settle()
    assert terminate_button(bot, finding) is not None, "acknowledge-then-investigate is the usual flow"
    stale_value = terminate_button(bot, finding)["value"]
    await answer_to(bot, await click(bot, finding))
    await bot.settle()
    assert len(deletes(bot)) == 1
    assert terminate_button(bot, finding) is None, "a terminated finding no longer offers Terminate"

    answer = await answer_to(bot, await click(bot, finding, value=stale_value))
    assert "terminated" in answer and "no longer offered" in answer
    assert len(deletes(bot)) == 1
