"""/esm recent, all pure: parsing the words and grouping the rows (bot.core.recent), rendering
the answer (bot.render.recent)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.catalogue import load_catalogue
from bot.core.findings import UNCATEGORISED, Severity
from bot.core.recent import (
    DEFAULT_WINDOW,
    RecentArgumentError,
    RecentQuery,
    RecentRow,
    RecentSummary,
    parse_recent,
    summarise,
    window_label,
)
from bot.render.blocks import MAX_BLOCKS, limit_violations
from bot.render.recent import GROUPS_SHOWN, render_recent

CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "rules" / "detections.yml")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def parse(*words: str) -> RecentQuery:
    return parse_recent(list(words), CATALOGUE)


def error_of(*words: str) -> str:
    with pytest.raises(RecentArgumentError) as caught:
        parse(*words)
    return str(caught.value)


# ------------------------------------------------------------------------------------ parsing


def test_no_words_mean_the_last_24_hours_unfiltered():
    query = parse()
    assert query == RecentQuery()
    assert query.window == DEFAULT_WINDOW == timedelta(hours=24)
    assert query.filters() == []


@pytest.mark.parametrize(
    ("word", "window"),
    [("30m", timedelta(minutes=30)), ("6h", timedelta(hours=6)), ("7d", timedelta(days=7)),
     ("30d", timedelta(days=30)), ("90s", timedelta(seconds=90)), ("2H", timedelta(hours=2))],
)
def test_durations(word, window):
    assert parse(word).window == window


@pytest.mark.parametrize("word", ["31d", "721h", "999999d"])
def test_a_duration_past_30_days_is_refused_by_name(word):
    message = error_of(word)
    assert f"`{word}`" in message and "30d" in message


def test_a_zero_duration_is_refused():
    assert "`0h`" in error_of("0h")


def test_each_filter():
    query = parse("6h", "cluster=0101-000000-ds0001", "instance=i-0abc", 'detection=Kernel Module Loaded',
                  "category=kernel", "severity>=high", "workspace=1234567890123456")
    assert query == RecentQuery(
        window=timedelta(hours=6), cluster_id="0101-000000-ds0001", instance_id="i-0abc",
        detection="Kernel Module Loaded", category="Kernel Related Events", severity=Severity.HIGH,
        severity_at_least=True, workspace_id=1234567890123456,
    )
    labels = [label for label, _ in query.filters()]
    assert labels == ["cluster", "instance", "detection", "category", "severity ≥", "workspace"]


def test_filters_may_come_in_any_order_and_the_duration_anywhere():
    assert parse("severity=high", "7d").window == timedelta(days=7)
    query = parse("severity=high", "7d")
    assert (query.severity, query.severity_at_least) == (Severity.HIGH, False)


def test_detection_takes_the_catalogue_spelling_and_keeps_unknown_names_as_given():
    assert parse("detection=kernel   module LOADED").detection == "Kernel Module Loaded"
    assert parse("detection=Memory Marked Executable (new)").detection == "Memory Marked Executable (new)"


@pytest.mark.parametrize(
    ("value", "category"),
    [("kernel", "Kernel Related Events"), ("KERNEL RELATED EVENTS", "Kernel Related Events"),
     ("container", "Container Security"), ("host", "Host Security Changes"),
     ("uncategorised", UNCATEGORISED), ("Other Suspicious Activity", "Other Suspicious Activity")],
)
def test_category_matches_case_insensitively(value, category):
    assert parse(f"category={value}").category == category


def test_an_ambiguous_category_lists_the_matches_and_the_categories():
    message = error_of("category=security")
    assert "`category=security`" in message
    assert "`Container Security`, `Host Security Changes`" in message
    assert "Kernel Related Events" in message and UNCATEGORISED in message


def test_an_unknown_category_lists_the_categories():
    message = error_of("category=network")
    assert "`category=network`" in message and "matches no category" in message
    for category in CATALOGUE.categories():
        assert category in message


def test_severity_aliases_and_case():
    assert parse("severity>=CRITICAL").severity == Severity.CRITICAL
    assert parse("severity=info").severity == Severity.INFO


@pytest.mark.parametrize(
    ("word", "said"),
    [
        ("severity>=extreme", "names no severity"),
        ("severity>high", "neither a duration"),
        ("cluster>=x", "only `severity` takes `>=`"),
        ("colour=red", "`colour` is not a filter"),
        ("cluster=", "no value"),
        ("cluster=a b", "is not an id"),
        ("instance=i-1\x00", "is not an id"),
        ("instance=" + "i" * 201, "is not an id"),
        ("workspace=12ab", "not a workspace id"),
        ("workspace=99999999999999999999", "not a workspace id"),
        ("workspace=-1", "not a workspace id"),
        ("detection=bad\x07bell", "not a detection name"),
        ("yesterday", "neither a duration"),
        ("24", "neither a duration"),
    ],
)
def test_each_bad_word_is_named(word, said):
    message = error_of("6h", word)
    shown = "".join(c if c.isprintable() else "?" for c in word)[:79]
    assert shown in message
    assert said in message


def test_a_repeated_filter_or_duration_is_refused():
    assert "repeats `cluster`" in error_of("cluster=a", "cluster=b")
    assert "repeats `duration`" in error_of("6h", "7d")


def test_error_messages_stay_short_and_keep_backticks_closed():
    message = error_of("`" * 5000)
    assert len(message) < 400
    assert message.startswith("`") and message.count("`") % 2 == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, op, v: f"{k}{op}{v}",
              st.sampled_from(["cluster", "instance", "detection", "category", "severity", "workspace", "host", "x"]),
              st.sampled_from(["=", ">=", "<=", ">"]), st.text(max_size=30)),
    st.from_regex(r"[0-9]{1,8}[smhdSMHDw]", fullmatch=True),
), max_size=6))
def test_parse_recent_raises_only_recent_argument_error(words):
    try:
        query = parse_recent(words, CATALOGUE)
    except RecentArgumentError:
        return
    assert timedelta(0) < query.window <= timedelta(days=30)


# ---------------------------------------------------------------------------------- summarise


def row(detection: str, instance: str | None, events: int = 1, first_min: float = 60, last_min: float = 10,
        workspace: str = "1") -> RecentRow:
    return RecentRow(detection, instance, workspace, events, NOW - timedelta(minutes=first_min),
                     NOW - timedelta(minutes=last_min))


ROWS = [
    row("Kernel Module Loaded", "i-a", 3, 120, 5),
    row("Kernel Module Loaded", "i-b", 2, 90, 30),
    row("Kernel Module Loaded", "i-lonely", 1, 20, 20),
    row("Suspicious Interactive Shell", "i-a", 4, 300, 50),
    row("Memory Marked Executable v9", "i-c", 7, 200, 100),
    row("Heartbeat", "i-a", 50, 600, 1),
]
CLUSTERS = {"i-a": "cl-1", "i-b": "cl-1", "i-c": "cl-2"}


def test_groups_by_detection_and_cluster_or_host_newest_first():
    summary = summarise(ROWS, RecentQuery(), CATALOGUE, CLUSTERS)
    shape = [(g.detection.name, g.cluster_id, g.instance_id, g.events, g.hosts) for g in summary.groups]
    assert shape == [
        ("Kernel Module Loaded", "cl-1", None, 5, 2),
        ("Kernel Module Loaded", None, "i-lonely", 1, 1),
        ("Suspicious Interactive Shell", "cl-1", None, 4, 1),
        ("Memory Marked Executable v9", "cl-2", None, 7, 1),
    ]
    first = summary.groups[0]
    assert (first.first_seen, first.last_seen) == (NOW - timedelta(minutes=120), NOW - timedelta(minutes=5))
    assert summary.events == 17 and summary.hosts == 4
    assert summary.hidden == 50, "heartbeats are counted, not shown"
    assert summary.groups[3].detection.category == UNCATEGORISED


def test_heartbeats_show_when_asked_for_by_name():
    summary = summarise([row("Heartbeat", "i-a", 5)], parse("detection=heartbeat"), CATALOGUE, {})
    assert [g.detection.name for g in summary.groups] == ["Heartbeat"] and summary.hidden == 0


def test_category_severity_and_cluster_filter_in_python():
    names = lambda q: [(g.detection.name, g.cluster_id or g.instance_id) for g in summarise(ROWS, q, CATALOGUE, CLUSTERS).groups]  # noqa: E731
    assert names(parse("category=kernel")) == [("Kernel Module Loaded", "cl-1"), ("Kernel Module Loaded", "i-lonely")]
    assert names(parse("category=uncategorised")) == [("Memory Marked Executable v9", "cl-2")]
    assert names(parse("category=other")) == [("Suspicious Interactive Shell", "cl-1")]
    assert names(parse("cluster=cl-2")) == [("Memory Marked Executable v9", "cl-2")]
    assert names(parse("cluster=cl-nope")) == []
    severe = CATALOGUE.lookup("Kernel Module Loaded").severity
    assert all(g.detection.severity >= severe for g in summarise(ROWS, parse(f"severity>={severe.label}"), CATALOGUE, CLUSTERS).groups)
    exact = summarise(ROWS, parse("severity=medium"), CATALOGUE, CLUSTERS).groups
    assert exact and all(g.detection.severity == Severity.MEDIUM for g in exact)


def test_a_row_without_a_host_and_naive_times_are_handled():
    naive = RecentRow("Kernel Exploit", None, None, 2, datetime(2026, 3, 1, 10), datetime(2026, 3, 1, 11))
    [group] = summarise([naive], RecentQuery(), CATALOGUE, {}).groups
    assert group.instance_id is None and group.cluster_id is None and group.hosts == 1
    assert group.last_seen.tzinfo is not None
    text, blocks = render_recent(summarise([naive], RecentQuery(), CATALOGUE, {}), RecentQuery())
    assert "an unknown host" in json.dumps(blocks)


def test_a_full_page_of_rows_is_reported_as_truncated():
    rows = [row("Kernel Module Loaded", f"i-{n}") for n in range(5)]
    summary = summarise(rows, RecentQuery(), CATALOGUE, {}, row_limit=5)
    assert summary.truncated
    text, blocks = render_recent(summary, RecentQuery())
    assert "Only the 5 most recently active" in json.dumps(blocks)


# ------------------------------------------------------------------------------------- render


def many_groups(count: int, detection: str = "Kernel Module Loaded") -> RecentSummary:
    rows = [row(detection, f"i-{n:06d}", n % 7 + 1, 600, n % 500) for n in range(count)]
    return summarise(rows, RecentQuery(), CATALOGUE, {})


@pytest.mark.parametrize("count", [0, 1, 10, 40, 41, 10_000])
def test_render_is_within_slack_limits_for_any_number_of_groups(count):
    summary = many_groups(count)
    assert len(summary.groups) == count
    text, blocks = render_recent(summary, parse("7d", "severity>=low"))
    assert limit_violations(blocks, text) == []
    assert len(blocks) <= MAX_BLOCKS
    dumped = json.dumps(blocks, ensure_ascii=False)
    if count == 0:
        assert "No Capsule8 events match" in dumped
    if count > GROUPS_SHOWN:
        rest = summary.groups[GROUPS_SHOWN:]
        assert f"…and {len(rest)} more group" in dumped
        assert f"({sum(g.events for g in rest)} events)" in dumped
    assert "last 7d" in text


def test_render_shows_counts_hosts_and_times():
    summary = summarise(ROWS, RecentQuery(), CATALOGUE, CLUSTERS)
    text, blocks = render_recent(summary, RecentQuery())
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert "5× on 2 hosts" in dumped and "`cl-1`" in dumped and "`i-lonely`" in dumped
    assert "2026-03-01 11:55 UTC" in dumped
    assert "50 liveness events" in dumped
    assert text.startswith("Recent ESM events — last 24h: 17 events in 4 groups")


HOSTILE = "<!channel> <@U123> <https://evil.example|click> *bold* `tick` &amp;"


def test_hostile_text_is_escaped_everywhere():
    rows = [RecentRow(HOSTILE, HOSTILE, "1", 1, NOW, NOW)]
    summary = summarise(rows, RecentQuery(), CATALOGUE, {HOSTILE: HOSTILE})
    query = RecentQuery(cluster_id=None, instance_id=HOSTILE, detection=HOSTILE)
    text, blocks = render_recent(summary, query)
    everything = text + json.dumps(blocks, ensure_ascii=False)
    for live in ("<!channel>", "<@U123>", "<https://"):
        assert live not in everything
    assert "&lt;!channel&gt;" in everything
    assert limit_violations(blocks, text) == []


@given(st.text(max_size=300), st.text(max_size=300))
@settings(max_examples=100, deadline=None)
def test_any_detection_or_host_text_renders_within_limits(detection, host):
    rows = [RecentRow(detection or "x", host or None, "1", 1, NOW, NOW)]
    text, blocks = render_recent(summarise(rows, RecentQuery(), CATALOGUE, {}), RecentQuery(instance_id=host or None))
    assert limit_violations(blocks, text) == []
    assert "<!" not in text + json.dumps(blocks, ensure_ascii=False)


def test_window_labels():
    assert [window_label(timedelta(**kw)) for kw in ({"days": 7}, {"days": 1}, {"hours": 6}, {"minutes": 90}, {"seconds": 45})] == [
        "7d", "24h", "6h", "90m", "45s"]
