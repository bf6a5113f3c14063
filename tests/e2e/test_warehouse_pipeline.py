"""The alert pipeline end to end with ESM_AUDIT_SOURCE=databricks: the real bot reads the audit
and system tables through databricks-sql-connector over Thrift/HTTP from the local Thrift SQL
emulator (DuckDB behind it), and posts the finding exactly as it does with the embedded store."""
from __future__ import annotations


from emulators.thrift_sql import ThriftSQLEmulator
from tests.e2e.conftest import Bot, capsule8, notebook_command

DS_CLUSTER = "0101-000000-ds0001"


async def test_a_webhook_posts_the_finding_read_from_the_warehouse(warehouse_bot: Bot, warehouse: ThriftSQLEmulator):
    warehouse_bot.add(
        notebook_command("nb-1", DS_CLUSTER, 12, "dana@example.com", "%sh sudo insmod ./helper.ko"),
        capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 10,
                 containerId="8c1f5e0a9b7d", processLineage="python3(1) > bash(2) > insmod(3)",
                 commandLine="insmod ./helper.ko"),
    )
    status, body = await warehouse_bot.webhook()
    assert status == 202 and body["accepted"] is True
    await warehouse_bot.settle()

    [finding] = warehouse_bot.findings()
    text = warehouse_bot.text_of(finding) + warehouse_bot.details(finding)
    assert "Kernel Module Loaded" in text and "Kernel Related Events" in text
    for context in ("data-science-shared", DS_CLUSTER, "dana@example.com", "USER_ISOLATION", "POL123",
                    "driver", "i-0driver000000001", "container", "insmod(3)", "sudo insmod ./helper.ko"):
        assert context in text, context
    assert f"/compute/clusters/{DS_CLUSTER}" in text

    # the rows came from the warehouse, over the protocol, with every value bound
    assert warehouse.statements, "the bot queried the SQL warehouse"
    assert any("system.access.audit" in sql and "capsule8-alerts-dataplane" in params.values()
               for sql, params in warehouse.statements)
    assert any(DS_CLUSTER in params.values() for _, params in warehouse.statements), "notebook commands by cluster"
    for sql, params in warehouse.statements:
        for value in params.values():
            if isinstance(value, str) and len(value) > 3:
                assert value not in sql
    assert warehouse.concurrent_use == []


async def test_a_stopped_warehouse_posts_nothing_and_the_next_webhook_catches_up(warehouse_bot: Bot,
                                                                                warehouse: ThriftSQLEmulator):
    warehouse_bot.add(capsule8("c8-1", "Boot Files Modified", "i-0etl00000000001", 10))
    warehouse.fail_next(1, "[WAREHOUSE_STOPPED] The SQL warehouse is stopped.")
    status, _ = await warehouse_bot.webhook()
    assert status == 202
    await warehouse_bot.settle()
    assert warehouse_bot.findings() == []
    assert await warehouse_bot.healthy()

    await warehouse_bot.webhook()
    await warehouse_bot.settle()
    [finding] = warehouse_bot.findings()
    assert "Boot Files Modified" in warehouse_bot.text_of(finding)


async def test_many_new_findings_on_one_cluster_cost_one_notebook_command_query(warehouse_bot: Bot,
                                                                                warehouse: ThriftSQLEmulator):
    detections = ["Kernel Module Loaded", "BPF Program Executed", "Boot Files Modified", "AppArmor Profile Modified",
                  "Suspicious Interactive Shell"]
    warehouse_bot.add(
        notebook_command("nb-early", DS_CLUSTER, 35, "dana@example.com", "%sh echo early"),
        notebook_command("nb-late", DS_CLUSTER, 20, "dana@example.com", "%sh echo late"),
        *(capsule8(f"c8-{n}", name, "i-0driver000000001", 30 - n * 5) for n, name in enumerate(detections)),
    )
    await warehouse_bot.webhook()
    await warehouse_bot.settle()

    assert len(warehouse_bot.findings()) == 5
    command_queries = [sql for sql, _ in warehouse.statements if "runCommand" in sql]
    assert len(command_queries) == 1
    texts = {warehouse_bot.text_of(f).split("\n")[0]: warehouse_bot.details(f) for f in warehouse_bot.findings()}
    # each finding still shows only the commands of the 30 minutes before its own first event
    [first] = [t for h, t in texts.items() if "Kernel Module Loaded" in h]  # 30 min ago
    [last] = [t for h, t in texts.items() if "Suspicious Interactive Shell" in h]  # 10 min ago
    assert "echo early" in first and "echo late" not in first
    assert "echo early" in last and "echo late" in last
