"""The bench's own arithmetic: percentiles, the storm's shape and the messages it must produce."""
from __future__ import annotations

from bench.harness import expected_groups, percentile, storm_rows
from bench.storm import expected_messages


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


def test_a_storm_spreads_events_over_every_cluster_and_detection():
    rows = storm_rows(2400 * 2, clusters=200, detections=12)
    assert len({r["event_id"] for r in rows}) == 4800
    assert len({(r["request_params"]["instanceId"], r["action_name"]) for r in rows}) == 4800
    assert set(expected_groups(4800).values()) == {2}


def test_expected_messages_cap_replies_and_add_one_digest():
    counts = expected_messages(2400 * 6)  # 6 events per group: a parent, 1 reply, 1 digest of 4
    assert counts == {"groups": 2400, "parents": 2400, "replies": 2400, "digests": 2400, "messages": 7200}
    counts = expected_messages(2400 * 3)  # 3 events: a parent and 2 replies (no digest of one)
    assert counts == {"groups": 2400, "parents": 2400, "replies": 4800, "digests": 0, "messages": 7200}
