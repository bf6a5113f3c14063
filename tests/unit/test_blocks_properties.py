"""Properties of the renderer: for ANY text in any field it never raises and Slack accepts it."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.events import AuditRow
from bot.core.findings import (
    LINEAGE_KEYS,
    ClusterContext,
    Context,
    Detection,
    Finding,
    FindingStatus,
    UNCATEGORISED,
    NotebookCommand,
    Severity,
)
from bot.core.ids import ButtonValue
from bot.render.blocks import (
    COMPACT_TEXT_LIMIT,
    STYLES,
    Links,
    clip,
    digest_message,
    escape,
    finding_details,
    finding_message,
    limit_violations,
    reply_message,
    slack_len,
)

# Lone surrogates included (exclude_categories=()): text decoded with `surrogatepass` has them.
any_char = st.characters(exclude_categories=())
MARKUP = ["<!channel>", "<@U1>", "&", "&amp", "*bold*", "`", "```", "> ", "\n", "😀", "\ud83d", "<http://x|y>"]
short_text = st.text(any_char, max_size=40)
markup_text = st.lists(st.one_of(st.sampled_from(MARKUP), short_text), max_size=8).map("".join)
# Repeating a short piece makes long inputs cheap to generate (and to shrink).
long_text = st.builds(lambda piece, times: piece * times, st.text(any_char, min_size=1, max_size=6), st.integers(1, 3000))
text = st.one_of(short_text, markup_text, long_text)
maybe_text = st.one_of(st.none(), text)

aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]),
)
moment = st.one_of(aware, st.datetimes())  # naive ones too: rendering must not care

PARAM_KEYS = sorted({k for keys in LINEAGE_KEYS.values() for k in keys} | {"instanceId", "clusterId", "origin"})
params = st.dictionaries(st.sampled_from(PARAM_KEYS), text, max_size=len(PARAM_KEYS))

rows = st.builds(
    AuditRow,
    event_id=text,
    event_time=moment,
    workspace_id=text,
    service_name=text,
    action_name=text,
    request_params=params,
)
detections = st.builds(
    Detection, name=text, category=st.one_of(text, st.just(UNCATEGORISED)), severity=st.sampled_from(Severity), description=text, guidance=text
)
clusters = st.builds(
    ClusterContext,
    cluster_id=text, name=maybe_text, owner=maybe_text, single_user=maybe_text, access_mode=maybe_text,
    policy_id=maybe_text, state=maybe_text, runtime=maybe_text, node_role=maybe_text, source=text,
)
commands = st.builds(NotebookCommand, event_time=moment, user=maybe_text, notebook_id=maybe_text,
                     command_text=maybe_text, status=maybe_text)
contexts = st.builds(
    Context,
    cluster=st.one_of(st.none(), clusters),
    commands=st.lists(commands, max_size=12).map(tuple),
    problems=st.lists(text, max_size=4).map(tuple),
    timing=maybe_text,
)
findings = st.builds(
    Finding,
    key=text,
    detection=detections,
    first_event=rows,
    first_seen=moment,
    last_seen=moment,
    count=st.integers(-3, 10**15),
    hosts=st.frozensets(short_text, max_size=5),
    context=contexts,
    status=st.sampled_from(FindingStatus),
    status_by=st.one_of(maybe_text, st.from_regex(r"[UW][A-Z0-9]{2,40}", fullmatch=True)),
    status_note=maybe_text,
    suppressed_count=st.integers(-3, 10**15),
)
links = st.builds(Links, st.one_of(st.none(), st.just("https://dbc-1.cloud.databricks.com"), text))

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OUR_MARKUP = re.compile(r"<@[UW][A-Z0-9]{2,31}>|<https?://[^\s<>|]*\|[A-Za-z ]+>|&(amp|lt|gt);")


def texts_in(node):
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from texts_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts_in(item)


def assert_no_raw_markup(text_: str, blocks) -> None:
    for rendered in [text_, *texts_in(blocks)]:
        leftover = OUR_MARKUP.sub("", rendered)
        assert not set(leftover) & set("<>&"), rendered


@SETTINGS
@given(findings, links, st.sampled_from(STYLES))
def test_finding_message_never_raises_and_stays_within_limits(finding, links_, style):
    text_, blocks = finding_message(finding, links_, style=style)
    assert limit_violations(blocks, text_) == []
    assert_no_raw_markup(text_, blocks)
    for element in (e for b in blocks if b["type"] == "actions" for e in b["elements"]):
        assert ButtonValue.from_json(element["value"]).finding_key == finding.key


@SETTINGS
@given(findings, links)
def test_a_compact_parent_stays_a_dozen_lines_whatever_the_finding(finding, links_):
    """Header, one summary line, one evidence line, at most a time and a status line, buttons:
    whatever a field holds, the parent never grows into a screenful."""
    _, blocks = finding_message(finding, links_, style="compact")
    assert len(blocks) <= 6, [b["type"] for b in blocks]
    shown = [t for b in blocks if b["type"] != "actions" for t in texts_in(b)]
    assert sum(slack_len(t) for t in shown) <= COMPACT_TEXT_LIMIT
    summary = blocks[1]["text"]["text"]
    assert "\n" not in summary and "```" not in summary, "the summary is one line"


@SETTINGS
@given(findings, links)
def test_the_details_reply_never_raises_and_stays_within_limits(finding, links_):
    text_, blocks = finding_details(finding, links_)
    assert limit_violations(blocks, text_) == []
    assert_no_raw_markup(text_, blocks)
    assert not any(b["type"] == "actions" for b in blocks), "the buttons stay on the parent"


@SETTINGS
@given(rows, findings)
def test_reply_message_never_raises_and_stays_within_limits(row, finding):
    text_, blocks = reply_message(row, finding)
    assert limit_violations(blocks, text_) == []
    assert_no_raw_markup(text_, blocks)


@SETTINGS
@given(findings, st.integers(-10, 10**18), st.integers(-10, 10**18))
def test_digest_message_never_raises_and_stays_within_limits(finding, events, hosts):
    text_, blocks = digest_message(finding, events, hosts)
    assert limit_violations(blocks, text_) == []


@SETTINGS
@given(text, st.integers(0, 400))
def test_clip_fits_and_never_leaves_a_broken_entity(raw, limit):
    clipped = clip(escape(raw), limit)
    assert slack_len(clipped) <= limit
    body = clipped.removesuffix("…")
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", body)
    if slack_len(escape(raw)) <= limit:
        assert clipped == escape(raw)


ids = st.one_of(st.none(), st.text(any_char, min_size=1, max_size=30))


@SETTINGS
@given(st.text(any_char, min_size=1, max_size=200), ids, ids)
def test_button_value_round_trips(key, instance_id, cluster_id):
    value = ButtonValue(key, instance_id, cluster_id)
    encoded = value.to_json()
    assert len(encoded) <= 2000 and encoded.isascii()
    decoded = ButtonValue.from_json(encoded)
    assert decoded == value.compact()  # an id is only ever dropped whole, never altered
    assert decoded.finding_key == key


@SETTINGS
@given(st.text(min_size=1, max_size=200), st.from_regex(r"i-[0-9a-f]{8,17}", fullmatch=True),
       st.from_regex(r"[0-9]{4}-[0-9]{6}-[a-z0-9]{8}", fullmatch=True))
def test_button_value_round_trips_exactly_for_real_ids(key, instance_id, cluster_id):
    value = ButtonValue(key, instance_id, cluster_id)
    assert ButtonValue.from_json(value.to_json()) == value


@SETTINGS
@given(st.one_of(text, st.recursive(st.none() | st.booleans() | st.integers() | text,
                                     lambda kids: st.lists(kids) | st.dictionaries(text, kids), max_leaves=10)
                 .map(json.dumps)))
def test_from_json_accepts_or_raises_value_error_only(raw):
    try:
        ButtonValue.from_json(raw)
    except ValueError:
        pass
