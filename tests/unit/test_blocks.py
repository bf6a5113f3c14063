"""Block Kit rendering of findings: whole messages written out by hand, escaping, limits, buttons."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from bot.core.queries import sql_literal
from bot.render.blocks import (
    DETAILS_HINT,
    Links,
    clip,
    cloud_pointer,
    cluster_events_url,
    cluster_url,
    digest_message,
    escape,
    finding_details,
    finding_message,
    limit_violations,
    reply_message,
    reproduce_sql,
    slack_len,
)
from bot.core.events import AuditRow
from bot.core.findings import (
    UNCATEGORISED,
    ClusterContext,
    Context,
    Detection,
    Finding,
    FindingStatus,
    NotebookCommand,
    Severity,
)
from bot.core.actions import ALWAYS, ActionSpec, Confirm, Needs
from bot.core.ids import ActionId, ButtonValue


def terminate_confirm(finding: Finding) -> Confirm:
    cluster = finding.context.cluster
    cluster_id = cluster.cluster_id if cluster is not None else finding.first_event.cluster_id
    named = f"{cluster.name} ({cluster_id})" if cluster is not None and cluster.name else cluster_id
    return Confirm(
        "Terminate this cluster?",
        f"Terminate cluster {named}? Running notebooks and jobs on it stop. It can be started again later.",
        confirm="Terminate",
        danger=True,
    )


# The renderer's own test fixtures: buttons mirror the real actions in handlers/actions/, but are
# written out here so these tests pin the rendering, not whichever actions happen to exist.
SPECS = (
    ActionSpec("esm.acknowledge", "Acknowledge", order=10, style="primary"),
    ActionSpec("esm.mark_benign", "Mark benign", order=20),
    ActionSpec(
        "esm.terminate_cluster", "Terminate cluster", order=30, style="danger", needs=frozenset({Needs.CLUSTER}),
        destructive=True, confirm=terminate_confirm,
    ),
    ActionSpec(
        "esm.recent_on_host", "Recent on this host", order=40, needs=frozenset({Needs.INSTANCE}),
        offered_while=ALWAYS, responders_only=False,
    ),
)

T0 = datetime(2024, 5, 1, 12, 0, 3, tzinfo=timezone.utc)
WORKSPACE = Links("https://dbc-123.cloud.databricks.com")
KMOD = Detection(
    name="Kernel Module Loaded",
    category="Kernel Related Events",
    severity=Severity.HIGH,
    description="A kernel module was loaded.",
    guidance="Find who loaded the module & why; terminate the cluster if nobody did.",
)


def kmod_finding() -> Finding:
    row = AuditRow(
        event_id="evt-1",
        event_time=T0,
        workspace_id="1234567890",
        service_name="capsule8-alerts-dataplane",
        action_name="Kernel Module Loaded",
        request_params={
            "instanceId": "i-0abc123def4567890",
            "containerId": "3f2a9c",
            "containerName": "spark-driver",
            "imageName": "databricksruntime/standard:14.3",
            "processLineage": "bash > python3 > insmod",
            "commandLine": "insmod /tmp/rootkit.ko",
            "filePath": "/tmp/rootkit.ko",
        },
    )
    cluster = ClusterContext(
        cluster_id="0501-120000-abcd1234",
        name="etl-prod",
        owner="alice@example.com",
        single_user="alice@example.com",
        access_mode="SINGLE_USER",
        policy_id="POL123",
        state="RUNNING",
        runtime="14.3.x-scala2.12",
        node_role="driver",
    )
    commands = (
        NotebookCommand(T0 - timedelta(minutes=12), "alice@example.com", "123", "display(df)"),
        NotebookCommand(T0 - timedelta(minutes=5), "alice@example.com", "123", "%sh insmod /tmp/rootkit.ko"),
    )
    return Finding(
        key="k1",
        detection=KMOD,
        first_event=row,
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=4),
        count=3,
        hosts=frozenset({"i-0abc123def4567890", "i-0abc123def4567891"}),
        context=Context(cluster=cluster, commands=commands),
    )


KMOD_VALUE = '{"v":1,"finding_key":"k1","instance_id":"i-0abc123def4567890","cluster_id":"0501-120000-abcd1234"}'


def md(text: str) -> dict:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def pt(text: str) -> dict:
    return {"type": "plain_text", "text": text}


KMOD_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": ":red_circle: Kernel Module Loaded", "emoji": True}},
    {
        "type": "section",
        "text": md("*Seen 3× on 2 hosts since 2024-05-01 12:00:03 UTC*"),
        "fields": [
            md("*Category*\nKernel Related Events"),
            md("*Severity*\n:red_circle: high"),
            md("*Workspace*\n`1234567890`"),
            md("*Instance*\n`i-0abc123def4567890`"),
            md("*First seen*\n2024-05-01 12:00:03 UTC"),
        ],
    },
    {
        "type": "section",
        "text": md("*Cluster* `etl-prod` (`0501-120000-abcd1234`)"),
        "fields": [
            md("*Owner*\n`alice@example.com`"),
            md("*Single user*\n`alice@example.com`"),
            md("*Access mode*\n`SINGLE_USER`"),
            md("*Policy*\n`POL123`"),
            md("*State*\n`RUNNING`"),
            md("*Runtime*\n`14.3.x-scala2.12`"),
            md("*Role of this instance*\n`driver`"),
            md("*Looked up in*\n`api`"),
        ],
    },
    {
        "type": "section",
        "text": md(
            "*Origin:* container\n"
            "*Container:* id `3f2a9c` · name `spark-driver` · image `databricksruntime/standard:14.3`\n"
            "*Process chain:* `bash → python3 → insmod`\n"
            "*File:* `/tmp/rootkit.ko`\n"
            "*Command line:*\n```insmod /tmp/rootkit.ko```"
        ),
    },
    {"type": "section", "text": md("*Commands on this cluster in the 30 minutes before*")},
    {
        "type": "section",
        "text": md("2024-05-01 11:55:03 UTC · `alice@example.com` · notebook `123`\n```%sh insmod /tmp/rootkit.ko```"),
    },
    {"type": "section", "text": md("2024-05-01 11:48:03 UTC · `alice@example.com` · notebook `123`\n```display(df)```")},
    {
        "type": "section",
        "text": md("*What to do:* Find who loaded the module &amp; why; terminate the cluster if nobody did."),
    },
    {
        "type": "section",
        "text": md(
            "*Reproduce in Databricks SQL*\n```"
            "SELECT event_time, event_id, workspace_id, request_params, response\n"
            "FROM system.access.audit\n"
            "WHERE service_name = 'capsule8-alerts-dataplane'\n"
            "  AND action_name = 'Kernel Module Loaded'\n"
            "  AND request_params['instanceId'] = 'i-0abc123def4567890'\n"
            "  AND workspace_id = 1234567890\n"
            "  AND event_date &gt;= DATE'2024-05-01'\n"
            "ORDER BY event_time```"
        ),
    },
    {
        "type": "context",
        "elements": [
            md("<https://dbc-123.cloud.databricks.com/compute/clusters/0501-120000-abcd1234|Cluster page>"),
            md("<https://dbc-123.cloud.databricks.com/compute/clusters/0501-120000-abcd1234/events|Event log>"),
            pt(
                "CloudTrail: eventSource = ec2.amazonaws.com with resources.ARN containing i-0abc123def4567890"
                " · VPC flow logs: the ENI of i-0abc123def4567890"
                " (aws ec2 describe-instances --instance-ids i-0abc123def4567890)"
            ),
        ],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "esm.acknowledge",
                "text": pt("Acknowledge"),
                "value": KMOD_VALUE,
                "style": "primary",
            },
            {"type": "button", "action_id": "esm.mark_benign", "text": pt("Mark benign"), "value": KMOD_VALUE},
            {
                "type": "button",
                "action_id": "esm.terminate_cluster",
                "text": pt("Terminate cluster"),
                "value": KMOD_VALUE,
                "style": "danger",
                "confirm": {
                    "title": pt("Terminate this cluster?"),
                    "text": pt(
                        "Terminate cluster etl-prod (0501-120000-abcd1234)? Running notebooks and jobs on it stop."
                        " It can be started again later."
                    ),
                    "confirm": pt("Terminate"),
                    "deny": pt("Cancel"),
                    "style": "danger",
                },
            },
            {"type": "button", "action_id": "esm.recent_on_host", "text": pt("Recent on this host"), "value": KMOD_VALUE},
        ],
    },
]


def test_container_kernel_module_finding_renders_whole_message():
    text, blocks = finding_message(kmod_finding(), WORKSPACE, actions=SPECS, style="full")

    assert text == "ESM high finding: `Kernel Module Loaded` on `i-0abc123def4567890` (seen 3×)"
    assert blocks == KMOD_BLOCKS
    assert limit_violations(blocks, text) == []


KMOD_COMPACT_BLOCKS = [
    KMOD_BLOCKS[0],
    {"type": "section", "text": md(
        ":red_circle: *high* · Kernel Related Events · on cluster `etl-prod` · owner `alice@example.com`"
        " · workspace `1234567890` · seen 3× on 2 hosts since 2024-05-01 12:00:03 UTC")},
    {"type": "section", "text": md("*Command line:* `insmod /tmp/rootkit.ko`")},
    {"type": "context", "elements": [pt("Process chain, notebook commands, guidance and SQL to reproduce: in the thread")]},
    KMOD_BLOCKS[-1],
]

KMOD_DETAILS_BLOCKS = [
    {
        "type": "section",
        "text": md("*Details*"),
        "fields": KMOD_BLOCKS[1]["fields"],
    },
    *KMOD_BLOCKS[2:-1],  # cluster, lineage, commands, guidance, SQL, links: as in the full message
]


def test_compact_parent_is_a_few_lines_and_the_details_reply_has_the_rest():
    finding = kmod_finding()
    text, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert text == "ESM high finding: `Kernel Module Loaded` on `i-0abc123def4567890` (seen 3×)"
    assert blocks == KMOD_COMPACT_BLOCKS
    assert limit_violations(blocks, text) == []

    text, blocks = finding_details(finding, WORKSPACE)
    assert text == "Details: `Kernel Module Loaded` on `i-0abc123def4567890`"
    assert blocks == KMOD_DETAILS_BLOCKS
    assert limit_violations(blocks, text) == []


def test_without_a_command_line_the_evidence_is_the_last_notebook_command_before_the_event():
    finding = kmod_finding()
    params = {k: v for k, v in finding.first_event.request_params.items() if k != "commandLine"}
    later = NotebookCommand(T0 + timedelta(minutes=1), "bob@example.com", "9", "print('after the event')")
    finding = replace(finding, first_event=replace(finding.first_event, request_params=params),
                      context=replace(finding.context, commands=(*finding.context.commands, later)))
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert blocks[2] == {"type": "section", "text": md(
        "*Last notebook command* (2024-05-01 11:55:03 UTC by `alice@example.com`): `%sh insmod /tmp/rootkit.ko`")}


def test_an_acknowledged_parent_keeps_the_compact_shape():
    finding = replace(kmod_finding(), status=FindingStatus.ACKNOWLEDGED, status_by="U123ABC", count=40,
                      hosts=frozenset({"a", "b", "c"}))
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "actions"]
    assert "seen 40× on 3 hosts" in blocks[1]["text"]["text"]
    assert blocks[3]["elements"][0] == md(":eyes: *Acknowledged* by <@U123ABC>")


UNKNOWN = Detection(
    name="Memory Marked Executable",
    category=UNCATEGORISED,
    severity=Severity.MEDIUM,
    description="Not in the catalogue.",
    guidance="Unknown detection: triage it by hand.",
)


def host_finding() -> Finding:
    row = AuditRow(
        event_id="evt-9",
        event_time=T0,
        workspace_id="987",
        service_name="capsule8-alerts-dataplane",
        action_name="Memory Marked Executable",
        request_params={
            "instanceId": "i-0fff000011112222a",
            "origin": "host",
            "processLineage": '[{"name": "systemd", "pid": 1}, {"name": "bash", "pid": 4242}]',
            "user": "root",
        },
    )
    return Finding(
        key="k2",
        detection=UNKNOWN,
        first_event=row,
        first_seen=T0,
        last_seen=T0,
        context=Context(problems=("cluster lookup failed: timeout",)),
    )


K2_VALUE = '{"v":1,"finding_key":"k2","instance_id":"i-0fff000011112222a"}'

HOST_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": ":large_orange_circle: Memory Marked Executable", "emoji": True}},
    {
        "type": "section",
        "fields": [
            md("*Category*\nUncategorised"),
            md("*Severity*\n:large_orange_circle: medium"),
            md("*Workspace*\n`987`"),
            md("*Instance*\n`i-0fff000011112222a`"),
            md("*First seen*\n2024-05-01 12:00:03 UTC"),
        ],
    },
    {"type": "section", "text": pt("Cluster: unknown — cluster lookup failed: timeout")},
    {"type": "section", "text": md("*Origin:* host\n*Process chain:* `systemd (1) → bash (4242)`\n*Process user:* `root`")},
    {"type": "section", "text": pt("Commands on this cluster in the 30 minutes before: not looked up, the cluster is unknown")},
    {"type": "section", "text": md("*What to do:* Unknown detection: triage it by hand.")},
    {
        "type": "section",
        "text": md(
            "*Raw event*\n```{\n"
            ' "action_name": "Memory Marked Executable",\n'
            ' "event_id": "evt-9",\n'
            ' "event_time": "2024-05-01T12:00:03+00:00",\n'
            ' "request_params": {\n'
            '  "instanceId": "i-0fff000011112222a",\n'
            '  "origin": "host",\n'
            '  "processLineage": "[{\\"name\\": \\"systemd\\", \\"pid\\": 1}, {\\"name\\": \\"bash\\", \\"pid\\": 4242}]",\n'
            '  "user": "root"\n'
            " },\n"
            ' "response": {},\n'
            ' "service_name": "capsule8-alerts-dataplane",\n'
            ' "source_ip_address": null,\n'
            ' "user_identity": {},\n'
            ' "workspace_id": "987"\n'
            "}```"
        ),
    },
    {
        "type": "section",
        "text": md(
            "*Reproduce in Databricks SQL*\n```"
            "SELECT event_time, event_id, workspace_id, request_params, response\n"
            "FROM system.access.audit\n"
            "WHERE service_name = 'capsule8-alerts-dataplane'\n"
            "  AND action_name = 'Memory Marked Executable'\n"
            "  AND request_params['instanceId'] = 'i-0fff000011112222a'\n"
            "  AND workspace_id = 987\n"
            "  AND event_date &gt;= DATE'2024-05-01'\n"
            "ORDER BY event_time```"
        ),
    },
    {
        "type": "context",
        "elements": [
            pt(
                "CloudTrail: eventSource = ec2.amazonaws.com with resources.ARN containing i-0fff000011112222a"
                " · VPC flow logs: the ENI of i-0fff000011112222a"
                " (aws ec2 describe-instances --instance-ids i-0fff000011112222a)"
            )
        ],
    },
    {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "esm.acknowledge", "text": pt("Acknowledge"), "value": K2_VALUE, "style": "primary"},
            {"type": "button", "action_id": "esm.mark_benign", "text": pt("Mark benign"), "value": K2_VALUE},
            {"type": "button", "action_id": "esm.recent_on_host", "text": pt("Recent on this host"), "value": K2_VALUE},
        ],
    },
]


def test_host_origin_unknown_detection_without_cluster_renders_whole_message():
    # workspace_url None: no cluster links, but the AWS pointer still applies to the instance
    text, blocks = finding_message(host_finding(), Links(None), actions=SPECS, style="full")

    assert text == "ESM medium finding: `Memory Marked Executable` on `i-0fff000011112222a`"
    assert blocks == HOST_BLOCKS
    assert limit_violations(blocks, text) == []


def test_a_host_event_shows_no_container_id():
    finding = host_finding()
    params = {**finding.first_event.request_params, "containerId": "0000000000000000", "containerName": "host"}
    finding = replace(finding, first_event=replace(finding.first_event, request_params=params),
                      detection=KMOD)  # a known detection: no raw event either
    for _, blocks in (finding_details(finding, WORKSPACE), finding_message(finding, WORKSPACE, SPECS, "full")):
        lineage = next(b["text"]["text"] for b in blocks if b.get("text", {}).get("text", "").startswith("*Origin:*"))
        assert lineage.startswith("*Origin:* host\n*Container:* name `host`\n"), lineage
        assert "0000000000000000" not in json.dumps(blocks)


def test_reply_message_is_short_and_complete():
    row = replace(kmod_finding().first_event, event_id="evt-2", event_time=T0 + timedelta(minutes=3))

    text, blocks = reply_message(row, kmod_finding())

    assert text == "Again: `Kernel Module Loaded` on `i-0abc123def4567890`"
    assert blocks == [
        {
            "type": "section",
            "text": md(
                "*Again* at 2024-05-01 12:03:03 UTC on `i-0abc123def4567890` · origin: container\n"
                "*File:* `/tmp/rootkit.ko`\n"
                "*Command line:*\n```insmod /tmp/rootkit.ko```"
            ),
        },
        {"type": "context", "elements": [md("event `evt-2`")]},
    ]


def test_digest_message_counts_the_rest():
    text, blocks = digest_message(kmod_finding(), 57, 3)

    assert text == "+57 more on 3 hosts (see `/esm recent instance=i-0abc123def4567890`)"
    assert blocks == [{"type": "context", "elements": [md(text)]}]
    assert digest_message(host_finding(), 1, 1)[0] == (
        "+1 more on 1 host (see `/esm recent instance=i-0fff000011112222a`)"
    )


# --- markup never leaks --------------------------------------------------------------------------

EVIL = "<!channel> <@U1> & *bold* _it_ ~gone~ `tick` ```fence``` @here https://evil.example\n> quoted <http://x|y>"


def evil_finding(status: FindingStatus = FindingStatus.OPEN) -> Finding:
    params = {key: f"{key} {EVIL}" for key in (
        "instanceId", "clusterId", "containerId", "containerName", "imageName", "processLineage",
        "commandLine", "filePath", "user", "origin",
    )}
    row = AuditRow(EVIL, T0, EVIL, "capsule8-alerts-dataplane", EVIL, params)
    cluster = ClusterContext(*(EVIL for _ in range(9)), source=EVIL)
    commands = tuple(NotebookCommand(T0 - timedelta(minutes=i), EVIL, EVIL, EVIL, EVIL) for i in range(3))
    return Finding(
        key=EVIL,
        detection=replace(KMOD, name=EVIL),
        first_event=row,
        first_seen=T0,
        last_seen=T0,
        count=2,
        hosts=frozenset({EVIL}),
        context=Context(cluster=cluster, commands=commands, problems=(EVIL, f"notebook commands: {EVIL}")),
        status=status,
        status_by=EVIL,
        status_note=EVIL,
        suppressed_count=4,
    )


def text_objects(node):
    """Every text object in a block tree, with its type."""
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node
        for value in node.values():
            yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


LINK_WE_MADE = re.compile(r"<https://dbc-123\.cloud\.databricks\.com/[^\s<>|]*\|[A-Za-z ]+>")


def raw_control_chars(text: str) -> str:
    """What is left of `&`, `<`, `>` once entities and the links we generate are removed."""
    rest = re.sub(r"&(amp|lt|gt);", "", LINK_WE_MADE.sub("", text))
    return "".join(c for c in rest if c in "&<>")


def outside_code(text: str) -> str:
    """The mrkdwn Slack would format: no code, and no URL inside one of our links."""
    text = LINK_WE_MADE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def assert_inert(text: str, kind: str) -> None:
    assert raw_control_chars(text) == "", text
    if kind == "mrkdwn":
        visible = outside_code(text)
        for markup in ("*bold*", "_it_", "~gone~", "@here", "https://evil", "tick", "fence"):
            assert markup not in visible, (markup, text)


@pytest.mark.parametrize("status", list(FindingStatus))
@pytest.mark.parametrize("message", ["compact", "full", "details"])
def test_markup_in_every_field_stays_inert(status, message):
    if message == "details":
        text, blocks = finding_details(evil_finding(status), WORKSPACE)
    else:
        text, blocks = finding_message(evil_finding(status), WORKSPACE, actions=SPECS, style=message)

    assert_inert(text, "mrkdwn")
    objects = list(text_objects(blocks))
    assert objects
    for obj in objects:
        assert_inert(obj["text"], obj["type"])
        if obj["type"] == "mrkdwn":
            assert obj["verbatim"] is True
    assert limit_violations(blocks, text) == []


def test_markup_in_replies_and_digests_stays_inert():
    finding = evil_finding()
    for text, blocks in (reply_message(finding.first_event, finding), digest_message(finding, 5, 2)):
        assert_inert(text, "mrkdwn")
        for obj in text_objects(blocks):
            assert_inert(obj["text"], obj["type"])


def test_catalogue_guidance_keeps_its_formatting_but_not_mentions():
    finding = replace(kmod_finding(), detection=replace(KMOD, guidance="*Check* <!channel> & <@U1>"))
    _, blocks = finding_details(finding, WORKSPACE)
    guidance = next(b for b in blocks if b.get("text", {}).get("text", "").startswith("*What to do:*"))
    assert guidance["text"]["text"] == "*What to do:* *Check* &lt;!channel&gt; &amp; &lt;@U1&gt;"


# --- huge inputs ---------------------------------------------------------------------------------


def huge_finding() -> Finding:
    base = kmod_finding()
    params = dict(base.first_event.request_params)
    params["commandLine"] = "x" * 10_000
    params["processLineage"] = " > ".join(f"proc{i}" for i in range(100))
    params["filePath"] = "/" + "&" * 5_000
    commands = tuple(
        NotebookCommand(T0 - timedelta(seconds=i), "u" * 3000, "n" * 3000, "<" * 10_000) for i in range(500)
    )
    cluster = ClusterContext(*("c" * 5000 for _ in range(9)))
    return replace(
        base,
        key="k" * 1000,
        detection=replace(KMOD, name="N" * 5000, guidance="&" * 10_000, category="C" * 5000),
        first_event=replace(base.first_event, request_params=params, event_id="e" * 5000),
        context=Context(cluster=cluster, commands=commands, problems=tuple("p" * 5000 for _ in range(50))),
        status_note="r" * 10_000,
        suppressed_count=10**9,
        count=10**12,
    )


def test_huge_inputs_stay_within_slack_limits():
    text, blocks = finding_message(huge_finding(), WORKSPACE, actions=SPECS)
    assert limit_violations(blocks, text) == []
    assert len(blocks) <= 6

    text, blocks = finding_details(huge_finding(), WORKSPACE)
    assert limit_violations(blocks, text) == []
    _, full = finding_message(huge_finding(), WORKSPACE, actions=SPECS, style="full")
    assert limit_violations(full, text) == []
    blocks = full
    header = blocks[0]["text"]["text"]
    assert slack_len(header) <= 150 and header.endswith("…")
    titles = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert "*Commands on this cluster in the 30 minutes before* (5 newest of 500)" in titles
    assert sum(t.count("```&lt;&lt;") for t in titles) == 5
    lineage = next(t for t in titles if t.startswith("*Origin:*"))
    assert "`proc0 → proc1 → proc2 → …91 more… → proc94" in lineage
    assert "proc99`" in lineage


def test_huge_inputs_in_every_status_and_thread_message_stay_within_limits():
    finding = huge_finding()
    for status in FindingStatus:
        changed = replace(finding, status=status, status_by="U" * 5000)
        for style in ("compact", "full"):
            text, blocks = finding_message(changed, Links(None), actions=SPECS, style=style)
            assert limit_violations(blocks, text) == []
    for text, blocks in (reply_message(finding.first_event, finding), digest_message(finding, 10**9, 10**9)):
        assert limit_violations(blocks, text) == []


def test_overlong_ids_drop_their_buttons_rather_than_point_elsewhere():
    finding = kmod_finding()
    long_cluster = replace(finding.context.cluster, cluster_id="c" * 500)
    finding = replace(
        finding,
        first_event=replace(finding.first_event, request_params={"instanceId": "i" * 500}),
        context=replace(finding.context, cluster=long_cluster),
    )
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    actions = blocks[-1]
    assert [e["action_id"] for e in actions["elements"]] == ["esm.acknowledge", "esm.mark_benign"]
    assert ButtonValue.from_json(actions["elements"][0]["value"]) == ButtonValue("k1", None, None)


def test_a_key_that_cannot_fit_a_button_leaves_a_note_instead_of_buttons():
    _, blocks = finding_message(replace(kmod_finding(), key="k" * 3000), WORKSPACE, actions=SPECS)
    assert blocks[-1] == {
        "type": "context",
        "elements": [md("Buttons unavailable: this finding's key does not fit a button; use `/esm`.")],
    }


# --- status and buttons --------------------------------------------------------------------------


def actions_of(blocks):
    found = [b for b in blocks if b["type"] == "actions"]
    return [e["action_id"] for e in found[0]["elements"]] if found else []


def last_context_before_actions(blocks):
    """The status line of a compact parent, without its pointer to the details reply."""
    elements = [b for b in blocks if b["type"] == "context"][-1]["elements"]
    assert elements[-1] == pt(DETAILS_HINT)
    return elements[:-1]


def test_acknowledged_by_a_slack_user_is_a_mention_and_hides_the_decision_buttons():
    finding = replace(kmod_finding(), status=FindingStatus.ACKNOWLEDGED, status_by="U123ABC")
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert last_context_before_actions(blocks) == [md(":eyes: *Acknowledged* by <@U123ABC>")]
    assert actions_of(blocks) == ["esm.recent_on_host"]


def test_marked_benign_shows_the_reason():
    finding = replace(kmod_finding(), status=FindingStatus.BENIGN, status_by="W0ABC", status_note="private CA install")
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert last_context_before_actions(blocks) == [
        md(":white_check_mark: *Marked benign* by <@W0ABC>"),
        pt("Reason: private CA install"),
    ]


@pytest.mark.parametrize("by", ["alice", "U1", "u123abc", "U123\n", "<@U123>", "U12 3", "X123"])
def test_status_by_that_is_not_a_slack_user_id_is_inert_text(by):
    finding = replace(kmod_finding(), status=FindingStatus.TERMINATED, status_by=by)
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    line = last_context_before_actions(blocks)[0]["text"]
    assert line.startswith(":octagonal_sign: *Cluster terminated* by `")
    assert "<@" not in line


def test_status_without_actor_or_note():
    finding = replace(kmod_finding(), status=FindingStatus.TERMINATED)
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert last_context_before_actions(blocks) == [md(":octagonal_sign: *Cluster terminated*")]


def test_open_findings_have_no_status_line_and_suppressed_count_shows():
    _, blocks = finding_message(replace(kmod_finding(), suppressed_count=4), WORKSPACE, actions=SPECS)
    assert last_context_before_actions(blocks) == [md("4 similar events hidden by benign suppressions")]
    assert not any("Acknowledged" in str(b) for b in blocks)


def test_terminate_button_absent_without_a_cluster():
    _, blocks = finding_message(host_finding(), WORKSPACE, actions=SPECS)
    assert actions_of(blocks) == ["esm.acknowledge", "esm.mark_benign", "esm.recent_on_host"]


def test_terminate_button_uses_a_cluster_id_from_the_event_when_enrichment_found_none():
    finding = host_finding()
    params = {**finding.first_event.request_params, "clusterId": "0501-xyz"}
    finding = replace(finding, first_event=replace(finding.first_event, request_params=params))
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    terminate = next(e for e in blocks[-1]["elements"] if e["action_id"] == ActionId.TERMINATE_CLUSTER)
    assert terminate["confirm"]["text"] == pt(
        "Terminate cluster 0501-xyz? Running notebooks and jobs on it stop. It can be started again later."
    )
    assert ButtonValue.from_json(terminate["value"]).cluster_id == "0501-xyz"


def test_buttons_follow_each_specs_order_not_the_order_they_are_given_in():
    _, blocks = finding_message(kmod_finding(), WORKSPACE, actions=tuple(reversed(SPECS)))
    assert blocks == KMOD_COMPACT_BLOCKS


def test_without_specs_a_finding_has_no_buttons():
    _, blocks = finding_message(kmod_finding(), WORKSPACE)
    assert blocks == KMOD_COMPACT_BLOCKS[:-1]
    _, blocks = finding_message(kmod_finding(), WORKSPACE, style="full")
    assert blocks == KMOD_BLOCKS[:-1]


def test_no_actions_block_when_closed_and_no_instance():
    finding = host_finding()
    finding = replace(finding, status=FindingStatus.BENIGN, first_event=replace(finding.first_event, request_params={}))
    _, blocks = finding_message(finding, WORKSPACE, actions=SPECS)
    assert actions_of(blocks) == []
    assert limit_violations(blocks) == []


def test_no_commands_on_a_known_cluster_says_none_found_or_why():
    finding = kmod_finding()
    empty = replace(finding, context=replace(finding.context, commands=()))
    failed = replace(empty, context=replace(empty.context, problems=("notebook command lookup failed: 503",)))
    expected = "Commands on this cluster in the 30 minutes before: "
    assert {"type": "section", "text": pt(expected + "none found")} in finding_details(empty, WORKSPACE)[1]
    blocks = finding_details(failed, WORKSPACE)[1]
    assert {"type": "section", "text": pt(expected + "notebook command lookup failed: 503")} in blocks


# --- text helpers --------------------------------------------------------------------------------


def test_escape_neutralises_mentions_and_links():
    assert escape("<!channel> <@U1> a&b <http://x|y>") == "&lt;!channel&gt; &lt;@U1&gt; a&amp;b &lt;http://x|y&gt;"


def test_clip_keeps_short_text_and_marks_cuts():
    assert clip("hello", 5) == "hello"
    assert clip("hello!", 5) == "hell…"
    assert clip("hello", 0) == ""
    assert clip("hello", 1) == "…"


@pytest.mark.parametrize("limit", range(1, 14))
def test_clip_never_leaves_a_dangling_entity(limit):
    clipped = clip(escape("a&b<c>d&e"), limit)
    assert slack_len(clipped) <= limit
    body = clipped.removesuffix("…")
    assert re.sub(r"&(amp|lt|gt);", "", body).count("&") == 0


def test_clip_never_splits_a_surrogate_pair():
    assert clip("ab😀cd", 4) == "ab…"  # the emoji is two UTF-16 units and does not fit
    assert clip("ab😀cd", 5) == "ab😀…"
    paired = "ab\ud83d\ude00cd"  # a pair kept as two code points (surrogatepass decoding)
    assert clip(paired, 4) == "ab…"


def test_sql_literals_are_escaped_for_databricks():
    assert sql_literal("O'Connell") == "'O\\'Connell'"
    assert sql_literal("a\\b") == "'a\\\\b'"
    assert sql_literal("$widget\n") == "'\\$widget\\n'"


def test_reproduce_sql_without_instance_or_numeric_workspace():
    sql = reproduce_sql("Kernel' OR 1=1 --", None, date(2024, 5, 1), "not-a-number")
    assert sql == (
        "SELECT event_time, event_id, workspace_id, request_params, response\n"
        "FROM system.access.audit\n"
        "WHERE service_name = 'capsule8-alerts-dataplane'\n"
        "  AND action_name = 'Kernel\\' OR 1=1 --'\n"
        "  AND event_date >= DATE'2024-05-01'\n"
        "ORDER BY event_time"
    )


def test_links():
    assert cluster_url(WORKSPACE, "0501/x y") == "https://dbc-123.cloud.databricks.com/compute/clusters/0501%2Fx%20y"
    assert cluster_events_url(Links("https://h.example/"), "c1") == "https://h.example/compute/clusters/c1/events"
    assert cluster_url(Links(None), "c1") is None
    assert cluster_url(WORKSPACE, None) is None
    for unsafe in ("ftp://h", "https://h|evil", "https://h>x", "https://h/?o=1", "javascript:alert(1)"):
        assert cluster_url(Links(unsafe), "c1") is None
    assert cloud_pointer("i-0abc1234") is not None
    assert cloud_pointer("vm-azure-1") is None
    assert cloud_pointer(None) is None


# --- limits checker ------------------------------------------------------------------------------


def test_limit_violations_finds_each_kind_of_breach():
    long_confirm = {"title": pt("t" * 101), "text": pt("x"), "confirm": pt("ok"), "deny": pt("no")}
    blocks = [
        {"type": "header", "text": md("*not plain*")},
        {"type": "header", "text": pt("h" * 151)},
        {"type": "section", "text": md("s" * 3001)},
        {"type": "section", "fields": [md("f")] * 11},
        {"type": "section", "fields": [md("f" * 2001)]},
        {"type": "section"},
        {"type": "context", "elements": [md("c")] * 11},
        {"type": "context", "elements": [md("")]},
        {"type": "actions", "elements": [
            {"type": "button", "action_id": "a", "text": pt("b" * 76), "value": "v" * 2001},
            {"type": "button", "action_id": "a", "text": pt("ok"), "value": "v", "confirm": long_confirm},
        ]},
    ] + [{"type": "divider"}] * 42
    problems = limit_violations(blocks, "x" * 3001)
    expected_fragments = [
        "51 blocks", "fallback text", "block 0 (header) text: text type 'mrkdwn'", "block 1 (header) text: text is 151",
        "block 2 (section) text: text is 3001", "block 3 (section): 11 fields", "block 4 (section) field 0",
        "block 5 (section): needs text or fields", "block 6 (context): 11 elements", "block 7 (context) element 0: empty",
        "button 0 text: text is 76", "button 0: value is 2001", "button 1 confirm title", "action_id 'a' is used more",
    ]
    for fragment in expected_fragments:
        assert any(fragment in p for p in problems), (fragment, problems)


# --- button values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ButtonValue("k1", "i-0abc", "0501-x"),
        ButtonValue("k1", None, None),
        ButtonValue("ключ \"quoted\" \\ 😀", "i-1", None),
        ButtonValue("k", None, "c" * 150),
    ],
)
def test_button_value_round_trip(value):
    text = value.to_json()
    assert text.isascii() and len(text) <= 2000
    assert ButtonValue.from_json(text) == value


def test_button_value_is_compact_json():
    assert ButtonValue("k1", "i-1", None).to_json() == '{"v":1,"finding_key":"k1","instance_id":"i-1"}'


def test_button_value_drops_overlong_ids_and_refuses_overlong_keys():
    assert ButtonValue("k", "i" * 500, "c" * 500).to_json() == '{"v":1,"finding_key":"k"}'
    with pytest.raises(ValueError, match="2000"):
        ButtonValue("k" * 2000, None, None).to_json()
    with pytest.raises(ValueError, match="non-empty"):
        ButtonValue("", None, None).to_json()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "must be text"),
        (b'{"v":1,"finding_key":"k"}', "must be text"),
        ("", "not JSON"),
        ("not json", "not JSON"),
        ("[" * 1999, "not JSON"),
        ("[]", "JSON object"),
        ("null", "JSON object"),
        ('"k"', "JSON object"),
        ('{"finding_key":"k"}', "no version"),
        ('{"v":"1","finding_key":"k"}', "integer"),
        ('{"v":true,"finding_key":"k"}', "integer"),
        ('{"v":1.0,"finding_key":"k"}', "integer"),
        ('{"v":2,"finding_key":"k"}', "unknown button value version 2"),
        ('{"v":1}', "no 'finding_key'"),
        ('{"v":1,"finding_key":5}', "finding_key"),
        ('{"v":1,"finding_key":""}', "finding_key"),
        ('{"v":1,"finding_key":"k","cluster_id":7}', "cluster_id"),
        ('{"v":1,"finding_key":"k","instance_id":""}', "instance_id"),
        ('{"v":1,"finding_key":"k","instance_id":["i-1"]}', "instance_id"),
        ('{"v":1,"finding_key":"k","extra":1}', "unknown keys"),
        ('{"v":1,"finding_key":"' + "a" * 2000 + '"}', "at most 2000"),
    ],
)
def test_malformed_button_values_are_rejected_clearly(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ButtonValue.from_json(text)


def test_action_ids_are_slack_action_ids():
    assert [a.value for a in ActionId] == [
        "esm.acknowledge", "esm.mark_benign", "esm.terminate_cluster", "esm.recent_on_host",
    ]
    assert json.dumps({"action_id": ActionId.ACKNOWLEDGE}) == '{"action_id": "esm.acknowledge"}'
