"""The daily digest's schedule (ESM_DIGEST_AT, zoneinfo) and its message within Slack's limits."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings
from bot.core.digest import DailyAt, DailyDigest, parse_daily_at
from bot.render.digest import daily_digest_message
from emulators.block_kit import message_problems
from tests.unit.test_blocks_properties import SETTINGS, aware, short_text, text


def test_the_setting_reads_a_time_and_a_zone_and_is_off_by_default():
    assert load_settings({}).digest_at is None
    assert load_settings({"ESM_DIGEST_AT": "09:00 Europe/Berlin"}).digest_at == DailyAt(9, 0, "Europe/Berlin")
    assert parse_daily_at("07:30") == DailyAt(7, 30, "UTC")
    for bad, said in (("9am", "not a time"), ("25:00 UTC", "not a time of day"), ("09:00 Mars/Olympus", "not a time zone")):
        with pytest.raises(ConfigError, match=said):
            load_settings({"ESM_DIGEST_AT": bad})


def test_it_is_due_from_its_local_time_and_reports_the_local_day_before_across_dst():
    at = DailyAt(9, 0, "Europe/Berlin")
    # 2026-03-29: Berlin moves from UTC+1 to UTC+2 at 02:00
    assert at.due_day(datetime(2026, 3, 30, 6, 59, tzinfo=timezone.utc)) is None  # 08:59 in Berlin
    assert at.due_day(datetime(2026, 3, 30, 7, 0, tzinfo=timezone.utc)) == date(2026, 3, 30)
    start, end = at.reported(date(2026, 3, 30))
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=timezone.utc)  # 29 March 00:00 CET
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=timezone.utc)  # 30 March 00:00 CEST
    assert end - start == timedelta(hours=23)


rows = st.lists(st.tuples(text, short_text, st.integers(0, 10**9)), max_size=30)
digests = st.builds(
    DailyDigest,
    start=aware, end=aware, zone=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati"]),
    by_detection=st.dictionaries(text, st.integers(0, 10**9), max_size=40),
    by_cluster=st.dictionaries(text, st.integers(0, 10**9), max_size=40),
    suppressed=st.integers(0, 10**9),
    suppressions_hit=rows,
    open_findings=st.lists(st.tuples(st.sampled_from(["info", "low", "medium", "high", "critical"]), text, text,
                                     st.integers(0, 10**9), st.one_of(st.none(), text, st.just("https://x.slack.com/archives/C1/p1"))),
                           max_size=40),
    expiring=st.lists(st.tuples(text, text, aware), max_size=20),
    chart_file_id=st.one_of(st.none(), st.from_regex(r"F[A-Z0-9]{8,12}", fullmatch=True)),
)


@SETTINGS
@given(digests)
def test_the_daily_digest_is_always_a_message_slack_accepts(digest):
    fallback, blocks = daily_digest_message(digest)
    assert message_problems(blocks) == []
    assert 0 < len(fallback) <= 40_000
    shown = " ".join(str(b.get("text", {}).get("text", "")) for b in blocks if b["type"] == "section")
    assert "<!channel>" not in shown and "<!here>" not in shown
