"""DBSQL alert webhook bodies: both shapes parse, everything else is a PayloadError that
says what is wrong — never another exception."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.alert_payload import MAX_DEPTH, AlertNotice, PayloadError, parse_alert_payload
from tests.payloads import DOCUMENTED_CURRENT, LEGACY, current, minimal_current

CURRENT = DOCUMENTED_CURRENT  # Databricks' documented example, quoted in tests/payloads.py


def body(value) -> bytes:
    return json.dumps(value).encode()


def test_the_documented_current_payload_parses():
    notice = parse_alert_payload(body(CURRENT))
    assert notice == AlertNotice(
        shape="current",
        event="alert_state_change",
        alert_id="9876543210987654",
        alert_name="Daily revenue",
        state=None,  # the documented evaluation carries no state; the title says it in words
        url_base="https://<workspace-url>/sql?o=1234567890123456",
        owner="alex.smith@example.com",
        summary='Alert "{{ALERT_NAME}}" changed status to {{ALERT_STATUS}}',
    )


def test_current_payload_with_fields_omitted_when_empty_parses():
    notice = parse_alert_payload(body(minimal_current("a-77")))
    assert (notice.shape, notice.alert_id) == ("current", "a-77")
    assert (notice.alert_name, notice.state, notice.url_base, notice.owner, notice.summary) == (None,) * 5


def test_current_payload_state_comes_from_its_evaluations_when_present():
    evaluations = [{**CURRENT["alert"]["alert"]["evaluations"][0], "state": "TRIGGERED"}]
    assert parse_alert_payload(body(current(evaluations=evaluations))).state == "TRIGGERED"
    assert parse_alert_payload(body(current(evaluations="not a list"))).state is None


def test_current_payload_owner_as_an_object_a_name_only_or_a_plain_string():
    assert parse_alert_payload(body(current(owner={"id": 1, "name": "Alex Smith"}))).owner == "Alex Smith"
    assert parse_alert_payload(body(current(owner="sec@example.com"))).owner == "sec@example.com"
    assert parse_alert_payload(body(current(owner=[1]))).owner is None


def test_legacy_payload_parses():
    notice = parse_alert_payload(body(LEGACY))
    assert notice == AlertNotice(
        shape="legacy",
        event="alert_state_change",
        alert_id="1234",
        alert_name="Capsule8 detections (legacy)",
        state="TRIGGERED",
        url_base="https://example.cloud.databricks.com",
    )


def test_current_payload_without_name_falls_back_to_title():
    assert parse_alert_payload(body(current(name=None))).alert_name == 'Alert "Daily revenue" changed status to TRIGGERED'


def test_legacy_payload_without_name_falls_back_to_title():
    payload = json.loads(json.dumps(LEGACY))
    del payload["alert"]["name"]
    assert parse_alert_payload(body(payload)).alert_name == "ESM"


def test_unknown_fields_are_ignored():
    current = json.loads(json.dumps(CURRENT))
    current["new_top_level"] = {"x": [1, 2]}
    current["alert"]["alert"]["added_later"] = True
    legacy = {**LEGACY, "alert": {**LEGACY["alert"], "rearm": 0, "options": {"op": ">"}}, "extra": None}
    assert parse_alert_payload(body(current)).alert_id == CURRENT["alert"]["alert"]["id"]
    assert parse_alert_payload(body(legacy)).alert_id == "1234"


def test_minimal_legacy_payload_only_needs_an_alert_id():
    notice = parse_alert_payload(b'{"alert": {"id": "42"}}')
    assert notice.alert_id == "42"
    assert (notice.event, notice.alert_name, notice.state, notice.url_base) == (None, None, None, None)


def test_numeric_alert_id_becomes_text():
    assert parse_alert_payload(b'{"alert": {"id": 42}}').alert_id == "42"


def test_optional_text_fields_of_the_wrong_type_are_dropped_not_fatal():
    notice = parse_alert_payload(body({"event": 5, "url_base": ["x"], "alert": {"id": "a", "name": {}, "state": 1}}))
    assert notice.alert_id == "a"
    assert (notice.event, notice.url_base, notice.alert_name, notice.state) == (None, None, None, None)


def test_very_long_values_are_truncated():
    notice = parse_alert_payload(body({"alert": {"id": "x" * 10_000, "name": "n" * 10_000}}))
    assert len(notice.alert_id) <= 200
    assert len(notice.alert_name) <= 500


def test_body_with_utf8_bom_is_accepted():
    assert parse_alert_payload(b"\xef\xbb\xbf" + body(LEGACY)).alert_id == "1234"


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "not valid JSON"),
        (b"alert=1", "not valid JSON"),
        (b'{"alert": {"id": "1"}', "not valid JSON"),
        (b"\xff\xfe\xfd\xfc not utf-8", "not valid JSON"),
        (b'{"alert": {"id": "\xc3\x28"}}', "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"alert"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"{}", "field 'alert' is missing: expected 'alert.alert.id' (current SQL alerts"),
        (b'{"alert": null}', "field 'alert' is missing"),
        (b'{"alert": "id"}', "field 'alert' is a JSON str, not an object"),
        (b'{"alert": [{"id": "1"}]}', "field 'alert' is a JSON list, not an object"),
        (b'{"alert": {}}', "neither 'alert.alert.id' nor 'alert.id' is given: expected"),
        (b'{"alert": {"alert": "x", "id": "1"}}', "field 'alert.alert' is a JSON str"),
        (b'{"alert": {"id": ""}}', "'alert.id'"),
        (b'{"alert": {"id": "   "}}', "'alert.id'"),
        (b'{"alert": {"id": true}}', "'alert.id'"),
        (b'{"alert": {"id": false}}', "'alert.id'"),
        (b'{"alert": {"id": {"v": 1}}}', "'alert.id'"),
        (b'{"alert": {"id": [1]}}', "'alert.id'"),
        (b'{"alert": {"id": null}}', "'alert.id'"),
        (b'{"alert": {"id": 1.5}}', "'alert.id'"),
        (b'{"alert": {"title": "t", "alert": {}}}', "'alert.alert.id'"),
        (b'{"alert": {"title": "t", "alert": {"id": ""}}}', "'alert.alert.id'"),
        (b'{"alert": {"title": "t", "alert": {"id": true}}}', "'alert.alert.id'"),
        (b'{"alert": {"title": "t", "alert": {"id": {}}}}', "'alert.alert.id'"),
    ],
)
def test_malformed_body_says_what_is_wrong(raw, words):
    with pytest.raises(PayloadError) as info:
        parse_alert_payload(raw)
    assert words in str(info.value)


def nested(depth: int) -> bytes:
    """A legacy payload nested `depth` containers deep: {alert: {extra: [[...[]...]]}}."""
    inner = "[]"
    for _ in range(depth - 3):
        inner = f"[{inner}]"
    return f'{{"alert": {{"id": "a", "extra": {inner}}}}}'.encode()


def test_nesting_at_the_limit_is_accepted():
    assert parse_alert_payload(nested(MAX_DEPTH)).alert_id == "a"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH + 10, 500])
def test_nesting_deeper_than_the_limit_is_rejected(depth):
    with pytest.raises(PayloadError, match=f"deeper than {MAX_DEPTH}"):
        parse_alert_payload(nested(depth))


def test_hundred_thousand_open_brackets_is_rejected_cleanly():
    with pytest.raises(PayloadError, match="deeper|not valid JSON"):
        parse_alert_payload(b"[" * 100_000)


def test_deep_object_nesting_is_rejected_cleanly():
    with pytest.raises(PayloadError, match="deeper|not valid JSON"):
        parse_alert_payload(b'{"a":' * 100_000)


# regression: an over-4300-digit integer used to escape as a plain ValueError (webhook 500)
def test_integer_literal_with_too_many_digits_is_a_payload_error():
    with pytest.raises(PayloadError):
        parse_alert_payload(b'{"alert": {"id": "a"}, "n": ' + b"9" * 5000 + b"}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "event": json_values,
        "url_base": json_values,
        "alert": json_values
        | st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values, "state": json_values,
                                             "title": json_values, "alert": json_values
                                             | st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values})}),
    },
)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_notice_or_payload_error(raw):
    try:
        notice = parse_alert_payload(raw)
    except PayloadError as exc:
        assert str(exc)
        return
    assert isinstance(notice, AlertNotice) and notice.alert_id.strip()


@settings(max_examples=300)
@given(json_values | alert_like)
def test_arbitrary_json_values_give_a_notice_or_payload_error(value):
    try:
        notice = parse_alert_payload(json.dumps(value).encode())
    except PayloadError as exc:
        assert str(exc)
        return
    assert isinstance(notice, AlertNotice) and notice.alert_id.strip()
    assert notice.shape in ("current", "legacy")
