"""A corpus of hostile Slack requests against the real bot process: bad, missing, stale and
replayed signatures; Slack's own redeliveries; tampered button values and modal submissions;
/esm filters that try SQL injection; markup, mentions and huge values in every field the bot
renders. Each gets its documented answer, nothing runs that should not, nothing changes in the
stores, every message Slack received is escaped and within Slack's limits, and the bot stays up.

Documented answers: a bad, missing or stale signature is 401 (Bolt). A correctly signed body
seen before (a replay, or a redelivery with X-Slack-Retry-Num) is 200 with an empty body and
is not run again (handlers/replay_guard.py). A tampered button or form is acknowledged (200)
and refused in words: privately for buttons, as field errors for the form.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from bot.core.ids import ButtonValue
from bot.render.blocks import limit_violations
from emulators.slack_signing import block_actions_body, slash_command_body, view_submission_body
from tests.reliability.harness import (
    CHANNEL,
    RESPONDER,
    BotProcess,
    EmulatorHost,
    capsule8,
    minutes_ago,
    notebook_command,
    record,
)

OUTSIDER = "U0OUTSIDER"
EVIL = "<!channel> <!here|here> <!everyone> <@U0VICTIM> <#C0OTHER> *bold* _it_ ~s~ `tick` ```fence``` &amp; &lt;x&gt;"
HUGE = "<!channel>" + "\u00a0A<b>&" * 3000  # ~15,000 characters of markup-laden text
EVIL_DETECTION = f"{EVIL} Totally Not Uncategorised {'X' * 4000}"
EVIL_CLUSTER = "0101-000000-evil0001"
EVIL_HOST = "i-0evil00000000001"
TALLY: Counter[str] = Counter()  # requests sent by kind, for the figures line


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """One bot process for the whole corpus, with findings whose every field is hostile."""
    host = EmulatorHost()
    folder = tmp_path_factory.mktemp("hostile")
    host.call(host.dbx.add_cluster, EVIL_CLUSTER, name=f"{EVIL} {'n' * 3000}", creator=f"{EVIL}@example.com",
              driver_instance_id=EVIL_HOST, tags={"owner": HUGE})
    host.call(host.dbx.add_cluster, "0101-000000-plain0002", name="plain", driver_instance_id="i-0plain0000000001")
    bot = BotProcess(folder, host, ESM_RESPONDERS=RESPONDER)
    bot.seed([
        notebook_command("nb-evil", EVIL_CLUSTER, minutes_ago(12), f"{EVIL}@example.com", HUGE),
        *[capsule8(f"evil-{n}", EVIL_DETECTION, EVIL_HOST, minutes_ago(10 - n), commandLine=HUGE, filePath=EVIL,
                   processLineage=f"{EVIL} > " * 200, containerId=EVIL, origin=EVIL) for n in range(6)],
        capsule8("plain-1", "Kernel Module Loaded", "i-0plain0000000001", minutes_ago(9)),
        capsule8("plain-2", "Boot Files Modified", "i-0plain0000000001", minutes_ago(8)),
    ])
    bot.start()
    assert bot.webhook() == 202
    bot.wait_drained(8, timeout=60)
    yield host, bot
    bot.stop()
    host.close()


# ------------------------------------------------------------------------------- helpers


def findings(host: EmulatorHost) -> dict[str, dict[str, Any]]:
    """Posted findings by key."""
    return {m["metadata"]["event_payload"]["key"]: m for m in host.messages() if m.get("metadata")}


def key_with(host: EmulatorHost, text: str) -> str:
    """The finding whose message, or the details reply in its thread, shows `text`."""
    replies = [m for m in host.all_messages() if m.get("thread_ts") not in (None, m["ts"])]
    return next(k for k, m in findings(host).items()
                if text in json.dumps([m["blocks"], *(r["blocks"] for r in replies if r["thread_ts"] == m["ts"])]))


def store_snapshot(bot: BotProcess) -> dict[str, Any]:
    """Everything a hostile request must not change."""
    return {
        "actions": bot.query("SELECT finding_key, action, user_id, outcome FROM actions ORDER BY id"),
        "claims": bot.query("SELECT * FROM action_claims"),
        "suppressions": bot.query("SELECT * FROM suppressions"),
        "findings": bot.query("SELECT key, status, status_by, count FROM findings ORDER BY key"),
        "events": bot.stored_events(),
    }


def answers(host: EmulatorHost, url: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = host.call(host.slack.responses, url)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} answer(s) at {url}, got {host.call(host.slack.responses, url)}")


def click_body(host: EmulatorHost, action_id: str, value: str, user_id: str = RESPONDER, ts: str | None = None) -> tuple[bytes, str]:
    message = host.messages()[0] if ts is None else host.call(host.slack.message, CHANNEL, ts)
    url = host.call(host.slack.new_response_url, CHANNEL, message["ts"])
    body = block_actions_body(action_id=action_id, value=value, user_id=user_id, channel_id=CHANNEL,
                              message=message, response_url=url, trigger_id=host.call(host.slack.trigger_id))
    return body, url


def command_body(host: EmulatorHost, text: str, user_id: str = RESPONDER) -> tuple[bytes, str]:
    url = host.call(host.slack.new_response_url, CHANNEL)
    return slash_command_body(text=text, user_id=user_id, channel_id=CHANNEL, response_url=url), url


def send(bot: BotProcess, kind: str, body: bytes, **kwargs: Any):
    TALLY[kind] += 1
    return bot.slack_request(body, **kwargs)


# ------------------------------------------------------------------------------- signatures


def test_bad_missing_and_stale_signatures_are_401_and_run_nothing(rig):
    host, bot = rig
    before = store_snapshot(bot)
    key = key_with(host, "Boot Files Modified")
    value = ButtonValue(key, "i-0plain0000000001", None).to_json()
    urls = []
    now = int(time.time())
    cases = [
        ({"secret": "not-the-signing-secret"}, {}),
        ({"signed": False}, {}),
        ({"timestamp": now - 6 * 60}, {}),  # stale: older than Slack's 5 minutes
        ({"timestamp": now + 6 * 60}, {}),  # from the future
        ({}, {"X-Slack-Signature": "v0=" + "0" * 64}),
        ({}, {"X-Slack-Signature": "v1=deadbeef"}),
        ({}, {"X-Slack-Request-Timestamp": "not-a-number"}),
        ({}, {"X-Slack-Signature": ""}),
    ]
    for kwargs, headers in cases:
        for make in (lambda: command_body(host, "status"), lambda: click_body(host, "esm.acknowledge", value)):
            body, url = make()
            urls.append(url)
            response = send(bot, "bad signature", body, headers=headers, **kwargs)
            assert response.status_code == 401, (kwargs, headers, response.status_code, response.text)
    # a body changed after signing: the signature is for other bytes
    body, url = click_body(host, "esm.acknowledge", value)
    signed = bot.slack_request(body).request.headers  # the genuine one (runs: it is the control)
    answers(host, url)
    tampered, url2 = click_body(host, "esm.acknowledge", ButtonValue(key_with(host, "Kernel Module Loaded"), None, None).to_json())
    TALLY["bad signature"] += 1
    response = bot.slack_request(tampered, headers={"X-Slack-Signature": signed["X-Slack-Signature"],
                                                    "X-Slack-Request-Timestamp": signed["X-Slack-Request-Timestamp"]},
                                 signed=False)
    assert response.status_code == 401
    time.sleep(1.0)
    assert all(host.call(host.slack.responses, u) == [] for u in [*urls, url2]), "nothing answered: nothing ran"
    after = store_snapshot(bot)
    assert after["actions"][: len(before["actions"])] == before["actions"]
    assert len(after["actions"]) == len(before["actions"]) + 1  # the one genuine control click only
    assert bot.healthy()


# ------------------------------------------------------------------------------- replays, retries


def test_a_replayed_request_runs_once(rig):
    host, bot = rig
    key = key_with(host, "Kernel Module Loaded")
    value = ButtonValue(key, "i-0plain0000000001", None).to_json()
    body, url = click_body(host, "esm.acknowledge", value)
    before = len(bot.query("SELECT * FROM actions WHERE finding_key = ?", key))
    headers = {}
    first = send(bot, "replay", body)
    headers = {k: first.request.headers[k] for k in ("X-Slack-Signature", "X-Slack-Request-Timestamp")}
    assert first.status_code == 200
    for _ in range(3):  # the same bytes and the same valid signature, within the 5 minutes
        again = send(bot, "replay", body, headers=headers, signed=False)
        assert again.status_code == 200 and again.text == ""
    answers(host, url)
    time.sleep(0.5)
    assert len(host.call(host.slack.responses, url)) == 1
    assert len(bot.query("SELECT * FROM actions WHERE finding_key = ?", key)) == before + 1

    command, command_url = command_body(host, "status")
    first = send(bot, "replay", command)
    replayed = {k: first.request.headers[k] for k in ("X-Slack-Signature", "X-Slack-Request-Timestamp")}
    assert send(bot, "replay", command, headers=replayed, signed=False).status_code == 200
    answers(host, command_url)
    time.sleep(0.5)
    assert len(host.call(host.slack.responses, command_url)) == 1
    assert "Slack request seen before" in bot.log_text()


def test_slack_redeliveries_with_x_slack_retry_num_run_once(rig):
    host, bot = rig
    key = key_with(host, "Boot Files Modified")
    value = ButtonValue(key, "i-0plain0000000001", None).to_json()
    body, url = click_body(host, "esm.acknowledge", value)
    assert send(bot, "retry", body).status_code == 200
    answers(host, url)
    before = store_snapshot(bot)
    for attempt in (1, 2, 3):  # Slack re-signs each redelivery with a fresh timestamp
        retry = send(bot, "retry", body, timestamp=int(time.time()) + attempt,
                     headers={"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"})
        assert retry.status_code == 200 and retry.text == ""
    answers(host, url)
    time.sleep(0.5)
    assert len(host.call(host.slack.responses, url)) == 1
    assert store_snapshot(bot) == before


# ------------------------------------------------------------------------------- tampering


def test_tampered_button_values_are_refused_and_change_nothing(rig):
    host, bot = rig
    real = key_with(host, "Kernel Module Loaded")
    evil = key_with(host, "Totally Not Uncategorised")
    cases = {
        "not json": ("esm.acknowledge", "{not json", "not valid"),
        "json list": ("esm.acknowledge", "[1, 2, 3]", "not valid"),
        "wrong version": ("esm.acknowledge", json.dumps({"v": 99, "finding_key": real}), "not valid"),
        "unknown finding": ("esm.acknowledge", ButtonValue("no-such-finding", None, None).to_json(), "no longer known"),
        "sql in key": ("esm.acknowledge", ButtonValue("x' OR '1'='1", None, None).to_json(), "no longer known"),
        "huge": ("esm.acknowledge", json.dumps({"v": 1, "finding_key": "k" * 50_000}), "not valid"),
        "nested": ("esm.acknowledge", "[" * 20_000 + "]" * 20_000, "not valid"),
        "unknown action": ("esm.self_destruct", ButtonValue(real, None, None).to_json(), "not known"),
        "other cluster": ("esm.terminate_cluster", ButtonValue(evil, EVIL_HOST, "0101-000000-plain0002").to_json(), "different cluster"),
        "outsider": ("esm.terminate_cluster", ButtonValue(evil, EVIL_HOST, EVIL_CLUSTER).to_json(), "Refused"),
    }
    before = store_snapshot(bot)
    for name, (action_id, value, said) in cases.items():
        user = OUTSIDER if name == "outsider" else RESPONDER
        body, url = click_body(host, action_id, value, user_id=user)
        response = send(bot, "tampered button", body)
        assert response.status_code == 200, name
        [answer] = answers(host, url)
        assert said in answer["text"], (name, answer["text"])
    assert host.call(host.dbx.calls_to, "clusters/delete") == [], "no cluster was terminated"
    after = store_snapshot(bot)
    assert after["findings"] == before["findings"] and after["suppressions"] == before["suppressions"]
    assert after["claims"] == before["claims"]
    new = after["actions"][len(before["actions"]):]
    assert all(outcome in ("refused",) for *_, outcome in new), new  # refusals are recorded, nothing ran


def form(scope: str = "instance", patterns: str | None = "", expiry: str = "7d", reason: str | None = "tested",
         never: bool = False, on_date: str | None = None) -> dict[str, Any]:
    confirmed = [{"text": {"type": "plain_text", "text": "I confirm"}, "value": "confirmed"}] if never else []
    return {
        "scope": {"benign.scope": {"type": "radio_buttons", "selected_option": {"value": scope}}},
        "patterns": {"patterns": {"type": "plain_text_input", "value": patterns}},
        "expiry": {"benign.expiry": {"type": "static_select", "selected_option": {"value": expiry}}},
        "expiry_date": {"date": {"type": "datepicker", "selected_date": on_date}},
        "never_confirm": {"never": {"type": "checkboxes", "selected_options": confirmed}},
        "reason": {"reason": {"type": "plain_text_input", "value": reason}},
    }


def test_tampered_modal_submissions_are_refused_and_change_nothing(rig):
    host, bot = rig
    real = key_with(host, "Kernel Module Loaded")
    cases = [
        ("unknown finding", "no-such-finding", RESPONDER, form()),
        ("sql metadata", "' OR 1=1; DROP TABLE suppressions; --", RESPONDER, form()),
        ("huge metadata", "m" * 50_000, RESPONDER, form()),
        ("outsider", real, OUTSIDER, form()),
        ("sql scope", real, RESPONDER, form(scope="workspace' OR '1'='1")),
        ("invented scope", real, RESPONDER, form(scope="galaxy")),
        ("never without confirmation", real, RESPONDER, form(expiry="never")),
        ("invented expiry", real, RESPONDER, form(expiry="-1h")),
        ("past date", real, RESPONDER, form(expiry="date", on_date="1999-01-01")),
        ("huge reason", real, RESPONDER, form(reason=HUGE)),
        ("empty reason", real, RESPONDER, form(reason="   ")),
        ("bad patterns", real, RESPONDER, form(patterns="origin\n=\n' OR 1=1 --")),
        ("state not an object", real, RESPONDER, {"scope": "everywhere", "reason": ["x"]}),
    ]
    before = store_snapshot(bot)
    for name, metadata, user, values in cases:
        body = view_submission_body(callback_id="esm.mark_benign.submit", values=values, user_id=user,
                                    private_metadata=metadata, trigger_id=f"{time.time()}.{name}")
        response = send(bot, "tampered modal", body)
        assert response.status_code == 200, (name, response.text, bot.log_tail(30))
        assert response.text, (name, "accepted: the submission created a suppression")
        answer = response.json()
        assert answer.get("response_action") == "errors" and answer.get("errors"), (name, answer)
        assert all(isinstance(v, str) and len(v) <= 2000 for v in answer["errors"].values()), name
    after = store_snapshot(bot)
    assert after["suppressions"] == [] and after["findings"] == before["findings"]
    new = after["actions"][len(before["actions"]):]
    assert all(outcome == "refused" for *_, outcome in new), new


# ------------------------------------------------------------------------------- /esm injection


INJECTIONS = [
    "recent cluster=' OR '1'='1",
    "recent instance=\"i-1' OR 1=1 --\"",
    "recent detection=\"x'); DROP TABLE access.audit; --\"",
    "recent detection=\"Kernel Module Loaded' UNION SELECT * FROM access.audit --\"",
    "recent workspace=\"1 OR 1=1\"",
    "recent severity>=\"high' OR '1'='1\"",
    "recent category=\"'; DELETE FROM events; --\"",
    "recent 24h cluster=%27%20OR%201=1",
    "recent instance=i-0plain0000000001;DROP",
    "benign remove \"b1; DROP TABLE suppressions\"",
    "benign remove b1' OR '1'='1",
    "status; rm -rf /",
    "recent \"unclosed",
    "recent " + "cluster=x " * 500,
    EVIL,
    "recent detection=\"" + HUGE[:2500] + "\"",
]


def test_sql_injection_in_esm_filters_has_no_effect(rig):
    host, bot = rig
    before = store_snapshot(bot)
    audit_rows = audit_count(bot)
    for text in INJECTIONS:
        body, url = command_body(host, text)
        response = send(bot, "injection", body)
        assert response.status_code == 200, text
        if response.text:  # answered in the acknowledgement (usage errors)
            answer_text = response.json().get("text", "")
        else:
            [answer] = answers(host, url)
            answer_text = answer["text"]
        injected_all = re.search(r"\b8 events\b", answer_text)  # every stored event would mean the filter leaked
        assert not injected_all, (text, answer_text)
    after = store_snapshot(bot)
    assert after == before
    assert audit_count(bot) == audit_rows


def audit_count(bot: BotProcess) -> int:
    import duckdb

    deadline = time.monotonic() + 10
    while True:
        try:
            con = duckdb.connect(str(bot.audit_path), read_only=True)
            break
        except duckdb.IOException:  # the bot holds it for a moment: wait
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        return con.execute("SELECT count(*) FROM access.audit").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------------------- every message


MENTIONS = re.compile(r"<!(channel|here|everyone)|<#C0OTHER>|<@U0VICTIM>")


def texts_in(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from texts_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts_in(item)


def test_every_message_slack_received_is_escaped_and_within_limits(rig):
    """Runs last: looks at everything the corpus (and the hostile findings) made the bot send."""
    host, bot = rig
    # the hostile findings' own buttons, pressed for real: their answers quote the hostile values
    evil = key_with(host, "Totally Not Uncategorised")
    message = findings(host)[evil]
    for action_id in ("esm.recent_on_host", "esm.mark_benign", "esm.acknowledge", "esm.terminate_cluster"):
        button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == action_id)
        body, url = click_body(host, action_id, button["value"], ts=message["ts"])
        assert send(bot, "hostile content", body).status_code == 200
        answers(host, url)
    bot.wait_drained(bot.stored_events(), timeout=30)

    bodies = [params for method, params in host.calls()
              if method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")]
    checked, problems, pings = 0, [], []
    for params in bodies:
        blocks = params.get("blocks") or []
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        text = params.get("text")
        checked += 1
        problems += limit_violations(blocks, text) if blocks or text else []
        pings += [t for t in [text or "", *texts_in(blocks)] if MENTIONS.search(t)]
    views = host.call(lambda: host.slack.views)
    for view in views:
        problems += limit_violations(view.get("blocks") or [])
    record(
        "hostile_slack",
        f"hostile slack: {sum(TALLY.values())} hostile requests ({', '.join(f'{n} {k}' for k, n in sorted(TALLY.items()))}); "
        f"0 ran an action they should not, store unchanged; {checked} messages and {len(views)} views Slack received "
        f"checked: {len(problems)} over a Slack limit, {len(pings)} live mentions; bot up: {bot.healthy()}",
        requests=sum(TALLY.values()), by_kind=dict(TALLY), messages_checked=checked, views_checked=len(views),
        limit_violations=len(problems), live_mentions=len(pings),
    )
    assert problems == []
    assert pings == [], [p[:150] for p in pings]
    assert bot.healthy() and bot.alive()
    assert "Traceback" not in bot.log_text(), bot.log_tail()
