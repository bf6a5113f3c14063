"""Audit-row parsing (bot.core.events) and lineage extraction (bot.core.findings.lineage_of):
tolerant of every shape the sources produce, strict about the fields a finding needs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.core.events import AuditRow, RowError, parse_audit_row
from bot.core.findings import lineage_of

UTC = timezone.utc
WHEN = datetime(2025, 3, 4, 10, 15, 2, tzinfo=UTC)


def raw(**overrides):
    row = {
        "event_id": "evt-1",
        "event_time": "2025-03-04T10:15:02Z",
        "workspace_id": 1234567890123456,
        "service_name": "capsule8-alerts-dataplane",
        "action_name": "Kernel Module Loaded",
        "request_params": {"instanceId": "i-0123456789abcdef0"},
    }
    row.update(overrides)
    return row


def row_with(**params) -> AuditRow:
    return parse_audit_row(raw(request_params=params))


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-04T10:15:02Z",
        "2025-03-04 10:15:02Z",
        "2025-03-04 10:15:02+00:00",
        "2025-03-04T11:15:02+01:00",
        "2025-03-04T10:15:02",
        "2025-03-04 10:15:02",
        1741083302,
        1741083302.0,
        1741083302000,
        datetime(2025, 3, 4, 10, 15, 2),
        datetime(2025, 3, 4, 10, 15, 2, tzinfo=UTC),
        datetime(2025, 3, 4, 5, 15, 2, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_event_time_shapes_all_mean_the_same_utc_instant(value):
    parsed = parse_audit_row(raw(event_time=value)).event_time
    assert parsed == WHEN
    assert parsed.utcoffset() == timedelta(0)


def test_fractional_seconds_are_kept():
    parsed = parse_audit_row(raw(event_time="2025-03-04T10:15:02.250Z")).event_time
    assert parsed == WHEN + timedelta(milliseconds=250)


def test_epoch_millis_keep_their_milliseconds():
    parsed = parse_audit_row(raw(event_time=1741083302250)).event_time
    assert parsed == WHEN + timedelta(milliseconds=250)


# ---------------------------------------------------------------- request_params shapes


@pytest.mark.parametrize(
    "params",
    [
        {"instanceId": "i-abc", "filePath": "/etc/ssl/certs/ca.pem"},
        json.dumps({"instanceId": "i-abc", "filePath": "/etc/ssl/certs/ca.pem"}),
        [["instanceId", "i-abc"], ["filePath", "/etc/ssl/certs/ca.pem"]],
        [("instanceId", "i-abc"), ("filePath", "/etc/ssl/certs/ca.pem")],
        json.dumps([["instanceId", "i-abc"], ["filePath", "/etc/ssl/certs/ca.pem"]]),
    ],
)
def test_request_params_as_dict_json_text_or_pairs(params):
    row = parse_audit_row(raw(request_params=params))
    assert dict(row.request_params) == {"instanceId": "i-abc", "filePath": "/etc/ssl/certs/ca.pem"}


@pytest.mark.parametrize("params", [None, "", {}, []])
def test_absent_request_params_give_an_empty_map(params):
    row = parse_audit_row(raw(request_params=params))
    assert dict(row.request_params) == {}
    assert row.instance_id is None


def test_non_string_param_values_become_text():
    row = row_with(pid=4242, privileged=True, ratio=0.5, missing=None, args=["-c", "id"], env={"A": "1"})
    params = dict(row.request_params)
    assert all(isinstance(v, str) for v in params.values())
    assert params["pid"] == "4242"
    assert params["privileged"] == "true"
    assert params["ratio"] == "0.5"
    assert params["missing"] == ""
    assert json.loads(params["args"]) == ["-c", "id"]
    assert json.loads(params["env"]) == {"A": "1"}


def test_non_string_param_keys_become_text():
    row = parse_audit_row(raw(request_params=[[1, "one"]]))
    assert dict(row.request_params) == {"1": "one"}


def test_response_and_user_identity_accept_json_text():
    row = parse_audit_row(
        raw(response='{"status_code": 200, "result": "Infected files: 0"}', user_identity='{"email": "a@b.c"}')
    )
    assert row.response["result"] == "Infected files: 0"
    assert row.user_identity["email"] == "a@b.c"


def test_workspace_id_is_text_and_optional():
    assert parse_audit_row(raw(workspace_id=1234567890123456)).workspace_id == "1234567890123456"
    assert parse_audit_row(raw(workspace_id=None)).workspace_id == ""


def test_to_json_round_trips():
    row = parse_audit_row(raw(source_ip_address="10.0.0.1", response={"status_code": 200}))
    assert parse_audit_row(row.to_json()) == row
    json.dumps(row.to_json())  # JSON-ready


# ---------------------------------------------------------------- required fields


@pytest.mark.parametrize("field", ["event_id", "event_time", "service_name", "action_name"])
@pytest.mark.parametrize("bad", ["missing", None, "", "   "])
def test_missing_or_empty_required_field_names_the_field(field, bad):
    data = raw()
    if bad == "missing":
        del data[field]
    else:
        data[field] = bad
    with pytest.raises(RowError, match=field):
        parse_audit_row(data)


@pytest.mark.parametrize("field", ["event_id", "service_name", "action_name"])
@pytest.mark.parametrize("bad", [{"a": 1}, ["a"]])
def test_structured_value_for_a_text_field_names_the_field(field, bad):
    with pytest.raises(RowError, match=field):
        parse_audit_row(raw(**{field: bad}))


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2025-13-40T00:00:00Z", True, False, {"t": 1}, ["2025-03-04"], float("nan"), float("inf"), 10**16, -(10**15)],
)
def test_invalid_event_time_names_the_field(bad):
    with pytest.raises(RowError, match="event_time"):
        parse_audit_row(raw(event_time=bad))


@pytest.mark.parametrize("field", ["request_params", "response", "user_identity"])
@pytest.mark.parametrize("bad", ["not json {", "[1, 2]", 42, "\"text\"", [["only-one"]]])
def test_invalid_maps_name_the_field(field, bad):
    with pytest.raises(RowError, match=field):
        parse_audit_row(raw(**{field: bad}))


@pytest.mark.parametrize("data", [None, "row", 3, ["event_id", "x"]])
def test_non_object_row_is_a_row_error(data):
    with pytest.raises(RowError):
        parse_audit_row(data)


# regression: a huge int epoch used to escape parse_time as OverflowError
def test_absurdly_large_epoch_is_a_row_error():
    with pytest.raises(RowError, match="event_time"):
        parse_audit_row(raw(event_time=10**400))


# regression: converting an offset time near datetime.max/min to UTC used to raise OverflowError
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_iso_time_that_overflows_in_utc_is_a_row_error(value):
    with pytest.raises(RowError, match="event_time"):
        parse_audit_row(raw(event_time=value))


# regression: a list-of-pairs with an unhashable key used to raise TypeError
def test_pair_with_unhashable_key_is_a_row_error():
    with pytest.raises(RowError, match="request_params"):
        parse_audit_row(raw(request_params=[[[1], "x"]]))


# regression: deeply nested JSON text used to raise RecursionError
def test_deeply_nested_json_params_is_a_row_error():
    with pytest.raises(RowError, match="request_params"):
        parse_audit_row(raw(request_params="[" * 100_000))


# ---------------------------------------------------------------- instance / cluster lookups


@pytest.mark.parametrize("key", ["instanceId", "instance_id"])
def test_instance_id_under_either_spelling(key):
    assert row_with(**{key: "i-0abc"}).instance_id == "i-0abc"


@pytest.mark.parametrize("key", ["clusterId", "cluster_id"])
def test_cluster_id_under_either_spelling(key):
    assert row_with(**{key: "0304-101502-abcd1234"}).cluster_id == "0304-101502-abcd1234"


def test_empty_instance_id_falls_through_to_the_other_spelling():
    assert row_with(instanceId="", instance_id="i-second").instance_id == "i-second"


def test_absent_ids_are_none():
    row = row_with(other="x")
    assert row.instance_id is None
    assert row.cluster_id is None


# ---------------------------------------------------------------- lineage


def test_container_origin_from_a_real_container_id():
    lineage = lineage_of(row_with(containerId="3f4e9c2a1b7d", containerName="spark", imageName="dbr:14.3"))
    assert lineage.origin == "container"
    assert lineage.container_id == "3f4e9c2a1b7d"
    assert lineage.container_name == "spark"
    assert lineage.image == "dbr:14.3"


@pytest.mark.parametrize("container_id", ["000000000000", "0" * 64, "00000000-0000-0000-0000-000000000000"])
def test_all_zero_container_id_means_the_host(container_id):
    assert lineage_of(row_with(containerId=container_id)).origin == "host"


def test_no_container_information_is_unknown_origin():
    lineage = lineage_of(row_with(instanceId="i-1"))
    assert lineage.origin == "unknown"
    assert lineage.container_id is None
    assert lineage.process_chain == ()


@pytest.mark.parametrize("explicit", ["host", "HOST", "container"])
def test_explicit_origin_wins(explicit):
    assert lineage_of(row_with(origin=explicit, containerId="3f4e9c2a1b7d")).origin == explicit.lower()


def test_process_chain_from_json_list_of_strings():
    chain = json.dumps(["systemd", "containerd-shim", "bash", "curl"])
    assert lineage_of(row_with(processLineage=chain)).process_chain == ("systemd", "containerd-shim", "bash", "curl")


def test_process_chain_from_json_list_of_name_pid_objects():
    chain = json.dumps([{"name": "bash", "pid": 101}, {"name": "python3", "pid": 202}, {"name": "sh"}])
    assert lineage_of(row_with(lineage=chain)).process_chain == ("bash (101)", "python3 (202)", "sh")


def test_process_chain_object_without_name_still_renders():
    chain = json.dumps([{"exe": "/usr/bin/id", "pid": 7}, {"pid": 8}])
    assert lineage_of(row_with(processChain=chain)).process_chain == ("/usr/bin/id (7)", "? (8)")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("systemd > bash > curl", ("systemd", "bash", "curl")),
        ("bash -> python3", ("bash", "python3")),
        ("init\nsshd\nbash", ("init", "sshd", "bash")),
        ("bash", ("bash",)),
        ("[not json", ("[not json",)),
    ],
)
def test_process_chain_from_text(text, expected):
    assert lineage_of(row_with(processLineage=text)).process_chain == expected


def test_other_lineage_fields_under_alternative_spellings():
    lineage = lineage_of(row_with(cmdline="curl http://x | sh", path="/tmp/x", userName="root", image="ubuntu"))
    assert lineage.command_line == "curl http://x | sh"
    assert lineage.file_path == "/tmp/x"
    assert lineage.process_user == "root"
    assert lineage.image == "ubuntu"


def test_lineage_of_a_row_with_no_params_is_all_empty():
    lineage = lineage_of(parse_audit_row(raw(request_params=None)))
    assert lineage.origin == "unknown"
    assert (lineage.command_line, lineage.file_path, lineage.process_user) == (None, None, None)


# regression: deeply nested JSON process chains used to raise RecursionError
def test_deeply_nested_process_chain_does_not_crash():
    lineage = lineage_of(row_with(processLineage="[" * 100_000))
    assert len(lineage.process_chain) <= 1


# ---------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ("event_id", "event_time", "workspace_id", "service_name", "action_name",
          "request_params", "response", "user_identity", "source_ip_address")
json_like_rows = st.fixed_dictionaries(
    {}, optional={name: json_values for name in FIELDS}
).flatmap(lambda known: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(lambda extra: {**extra, **known}))


@settings(max_examples=300)
@given(json_like_rows)
@example(raw(event_time=10**400))
@example(raw(request_params=[[[1], "x"]]))
def test_parse_audit_row_raises_only_row_error_on_json_like_dicts(data):
    try:
        row = parse_audit_row(data)
    except RowError:
        return
    assert isinstance(row, AuditRow)


text_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=40)
flat_rows = st.fixed_dictionaries(
    {},
    optional={
        **{name: text_scalars for name in ("event_id", "event_time", "workspace_id", "service_name", "action_name")},
        "request_params": st.none() | st.text(max_size=40) | st.dictionaries(st.text(max_size=10), text_scalars, max_size=5),
    },
)


@settings(max_examples=300)
@given(flat_rows)
def test_parse_audit_row_on_flat_rows_returns_a_row_or_raises_row_error(data):
    """Rows of scalars and int64-sized numbers (what real drivers produce) never crash."""
    try:
        row = parse_audit_row(data)
    except RowError:
        return
    assert isinstance(row, AuditRow)
    assert row.event_time.utcoffset() == timedelta(0)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in row.request_params.items())


lineage_keys = st.sampled_from(
    ["containerId", "container_id", "processLineage", "lineage", "processChain", "process_chain",
     "processTree", "origin", "location", "commandLine", "filePath", "user", "instanceId"]
) | st.text(max_size=12)
lineage_values = st.text(max_size=60) | st.sampled_from(["[", "[]", "[{}]", "[null]", "[[1,2]]", "0000", "a>b", "->"]) | (
    st.lists(st.text(max_size=8) | st.fixed_dictionaries({}, optional={"name": st.text(max_size=8), "pid": st.integers()}), max_size=4).map(json.dumps)
)


@settings(max_examples=300)
@given(st.dictionaries(lineage_keys, lineage_values, max_size=8))
def test_lineage_of_never_raises_on_text_params(params):
    lineage = lineage_of(parse_audit_row(raw(request_params=params)))
    assert lineage.origin in ("container", "host", "unknown")
    assert all(isinstance(step, str) for step in lineage.process_chain)
