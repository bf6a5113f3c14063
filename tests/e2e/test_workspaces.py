"""One bot, several workspaces: each event is enriched and acted on through its own workspace's
API, and its finding goes to the channel the routes pick, with the workspace named."""
from __future__ import annotations

import json

import pytest

from emulators.databricks import DatabricksEmulator
from emulators.slack import blocks_to_text
from emulators.slack_signing import block_actions_body
from tests.e2e.conftest import CHANNEL, RESPONDER, WORKSPACE_ID, Bot, capsule8

DEV_ID = "2222222222222222"
DEV_TOKEN = "dapi-dev-token-7731"


@pytest.fixture
async def dev():
    async with DatabricksEmulator(token=DEV_TOKEN) as emulator:
        emulator.add_cluster("0202-000000-dev001", name="dev-sandbox", creator="devon@example.com",
                             driver_instance_id="i-0devdriver0000001")
        yield emulator


@pytest.fixture
async def bot(tmp_path, slack, dbx, dev):
    workspaces = {
        "workspaces": [
            {"id": str(WORKSPACE_ID), "name": "prod", "host": dbx.host, "token_env": "PROD_TOKEN"},
            {"id": DEV_ID, "name": "dev", "host": dev.host, "token_env": "DEV_TOKEN", "channel": "C0DEVSEC"},
        ],
        "routes": [{"min_severity": "critical", "channel": "C0PAGER"}],
    }
    path = tmp_path / "workspaces.yml"
    path.write_text(json.dumps(workspaces))  # JSON is YAML
    from tests.e2e.conftest import DBX_TOKEN

    instance = Bot(tmp_path, slack, dbx, ESM_WORKSPACES_FILE=str(path), PROD_TOKEN=DBX_TOKEN, DEV_TOKEN=DEV_TOKEN,
                   DATABRICKS_HOST="", DATABRICKS_TOKEN="")
    await instance.start()
    yield instance
    await instance.stop()


def texts(bot: Bot, channel: str) -> list[str]:
    return [blocks_to_text(m["blocks"]) for m in bot.slack.messages(channel)]


async def test_each_workspace_is_enriched_from_its_own_api_and_routed_to_its_channel(bot: Bot, dev):
    bot.add(
        capsule8("c8-prod", "Kernel Module Loaded", "i-0driver000000001", 5),
        capsule8("c8-dev", "Kernel Module Loaded", "i-0devdriver0000001", 4, workspace_id=int(DEV_ID)),
        capsule8("c8-crit", "Userland Container Escape", "i-0devdriver0000001", 3, workspace_id=int(DEV_ID)),
    )
    await bot.webhook()
    await bot.settle()

    [prod] = texts(bot, CHANNEL)
    assert "data-science-shared" in prod and "prod" in prod
    [dev_finding] = texts(bot, "C0DEVSEC")
    assert "dev-sandbox" in dev_finding and "devon@example.com" in dev_finding and "dev" in dev_finding
    [paged] = texts(bot, "C0PAGER")
    assert "Userland Container Escape" in paged and "dev-sandbox" in paged
    assert len(bot.dbx.calls_to("/api/2.1/clusters/list")) == 1 and len(dev.calls_to("/api/2.1/clusters/list")) == 1


async def test_terminate_goes_to_the_findings_own_workspace(bot: Bot, dev):
    bot.add(capsule8("c8-dev", "Kernel Module Loaded", "i-0devdriver0000001", 4, workspace_id=int(DEV_ID)))
    await bot.webhook()
    await bot.settle()
    [message] = bot.slack.messages("C0DEVSEC")
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == "esm.terminate_cluster")
    response_url = bot.slack.new_response_url("C0DEVSEC", message["ts"])
    body = block_actions_body(action_id="esm.terminate_cluster", value=button["value"], user_id=RESPONDER,
                              channel_id="C0DEVSEC", message=message, response_url=response_url)
    assert (await bot.slack_request(body))[0] == 200
    [answer] = await bot.answers(response_url)
    assert "terminated" in answer["text"].lower()
    assert len(dev.calls_to("/api/2.1/clusters/delete")) == 1
    assert bot.dbx.calls_to("/api/2.1/clusters/delete") == []
