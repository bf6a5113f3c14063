"""Every message and modal the bot renders passes Slack's own models (slack_sdk.models) and the
limits Slack adds to them, for any input: the same checks the Slack emulator answers
`invalid_blocks` / `invalid_arguments` with (emulators/block_kit.py), here on the renderers
directly, buttons and their confirm dialogs included."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from bot.core.actions import ActionSpec, Confirm
from bot.core.benign_modal import FormState, default_state
from bot.core.findings import FindingStatus, Severity
from bot.core.recent import RecentGroup, RecentQuery, RecentSummary
from bot.render.benign_modal import build_view
from bot.render.blocks import STYLES, digest_message, finding_details, finding_message, reply_message
from bot.render.recent import render_recent
from emulators.block_kit import message_problems, view_problems
from handlers.actions import discover
from tests.unit.test_blocks_properties import SETTINGS, detections, findings, links, rows, short_text, text

REAL_ACTIONS = [action.spec for action in discover().values()]
every_status = st.sampled_from(FindingStatus)


def hostile_spec(index: int, label: str, title: str, body: str, confirm: str, deny: str) -> ActionSpec:
    return ActionSpec(f"esm.hostile{index}", label, order=index, style="danger", offered_while=frozenset(FindingStatus),
                      confirm=lambda _finding: Confirm(title, body, confirm, deny, danger=True))


hostile_specs = st.lists(
    st.builds(hostile_spec, st.integers(0, 40), text, text, text, text, text), max_size=30,
    unique_by=lambda spec: spec.id,
)


def assert_slack_accepts(blocks) -> None:
    assert message_problems(blocks) == []


@SETTINGS
@given(findings, links, every_status, st.sampled_from(STYLES))
def test_a_finding_with_the_real_buttons_passes_slacks_models(finding, links_, status, style):
    from dataclasses import replace

    _, blocks = finding_message(replace(finding, status=status), links_, REAL_ACTIONS, style)
    assert_slack_accepts(blocks)


@SETTINGS
@given(findings, links)
def test_a_details_reply_passes(finding, links_):
    assert_slack_accepts(finding_details(finding, links_)[1])


@SETTINGS
@given(findings, links, hostile_specs)
def test_a_finding_with_any_number_of_buttons_and_confirm_dialogs_passes(finding, links_, specs):
    _, blocks = finding_message(finding, links_, specs)
    assert_slack_accepts(blocks)


@SETTINGS
@given(rows, findings)
def test_a_thread_reply_passes(row, finding):
    assert_slack_accepts(reply_message(row, finding)[1])


@SETTINGS
@given(findings, st.integers(-10, 10**18), st.integers(-10, 10**18))
def test_a_digest_reply_passes(finding, events, hosts):
    assert_slack_accepts(digest_message(finding, events, hosts)[1])


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))
groups = st.builds(RecentGroup, detection=detections, cluster_id=st.one_of(st.none(), short_text),
                   instance_id=st.one_of(st.none(), short_text), events=st.integers(0, 10**9),
                   hosts=st.integers(0, 10**6), first_seen=moments, last_seen=moments)
queries = st.builds(RecentQuery, window=st.sampled_from([timedelta(hours=1), timedelta(hours=24), timedelta(days=7)]),
                    cluster_id=st.one_of(st.none(), text), instance_id=st.one_of(st.none(), text),
                    detection=st.one_of(st.none(), text), category=st.one_of(st.none(), text),
                    severity=st.one_of(st.none(), st.sampled_from(Severity)))


@SETTINGS
@given(st.lists(groups, max_size=80), st.integers(0, 10**6), st.booleans(), queries)
def test_the_recent_answer_passes(group_list, hidden, truncated, query):
    summary = RecentSummary(tuple(group_list), hidden, truncated, 5000, len(group_list))
    assert_slack_accepts(render_recent(summary, query)[1])


form_states = st.builds(FormState, scope=st.sampled_from(["instance", "cluster", "workspace", "everywhere", "bogus"]),
                        patterns=text, expiry=st.sampled_from(["1h", "24h", "7d", "30d", "date", "never", "x"]),
                        on_date=st.one_of(st.none(), st.just("2031-01-02")), confirm_never=st.booleans(), reason=text)


@SETTINGS
@given(findings, form_states, text)
def test_the_mark_benign_modal_passes_slacks_view_model(finding, state, preview):
    assert view_problems(build_view(finding, state, preview)) == []


@SETTINGS
@given(findings)
def test_the_mark_benign_modal_as_first_opened_passes(finding):
    from bot.render.benign_modal import PREVIEW_COMPUTING

    assert view_problems(build_view(finding, default_state(finding), PREVIEW_COMPUTING)) == []
