"""Property-based tests that complete the four areas of the reliability issue.

Already covered elsewhere (not repeated here): the webhook parser (tests/unit/test_alert_payload),
the audit-row normaliser (tests/unit/test_events), the /esm recent argument parser
(tests/unit/test_recent) and the finding / reply / digest renderer (tests/unit/test_blocks_properties).
Added here: the /esm router's word splitting and dispatch, the outbox's rendering of thread
items (replies from stored rows, digests, action notes), mention neutralising of outside data in
action messages, the benign form (any submitted state, any finding), and the replay guard.
Every property: never an unhandled exception, never a message past Slack's limits.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.state import DigestPayload, NotePayload, OutboxItem, ReplyPayload
from bot.core.benign_modal import default_state, draft_for
from bot.core.catalogue import load_catalogue
from bot.core.recent import RecentArgumentError, parse_recent
from bot.render.benign_modal import build_view, read_state
from bot.render.blocks import Links, escape, inert, limit_violations, mention_safe, note_message
from bot.services.outbox import OutboxSettings, OutboxWorker
from handlers.commands import UsageError, _verbs, help_text, split_words
from handlers.replay_guard import ReplayGuard
from bot.core.events import RowError, parse_audit_row
from tests.unit.test_blocks_properties import any_char, findings, rows, text

CATALOGUE = load_catalogue(Path(__file__).resolve().parents[2] / "rules" / "detections.yml")
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIVE = re.compile(r"<!|<#|<@")
ANY_LIVE_USER = re.compile(r"<@([UW][A-Z0-9]{2,32})>")

words = st.lists(st.one_of(
    st.text(any_char, max_size=30),
    st.sampled_from(["recent", "status", "help", "benign", "remove", "list", "'", '"', "\\", "=", ">=", "24h",
                     "cluster='x' OR 1=1", 'detection="Kernel Module Loaded"', "<!channel>", "`", "\n", "\x00"]),
), max_size=12).map(" ".join)


# ------------------------------------------------------------------------- the /esm router


@SETTINGS
@given(words)
def test_router_splits_any_text_into_words_or_a_usage_error(raw):
    try:
        parts = split_words(raw)
    except UsageError as exc:
        assert len(str(exc)) < 500
        return
    assert all(isinstance(p, str) for p in parts)
    name = parts[0].lower() if parts else "help"
    verb = _verbs().get(name)
    if verb is None:  # the ack the router sends for an unknown verb
        ack = f"Unknown command `{name[:40]}`.\n{help_text()}"
        assert len(ack) < 3000
    elif name == "recent":
        try:
            parse_recent(parts[1:], CATALOGUE)
        except RecentArgumentError as exc:
            assert len(str(exc)) < 1000


# ------------------------------------------------------------------------- outbox thread items


def _stored(row):
    """Only rows the normaliser accepted are ever stored (and queued as replies)."""
    try:
        return parse_audit_row(row.to_json())
    except RowError:
        return None


stored_rows = rows.map(_stored).filter(lambda r: r is not None)
FEW = settings(SETTINGS, max_examples=80)  # the Finding strategy is costly to draw


def mrkdwn_texts(node):
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from mrkdwn_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from mrkdwn_texts(item)


def worker() -> OutboxWorker:
    return OutboxWorker(store=None, chat=None, settings=OutboxSettings(lambda f: "C0X", lambda f: Links(None)))  # type: ignore[arg-type]


@FEW
@given(stored_rows, findings)
def test_outbox_renders_a_reply_from_its_stored_row_within_limits(row, finding):
    item = OutboxItem(1, "k", ReplyPayload(json.loads(json.dumps(row.to_json()))), 0)
    text_, blocks = worker()._reply(item, finding)
    assert limit_violations(blocks, text_) == []
    assert not any(re.search(r"<!|<#", t) for t in [text_, *mrkdwn_texts(blocks)])


@FEW
@given(findings, st.integers(-5, 10**12), st.integers(0, 600))
def test_outbox_renders_a_digest_within_limits(finding, events, hosts):
    item = OutboxItem(2, "k", DigestPayload.of(events, {f"i-{n}" for n in range(hosts)}), 0)
    text_, blocks = worker()._reply(item, finding)
    assert limit_violations(blocks, text_) == []


@FEW
@given(findings, text.filter(lambda t: t.strip()))  # an action's message is never blank
def test_outbox_renders_an_action_note_within_limits_and_without_channel_pings(finding, note):
    item = OutboxItem(3, "k", NotePayload(note), 0)
    text_, blocks = worker()._reply(item, finding)
    assert limit_violations(blocks, text_) == []
    assert (text_, blocks) == note_message(note)
    for rendered in (text_, json.dumps(blocks)):
        assert "<!" not in rendered and "<#" not in rendered


@SETTINGS
@given(st.from_regex(r"[UW][A-Z0-9]{8,11}", fullmatch=True), text)
def test_outside_data_in_an_action_message_never_pings_anyone(user, data):
    """mention_safe revives `<@U…>`; outside data passed through inert() stays text."""
    shown = mention_safe(f"<@{user}> terminated cluster {inert(data)}")
    assert ANY_LIVE_USER.findall(shown) == [user]
    assert "<!" not in shown and "<#" not in shown


# ------------------------------------------------------------------------- the benign form

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), text)
json_values = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                           max_leaves=12)
option = st.fixed_dictionaries({"value": st.one_of(text, st.sampled_from(
    ["instance", "cluster", "workspace", "everywhere", "1h", "24h", "7d", "30d", "date", "never", "confirmed"]))})
form_values = st.fixed_dictionaries({}, optional={
    "scope": st.fixed_dictionaries({"benign.scope": st.fixed_dictionaries({"selected_option": option})}),
    "patterns": st.fixed_dictionaries({"patterns": st.fixed_dictionaries({"value": st.one_of(st.none(), text)})}),
    "expiry": st.fixed_dictionaries({"benign.expiry": st.fixed_dictionaries({"selected_option": option})}),
    "expiry_date": st.fixed_dictionaries({"date": st.fixed_dictionaries({"selected_date": st.one_of(
        st.none(), text, st.dates().map(str))})}),
    "never_confirm": st.fixed_dictionaries({"never": st.fixed_dictionaries({"selected_options": st.lists(option)})}),
    "reason": st.fixed_dictionaries({"reason": st.fixed_dictionaries({"value": st.one_of(st.none(), text)})}),
})
hex_keys = st.from_regex(r"[0-9a-f]{20}", fullmatch=True)


@FEW
@given(findings, hex_keys, st.one_of(form_values, json_values))
def test_any_benign_submission_gives_a_suppression_or_field_errors(finding, key, values):
    from dataclasses import replace
    from datetime import datetime, timezone

    finding = replace(finding, key=key)
    state = read_state(values if isinstance(values, dict) else None, default_state(finding))
    draft, errors = draft_for(finding, state, "U0RESPONDER", datetime.now(timezone.utc))
    assert (draft is None) == bool(errors)
    assert all(isinstance(v, str) and len(v) <= 2000 for v in errors.values())
    view = build_view(finding, state, "Would hide 3 events of the last 7 days.")
    assert len(view["private_metadata"]) <= 3000 and len(view["blocks"]) <= 100
    checked = [b for b in view["blocks"] if b["type"] in ("section", "context", "actions", "header")]
    assert limit_violations(checked) == []
    assert not any("<!" in t for t in mrkdwn_texts(view["blocks"]))  # plain_text shows markup as text


# ------------------------------------------------------------------------- the replay guard

headers = st.dictionaries(st.sampled_from(["X-Slack-Request-Timestamp", "X-Slack-Signature", "x-slack-retry-num",
                                           "Content-Type"]),
                          st.one_of(st.text(any_char, max_size=80), st.lists(st.text(max_size=20), max_size=2)))


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(any_char, max_size=300)), headers)
def test_replay_guard_never_raises_and_never_remembers_unsigned_requests(body, given_headers):
    guard = ReplayGuard("secret")
    ReplayGuard.malformed(given_headers)
    assert asyncio.run(guard.is_replay(body, given_headers)) is False
    assert asyncio.run(guard.is_replay(body, given_headers)) is False  # not signed by us: never remembered


@SETTINGS
@given(st.text(any_char, max_size=300).filter(lambda t: t.encode("utf-8", "surrogatepass") == t.encode("utf-8", "replace")))
def test_replay_guard_lets_a_signed_body_through_once(body):
    timestamp = str(int(time.time()))
    digest = hmac.new(b"secret", f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    signed = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}
    guard = ReplayGuard("secret")
    assert asyncio.run(guard.is_replay(body, signed)) is False
    assert asyncio.run(guard.is_replay(body, signed)) is True
    assert asyncio.run(guard.is_replay(body, {**signed, "X-Slack-Signature": "v0=" + "0" * 64})) is False


def test_escape_is_what_the_properties_rely_on():
    assert escape("<!channel>") == "&lt;!channel&gt;"
