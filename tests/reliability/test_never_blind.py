"""Never blind, never silent (#11), on the real `esm-bot serve` process: a row dated a month ahead,
a row that lands three hours late, a state file another process keeps locked, and a host whose
sensor stops sending heartbeats while its cluster runs. Each test records its figures."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import timedelta
from typing import Any

import requests

from emulators.slack_signing import block_actions_body
from tests.reliability.harness import CHANNEL, RESPONDER, EmulatorHost, add_clusters, capsule8, now, record


def texts(host: EmulatorHost) -> list[str]:
    return [json.dumps(m.get("blocks") or []) + " " + (m.get("text") or "") for m in host.messages()]


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_a_row_dated_a_month_ahead_does_not_blind_the_bot(host, make_bot):
    [driver, *_] = next(iter(add_clusters(host, 1).values()))
    bot = make_bot()
    bot.seed([capsule8("future-1", "Kernel Module Loaded", driver, now() + timedelta(days=30))])
    bot.start()
    bot.wait_drained(1, timeout=60)
    watermark_after_future = bot.watermark()
    bot.seed([capsule8(f"now-{n}", "Container Escape" if n == 0 else "Boot Files Modified", driver, now())
              for n in range(5)])
    bot.webhook()
    bot.wait_drained(6, timeout=60)
    posted = texts(host)
    escape_posted = sum("Container Escape" in t for t in posted)
    ahead_said = sum("the host's clock is ahead" in t for t in posted)
    record("future_row", f"future row: 1 row dated now + 30 d, then 5 rows dated now: {bot.stored_events()}/6 stored, "
                         f"the escape posted {escape_posted}×, the future finding says the clock is ahead "
                         f"({ahead_said}), watermark {watermark_after_future:%Y-%m-%d %H:%M} (not 30 days ahead)",
           stored=bot.stored_events(), escape_posted=escape_posted, ahead_said=ahead_said)
    assert bot.stored_events() == 6 and escape_posted == 1 and ahead_said == 1
    assert watermark_after_future is not None and watermark_after_future <= now()


def test_a_row_that_lands_three_hours_late_is_posted_by_the_next_sweep(host, make_bot):
    [driver, *_] = next(iter(add_clusters(host, 1).values()))
    bot = make_bot(ESM_LATE_SWEEP_INTERVAL="0")
    bot.seed([capsule8("on-time", "Kernel Module Loaded", driver, now() - timedelta(minutes=1))])
    bot.start()
    bot.wait_drained(1, timeout=60)
    bot.seed([capsule8("late-3h", "Container Escape", driver, now() - timedelta(hours=3))])  # behind watermark − overlap
    started = time.monotonic()
    bot.webhook()
    bot.wait_drained(2, timeout=60)
    found_s = time.monotonic() - started
    late = [t for t in texts(host) if "Container Escape" in t]
    bot.webhook()  # the next sweep reads it again and finds it stored: never posted twice
    bot.wait_drained(2, timeout=60)
    again = [t for t in texts(host) if "Container Escape" in t]
    record("late_row", f"late row: a row landing 3 h after its event_time, behind the watermark: posted by the next "
                       f"sync's sweep in {found_s:.1f} s, once ({len(again)} message), saying 'landed 3 h after it happened'",
           posted=len(again), found_s=round(found_s, 2))
    assert len(late) == 1 and len(again) == 1
    assert "landed 3 h after it happened" in late[0]


def test_a_locked_state_file_is_loud_and_never_stalls_the_server(host, make_bot):
    [driver, *_] = next(iter(add_clusters(host, 1).values()))
    bot = make_bot(ESM_DEGRADED_AFTER="0")
    bot.seed([capsule8("before-lock", "Kernel Module Loaded", driver, now() - timedelta(minutes=2))])
    bot.start()
    bot.wait_drained(1, timeout=60)
    finding = host.messages()[0]
    locker = sqlite3.connect(str(bot.state_path), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        bot.seed([capsule8("during-lock", "Container Escape", driver, now())])
        bot.webhook()
        healthz_ms = []
        for _ in range(20):
            started = time.monotonic()
            assert requests.get(bot.url + "/healthz", timeout=5).status_code == 200
            healthz_ms.append((time.monotonic() - started) * 1000)
        url = host.call(host.slack.new_response_url, CHANNEL, finding["ts"])
        button = next(e for b in finding["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == "esm.acknowledge")
        body = block_actions_body(action_id="esm.acknowledge", value=button["value"], user_id=RESPONDER,
                                  channel_id=CHANNEL, message=finding, response_url=url)
        started = time.monotonic()
        assert bot.slack_request(body).status_code == 200
        wait_for(lambda: host.call(host.slack.responses, url), 10, "the click's answer")
        click_s = time.monotonic() - started
        [answer] = host.call(host.slack.responses, url)
        told_s = wait_for(lambda: any("esm-bot is degraded: state store" in t for t in texts(host)), 30,
                          "the channel message")
        ready = requests.get(bot.url + "/readyz", timeout=10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    bot.webhook()
    recovered_s = wait_for(lambda: any("esm-bot recovered: state store" in t for t in texts(host)), 30, "recovery")
    bot.wait_drained(2, timeout=60)
    said = sum("esm-bot is degraded" in t for t in texts(host))
    escape = sum("Container Escape" in t for t in texts(host))
    record("locked_store", f"locked state file: /healthz max {max(healthz_ms):.0f} ms while locked; a click answered in "
                           f"{click_s:.1f} s with a clear refusal; /readyz {ready.status_code} naming the state store; "
                           f"the channel told once ({said}) in {told_s:.1f} s and told of the recovery; "
                           f"the row that arrived meanwhile posted ({escape})",
           healthz_max_ms=round(max(healthz_ms), 1), click_s=round(click_s, 2), readyz=ready.status_code,
           told=said, escape_posted=escape, recovered_s=round(recovered_s, 1))
    assert max(healthz_ms) < 100
    assert click_s < 3 and "could not record this" in answer["text"] and "nothing was done" in answer["text"]
    assert ready.status_code == 503 and ready.json()["checks"]["degraded"]["parts"] == ["state store"]
    assert said == 1 and escape == 1


def test_a_running_hosts_silent_sensor_is_posted_once(host, make_bot):
    clusters = add_clusters(host, 2)
    (silent, *_), (beating, *_) = clusters.values()
    bot = make_bot()
    bot.seed([
        capsule8("hb-1", "Heartbeat", silent, now() - timedelta(minutes=60)),
        capsule8("hb-2", "Heartbeat", silent, now() - timedelta(minutes=45)),  # then nothing
        capsule8("hb-3", "Heartbeat", "i-0terminated000", now() - timedelta(minutes=50)),  # no live cluster
        capsule8("hb-4", "Heartbeat", beating, now() - timedelta(minutes=2)),
    ])
    bot.start()
    bot.webhook()
    wait_for(lambda: any("ESM sensor silent" in t for t in texts(host)), 60, "the silent-sensor finding")
    bot.webhook()
    bot.wait_drained(5, timeout=60)
    posted = [t for t in texts(host) if "ESM sensor silent" in t]
    record("silent_sensor", f"silent sensor: heartbeats stop on a running host for 45 min (gap 30 min): one "
                            f"'ESM sensor silent' finding ({len(posted)}), none for a terminated host or a beating one",
           posted=len(posted))
    assert len(posted) == 1 and silent in posted[0] and "i-0terminated000" not in posted[0]
