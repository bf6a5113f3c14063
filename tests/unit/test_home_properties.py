"""The App Home view and its chart: any findings, suppressions and health stay within Slack's
limits for a home view (checked by the strict emulator's own validator), nothing from outside
comes alive as markup, and the chart is a PNG."""
from __future__ import annotations

from datetime import date, datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from bot.core.suppressions import Scope, Suppression
from bot.render.chart import MAX_SERIES, days_ending, events_chart_png, series
from bot.render.home import HomeData, home_view
from emulators.block_kit import view_problems
from tests.unit.test_blocks_properties import SETTINGS, findings, maybe_text, moment, text

scopes = st.builds(Scope, workspace_id=maybe_text, cluster_id=maybe_text, instance_id=maybe_text)
suppressions = st.builds(
    Suppression, id=text, detection=text, scope=scopes, match=st.just({}), reason=text,
    created_by=st.one_of(text, st.from_regex(r"U[A-Z0-9]{2,12}", fullmatch=True)),
    expires_at=st.one_of(st.none(), moment),
)
homes = st.builds(
    HomeData,
    findings=st.lists(findings, max_size=120),
    suppressions=st.lists(suppressions, max_size=40),
    links=st.dictionaries(text, st.one_of(text, st.just("https://esm.slack.com/archives/C1/p1")), max_size=5),
    hits=st.dictionaries(text, st.integers(0, 10**9), max_size=5),
    last_sync=st.one_of(st.none(), moment), last_success=st.one_of(st.none(), moment),
    sync_error=maybe_text, problems=st.lists(text, max_size=15),
    chart_file_id=st.one_of(st.none(), st.from_regex(r"F[A-Z0-9]{8,12}", fullmatch=True)),
    chart_note=maybe_text, now=st.one_of(st.none(), moment),
)


@SETTINGS
@given(homes)
def test_the_home_view_is_always_one_slack_accepts(data):
    view = home_view(data)
    assert view["type"] == "home"
    assert view_problems(view) == []
    assert len(view["blocks"]) <= 100


@SETTINGS
@given(st.lists(findings, min_size=1, max_size=30))
def test_outside_text_never_becomes_a_mention_or_a_link(found):
    view = home_view(HomeData(findings=found, suppressions=[]))
    shown = " ".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert "<!channel>" not in shown and "<!here>" not in shown
    for finding in found:
        name = finding.detection.name
        if "<http" in name:
            assert name not in shown


def test_a_home_links_each_finding_to_its_message_and_groups_by_severity():
    from bot.core.events import AuditRow
    from bot.core.findings import Detection, Finding, Severity

    now = datetime(2026, 12, 4, 9, tzinfo=timezone.utc)
    row = AuditRow(event_id="e1", event_time=now, workspace_id="1", service_name="s", action_name="a", request_params={})
    high = Finding("k1", Detection("Kernel Module Loaded", "Kernel", Severity.HIGH, "", ""), row, now, now, cluster_id="c-1")
    low = Finding("k2", Detection("Odd <thing> & more", "Misc", Severity.LOW, "", ""), row, now, now, cluster_id="c-2")
    view = home_view(HomeData(findings=[low, high], suppressions=[], links={"k1": "https://x.slack.com/archives/C1/p1"},
                              chart_file_id="F0000000001", now=now))
    texts = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
    high_at = next(i for i, t in enumerate(texts) if "*high*" in t)
    low_at = next(i for i, t in enumerate(texts) if "*low*" in t)
    assert high_at < low_at, "the most severe first"
    assert "<https://x.slack.com/archives/C1/p1|Kernel Module Loaded>" in texts[high_at]
    assert "Odd &lt;thing&gt; &amp; more" in texts[low_at]
    [image] = [b for b in view["blocks"] if b["type"] == "image"]
    assert image["slack_file"] == {"id": "F0000000001"}


def test_the_chart_is_a_png_of_the_busiest_detections():
    days = days_ending(date(2026, 12, 4))
    assert days[0] == "2026-11-28" and days[-1] == "2026-12-04"
    rows = [(days[i % 7], f"detection {i}", i + 1) for i in range(12)] + [("2026-01-01", "old", 5)]
    counts = series(rows, days)
    assert len(counts) == MAX_SERIES + 1 and "other" in counts and "old" not in counts
    assert sum(map(sum, counts.values())) == sum(i + 1 for i in range(12))
    png = events_chart_png(days, counts)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
    assert events_chart_png(days, {}).startswith(b"\x89PNG")
