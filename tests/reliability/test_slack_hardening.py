"""Slack-side hardening (#11), "never blind, never silent", against the real bot process
(`esm-bot serve`) and the Slack emulator: who can read, which workspace, replays across restarts
and replicas, live mentions in the benign notes, bad bytes, and concurrent benign submissions.

Each scenario reports its figures with `record()` (README, Reliability). Requests are signed
exactly as Slack signs them; answers are read where Slack would receive them (response_url
bodies, messages, views), and what must not change is read from the state store itself.
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from emulators.slack_signing import (
    TEAM,
    block_actions_payload,
    payload_body,
    slash_command_body,
    view_submission_body,
    view_submission_payload,
)
from tests.reliability.harness import (
    CHANNEL,
    RESPONDER,
    BotProcess,
    EmulatorHost,
    capsule8,
    minutes_ago,
    record,
)

SECOND = "U0SECOND"  # a second responder
READER = "U0READER"
OUTSIDER = "U0OUTSIDER"
RESPONDERS = f"{RESPONDER} {SECOND}"
MENTIONS = re.compile(r"<!(channel|here|everyone)|<#C0OTHER>|<@U0VICTIM>")
REFUSED = "Refused"


# ------------------------------------------------------------------------------- helpers


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s")
        time.sleep(0.05)


def posted(host: EmulatorHost) -> dict[str, dict[str, Any]]:
    """The posted findings (top-level messages) by finding key."""
    return {m["metadata"]["event_payload"]["key"]: m for m in host.messages()
            if (m.get("metadata") or {}).get("event_type") == "esm_finding"}


def finding_with(host: EmulatorHost, text: str) -> dict[str, Any]:
    return next(m for m in posted(host).values() if text in json.dumps(m["blocks"]))


def key_of(message: dict[str, Any]) -> str:
    return message["metadata"]["event_payload"]["key"]


def answers(host: EmulatorHost, url: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    wait_for(lambda: len(host.call(host.slack.responses, url)) >= count, timeout, f"{count} answer(s) at {url}")
    return host.call(host.slack.responses, url)


def answer_text(host: EmulatorHost, url: str) -> str:
    return answers(host, url)[0]["text"]


def command(host: EmulatorHost, bot: BotProcess, text: str, user: str = RESPONDER, **body: Any) -> tuple[requests.Response, str]:
    url = host.call(host.slack.new_response_url, CHANNEL)
    request = slash_command_body(text=text, user_id=user, channel_id=CHANNEL, response_url=url, **body)
    return bot.slack_request(request), url


def click_payload(host: EmulatorHost, message: dict[str, Any], action_id: str, user: str = RESPONDER) -> tuple[dict[str, Any], str]:
    current = host.call(host.slack.message, CHANNEL, message["ts"]) or message
    button = next(e for b in current["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == action_id)
    url = host.call(host.slack.new_response_url, CHANNEL, message["ts"])
    payload = block_actions_payload(action_id=action_id, value=button["value"], user_id=user, channel_id=CHANNEL,
                                    message=current, response_url=url, trigger_id=host.call(host.slack.trigger_id))
    return payload, url


def signed_headers_of(response: requests.Response) -> dict[str, str]:
    return {k: response.request.headers[k] for k in ("X-Slack-Signature", "X-Slack-Request-Timestamp")}


def replay(bot: BotProcess, body: bytes, headers: dict[str, str]) -> requests.Response:
    """The very same bytes under the very same signature (a copy of a genuine request)."""
    return bot.slack_request(body, headers=headers, signed=False)


def benign_form(scope: str = "instance", patterns: str = "", reason: str = "known lab activity") -> dict[str, Any]:
    """view.state.values of the Mark benign modal, as Slack reports them."""
    return {
        "scope": {"benign.scope": {"type": "radio_buttons", "selected_option": {"value": scope}}},
        "patterns": {"patterns": {"type": "plain_text_input", "value": patterns}},
        "expiry": {"benign.expiry": {"type": "static_select", "selected_option": {"value": "7d"}}},
        "expiry_date": {"date": {"type": "datepicker", "selected_date": None}},
        "never_confirm": {"never": {"type": "checkboxes", "selected_options": []}},
        "reason": {"reason": {"type": "plain_text_input", "value": reason}},
    }


def submission(finding_key: str, user: str, values: dict[str, Any] | None = None) -> bytes:
    return view_submission_body(callback_id="esm.mark_benign.submit", values=values or benign_form(),
                                user_id=user, private_metadata=finding_key,
                                trigger_id=f"{time.time():.6f}.{user}")


def at_once(*sends: Any) -> list[requests.Response]:
    """Run the sends in threads released by one barrier: they reach the bot(s) together."""
    barrier = threading.Barrier(len(sends))

    def go(send: Any) -> requests.Response:
        barrier.wait()
        return send()

    with ThreadPoolExecutor(len(sends)) as pool:
        return list(pool.map(go, sends))


def started(bot: BotProcess, rows: list[dict[str, Any]], findings: int) -> BotProcess:
    """Seed the audit file, start the bot, sync, and wait until `findings` findings are posted."""
    bot.seed(rows)
    bot.start()
    assert bot.webhook() == 202
    bot.wait_drained(len(rows), timeout=90)
    wait_for(lambda: len(posted(bot.host)) >= findings, 30, f"{findings} findings posted")
    return bot


def plain_rows(prefix: str, count: int, detection: str = "Root Certificate Store Modified") -> list[dict[str, Any]]:
    """`count` findings: one event each, on hosts of their own."""
    return [capsule8(f"{prefix}-{n}", detection, f"i-0{prefix}{n:012d}", minutes_ago(5 + n),
                     filePath=f"/usr/local/share/ca-certificates/{prefix}-{n}.crt") for n in range(count)]


# ------------------------------------------------------------------------------- 1. who can read


def test_who_can_read_suppressions_recent_and_status(make_bot, host):
    """ESM_READERS set: /esm recent, /esm status, /esm benign list and Recent on this host are for
    readers and responders; everyone else is refused in words and nothing is shown to them.
    ESM_READERS unset: recent and status stay open to the workspace, the suppressions do not."""
    rows = plain_rows("read", 2)
    bot = started(make_bot(ESM_RESPONDERS=RESPONDERS, ESM_READERS=READER), rows, 2)
    finding = next(iter(posted(host).values()))
    response = bot.slack_request(submission(key_of(finding), RESPONDER, benign_form(patterns="origin=*")))
    assert response.status_code == 200 and not response.text, response.text  # b1 exists: something to hide

    refused = allowed = 0
    for text in ("recent", "recent 24h detection=\"Root Certificate Store Modified\"", "status", "benign list",
                 "benign"):
        for user in (OUTSIDER, "W0GUEST"):
            _, url = command(host, bot, text, user)
            said = answer_text(host, url)
            assert said.startswith(REFUSED) and "b1" not in said and "origin" not in said, (text, said)
            refused += 1
        for user in (READER, RESPONDER):
            _, url = command(host, bot, text, user)
            said = answer_text(host, url)
            assert not said.startswith(REFUSED), (text, user, said)
            allowed += 1
    # a reader reads; removing is still for responders only
    _, url = command(host, bot, "benign list", READER)
    assert "b1" in answer_text(host, url) and "origin=*" in answer_text(host, url)
    _, url = command(host, bot, "benign remove b1", READER)
    assert answer_text(host, url).startswith(REFUSED)
    # Recent on this host is the same data as /esm recent
    other = next(m for k, m in posted(host).items() if k != key_of(finding))
    for user, expect_refused in ((OUTSIDER, True), (READER, False)):
        payload, url = click_payload(host, other, "esm.recent_on_host", user)
        assert bot.slack_request(payload_body(payload)).status_code == 200
        said = answer_text(host, url)
        assert said.startswith(REFUSED) == expect_refused, (user, said)
        refused, allowed = refused + expect_refused, allowed + (not expect_refused)
    assert bot.scalar("SELECT count(*) FROM suppressions WHERE removed_at IS NULL") == 1
    bot.stop()

    # ESM_READERS unset: the audit data is open to the workspace, the suppressions are not
    bot = make_bot(ESM_RESPONDERS=RESPONDERS).start()
    open_answers = 0
    for text in ("recent", "status"):
        _, url = command(host, bot, text, OUTSIDER)
        assert not answer_text(host, url).startswith(REFUSED), text
        open_answers += 1
    _, url = command(host, bot, "benign list", OUTSIDER)
    assert answer_text(host, url).startswith(REFUSED)
    refused += 1
    record("who_can_read",
           f"who can read: with ESM_READERS set, {refused} requests by users in neither list (/esm recent, status, "
           f"benign list, Recent on this host) refused, 0 suppression details shown to them; {allowed} by readers "
           f"and responders answered; ESM_READERS unset: recent and status open ({open_answers} answered), "
           "benign list still refused",
           refused=refused, allowed=allowed, open_when_unset=open_answers)


# ------------------------------------------------------------------------------- 2. which workspace


def test_requests_from_another_workspace_are_refused_before_anything_runs(make_bot, host):
    rows = plain_rows("team", 2)
    bot = started(make_bot(ESM_RESPONDERS=RESPONDERS, ESM_SLACK_TEAM_ID=TEAM["id"]), rows, 2)
    finding = next(iter(posted(host).values()))
    marker = "secret-marker-7f1c"  # in every foreign body: never in the log
    foreign: list[tuple[str, bytes, str | None]] = []  # (what, body, response_url)

    for team in ("T0OTHER", ""):
        url = host.call(host.slack.new_response_url, CHANNEL)
        body = slash_command_body(text=f"status {marker}", user_id=RESPONDER, channel_id=CHANNEL,
                                  response_url=url, team_id=team)
        foreign.append((f"command from {team or 'no team'}", body, url))
    for action in ("esm.acknowledge", "esm.recent_on_host"):
        payload, url = click_payload(host, finding, action)
        payload["team"] = {"id": "T0OTHER", "domain": marker}
        payload["user"]["team_id"] = "T0OTHER"
        foreign.append((f"click {action}", payload_body(payload), url))
    view = view_submission_payload(callback_id="esm.mark_benign.submit", values=benign_form(reason=marker),
                                   user_id=RESPONDER, private_metadata=key_of(finding))
    view["team"] = {"id": "T0OTHER", "domain": marker}
    view["view"]["team_id"] = "T0OTHER"
    foreign.append(("view submission", payload_body(view), None))
    event = json.dumps({"type": "event_callback", "team_id": "T0OTHER", "api_app_id": "A0ESM", "event_id": marker,
                        "event": {"type": "app_mention", "user": RESPONDER, "text": marker, "channel": CHANNEL}})
    foreign.append(("event", event.encode(), None))

    before = (bot.query("SELECT action, user_id FROM actions"), bot.query("SELECT * FROM suppressions"))
    for what, body, _ in foreign:
        headers = {"Content-Type": "application/json"} if body.startswith(b"{") else {}
        response = bot.slack_request(body, headers=headers)
        assert response.status_code == 403 and response.text == "", (what, response.status_code, response.text)
    time.sleep(1.0)
    assert all(host.call(host.slack.responses, url) == [] for *_, url in foreign if url), "nothing answered"
    assert (bot.query("SELECT action, user_id FROM actions"), bot.query("SELECT * FROM suppressions")) == before
    log = bot.log_text()
    assert log.count("Slack request refused: it comes from team") == len(foreign), "one line per request"
    assert marker not in log, "the body is never logged"
    # the bot's own workspace is served as before
    _, url = command(host, bot, "status")
    assert answer_text(host, url).startswith("*esm-bot status*")
    payload, url = click_payload(host, finding, "esm.acknowledge")
    assert bot.slack_request(payload_body(payload)).status_code == 200
    assert "acknowledged" in answer_text(host, url)
    bot.stop()

    # Enterprise Grid: the org must match too
    bot = make_bot(ESM_RESPONDERS=RESPONDERS, ESM_SLACK_ENTERPRISE_ID="E0ESMORG").start()
    refused_org = 0
    for org in ("E0OTHERORG", None):
        response, url = command(host, bot, "status", enterprise_id=org)
        assert response.status_code == 403
        refused_org += 1
    response, url = command(host, bot, "status", enterprise_id="E0ESMORG")
    assert response.status_code == 200 and answer_text(host, url).startswith("*esm-bot status*")
    time.sleep(0.5)
    record("other_workspace",
           f"other workspaces: {len(foreign) + refused_org} signed requests from another team or Enterprise Grid org "
           f"(or naming none: commands, buttons, a view submission, an event) refused 403 before any listener ran; "
           f"0 answered, stores unchanged, one log line each, body never logged; the bot's own workspace served",
           refused=len(foreign) + refused_org)


# ------------------------------------------------------------------------------- 3. replays


def test_a_replay_after_a_restart_does_not_run_again(make_bot, host):
    rows = plain_rows("rst", 1)
    bot = started(make_bot(ESM_RESPONDERS=RESPONDERS), rows, 1)
    finding = next(iter(posted(host).values()))
    payload, click_url = click_payload(host, finding, "esm.acknowledge")
    click = payload_body(payload)
    first = bot.slack_request(click)
    assert first.status_code == 200
    answers(host, click_url)
    status_body = slash_command_body(text="status", user_id=RESPONDER, channel_id=CHANNEL,
                                     response_url=(status_url := host.call(host.slack.new_response_url, CHANNEL)))
    first_status = bot.slack_request(status_body)
    answers(host, status_url)
    captured = [(click, signed_headers_of(first)), (status_body, signed_headers_of(first_status))]

    replays = 0
    for restart in ("SIGKILL", "stop"):
        bot.kill() if restart == "SIGKILL" else bot.stop()
        bot.start()
        for body, headers in captured:
            again = replay(bot, body, headers)
            assert again.status_code == 200 and again.text == "", (restart, again.status_code, again.text)
            replays += 1
        # Slack's own redelivery of the click: the same body, freshly signed
        retry = bot.slack_request(click, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        assert retry.status_code == 200 and retry.text == ""
        replays += 1
    time.sleep(1.0)
    assert len(host.call(host.slack.responses, click_url)) == 1 and len(host.call(host.slack.responses, status_url)) == 1
    assert bot.query("SELECT action, outcome FROM actions WHERE finding_key = ?", key_of(finding)) == [
        ("esm.acknowledge", "done")]
    assert "seen before (by another replica, or before a restart)" in bot.log_text()
    record("replay_restart",
           f"replays across restarts: {replays} replayed or redelivered signed requests (a button click, "
           "/esm status) after a SIGKILL and after a clean restart: all answered 200 with an empty body, 0 ran "
           "again (1 audit record, 1 answer each)",
           replays=replays)


class Replicas:
    """Two `esm-bot serve` replicas, a and b, on one PostgreSQL store (the test's own schema); a
    syncs the audit rows, b starts once a has posted every finding."""

    def __init__(self, host: EmulatorHost, pg_url: str, folder: Any):
        self.pg_url = pg_url
        env = {"ESM_STATE_URL": pg_url, "ESM_RESPONDERS": RESPONDERS}
        self.a = BotProcess(folder / "a", host, **env)
        self.b = BotProcess(folder / "b", host, **env)
        self.host = host

    def start(self, rows: list[dict[str, Any]], findings: int) -> "Replicas":
        self.a.seed(rows)
        self.a.start()
        assert self.a.webhook() == 202
        wait_for(lambda: len(posted(self.host)) == findings and self.db(
            "SELECT count(*) FROM outbox WHERE state = 'pending'") == [(0,)], 90, "findings posted by replica a")
        self.b.start()
        return self

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


@pytest.fixture
def replicas(host, pg_url, tmp_path):
    pair = Replicas(host, pg_url, tmp_path)
    yield pair
    pair.stop()


def test_a_replay_to_another_replica_does_not_run_again(replicas, host):
    """A request let through by one replica is never run again by the other, nor after the
    other's SIGKILL and restart: the replay ledger is the shared store's."""
    a, b = replicas.start(plain_rows("rep", 1), 1).a, replicas.b
    [finding] = posted(host).values()
    payload, url = click_payload(host, finding, "esm.acknowledge")
    body = payload_body(payload)
    first = a.slack_request(body)
    assert first.status_code == 200
    answers(host, url)
    headers = signed_headers_of(first)
    replays = 0
    for target in (b, a):
        again = replay(target, body, headers)
        assert again.status_code == 200 and again.text == ""
        replays += 1
    retry = b.slack_request(body, headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200 and retry.text == ""
    replays += 1
    b.kill()
    b.start()
    assert replay(b, body, headers).text == ""
    replays += 1
    time.sleep(1.0)
    assert len(host.call(host.slack.responses, url)) == 1
    assert replicas.db("SELECT count(*) FROM actions WHERE finding_key = %s", key_of(finding)) == [(1,)]
    assert "seen before (by another replica, or before a restart)" in b.log_text()
    record("replay_replicas",
           f"replays across replicas: 2 `esm-bot serve` processes on one PostgreSQL store; {replays} replays of a "
           "click let through by one (to the other, to itself, a Slack retry to the other, to the other after its "
           "SIGKILL and restart): 0 ran again (1 audit record, 1 answer)",
           replays=replays)


# ------------------------------------------------------------------------------- 4. live mentions


HOSTILE_DETECTION = "<@U0VICTIM> <!channel> Hidden <#C0OTHER> Detection"
HOSTILE_HOST = "i-0<@U0VICTIM><!here>"


def test_a_hostile_detection_name_and_instance_id_never_become_live_mentions(make_bot, host):
    """Mark benign, /esm benign list, /esm benign remove on a finding whose detection name and
    instance id are mentions: every note, answer and view Slack receives keeps them inert."""
    row = capsule8("hostile-1", HOSTILE_DETECTION, HOSTILE_HOST, minutes_ago(3), origin="container")
    bot = started(make_bot(ESM_RESPONDERS=RESPONDERS), [row], 1)
    finding = finding_with(host, "Hidden")
    payload, url = click_payload(host, finding, "esm.mark_benign")
    assert bot.slack_request(payload_body(payload)).status_code == 200
    assert answer_text(host, url) == "Opened the benign form"
    hostile_form = benign_form(patterns="origin=<@U0VICTIM>*", reason="<!channel> <@U0VICTIM> lab")
    response = bot.slack_request(submission(key_of(finding), RESPONDER, hostile_form))
    assert response.status_code == 200 and response.text == "", response.text
    again = bot.slack_request(submission(key_of(finding), SECOND, hostile_form))
    assert "already benign" in again.json()["errors"]["reason"] and "no longer offered" in again.json()["errors"]["reason"]
    texts = []
    for text in ("benign list", "benign remove b1", "benign remove <@U0VICTIM>", "benign list"):
        _, url = command(host, bot, text)
        texts.append(answer_text(host, url))
    assert "b1" in texts[0] and texts[1].startswith("Removed suppression `b1`")
    bot.wait_drained(1, timeout=30)
    notes = [m["text"] for m in host.call(host.slack.thread, CHANNEL, finding["ts"])]
    assert any("marked this finding benign" in n for n in notes) and any("removed benign" in n for n in notes), notes

    bodies = [(method, params) for method, params in host.calls()
              if method in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "views.open")]
    live = [f"{method}: {text[max(0, found.start() - 80):found.end() + 20]}"
            for method, params in bodies for text in shown_texts(params) for found in MENTIONS.finditer(text)]
    record("live_mentions",
           f"live mentions: a detection named `{HOSTILE_DETECTION[:14]}…` on instance `{HOSTILE_HOST}` marked benign "
           f"(reason and patterns mentions too), listed and removed: {len(bodies)} messages, answers and views Slack "
           f"received, {len(notes)} thread notes; {len(live)} live mentions",
           bodies=len(bodies), notes=len(notes), live_mentions=len(live))
    assert live == [], live[:5]


def shown_texts(params: dict[str, Any]) -> list[str]:
    """Every text of a Slack call that Slack renders as mrkdwn (where a mention comes alive): the
    message's `text`, and each mrkdwn text object of its blocks or view. plain_text objects and
    input values show markup as typed, so a `<@U…>` there is only text."""
    found = [params.get("text") or ""] if params.get("mrkdwn", True) is not False else []
    for name in ("blocks", "view"):
        value = params.get(name)
        value = json.loads(value) if isinstance(value, str) else value
        found += list(mrkdwn_texts(value))
    return found


def mrkdwn_texts(node: Any):
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from mrkdwn_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from mrkdwn_texts(item)


# ------------------------------------------------------------------------------- 5. bad bytes


BAD_BODIES = {
    "invalid UTF-8": b"command=%2Fesm&text=\xff\xfe\xfd",
    "Latin-1": "command=/esm&text=caf\xe9".encode("latin-1"),
    "overlong encoding": b"text=\xc0\xaf\xc0\xaf",
    "lone surrogate": b"payload=\xed\xa0\x80",
    "truncated sequence": b"payload={\"type\":\"block_actions\xe2\x82",
    "payload is not JSON": b"payload=not-json",
    "payload of invalid UTF-8 escapes": b"payload=%FF%FE%FD",
    "payload is a list": b"payload=%5B1%2C2%5D",
    "payload is a string": b"payload=%22x%22",
    "JSON list": b"[1, 2, 3]",
    "deeply nested JSON": b"[" * 50_000 + b"]" * 50_000,
    "broken JSON": b"{\"type\": ",
}


def test_bad_bytes_get_400_never_a_500(make_bot, host):
    bot = make_bot(ESM_RESPONDERS=RESPONDERS).start()
    statuses: dict[str, tuple[int, int]] = {}
    for name, body in BAD_BODIES.items():
        json_type = body[:1] in (b"[", b"{")
        extra = {"Content-Type": "application/json"} if json_type else {}
        signed = bot.slack_request(body, headers=extra)
        unsigned = requests.post(bot.url + "/slack/events", data=body, timeout=15,
                                 headers={"Content-Type": "application/json" if json_type else
                                          "application/x-www-form-urlencoded"})
        statuses[name] = (signed.status_code, unsigned.status_code)
        assert signed.status_code == 400, (name, signed.status_code, signed.text)
        assert unsigned.status_code in (400, 401), (name, unsigned.status_code)
        assert "Traceback" not in signed.text and len(signed.text) < 200
    assert bot.healthy() and bot.alive()
    log = bot.log_text()
    assert "Traceback" not in log and "Error handling request" not in log, bot.log_tail()
    assert log.count("Slack request refused (400)") == 2 * len(BAD_BODIES)
    _, url = command(host, bot, "help")  # and it still serves
    assert "esm-bot" in answer_text(host, url)
    record("bad_bytes",
           f"bad bytes: {len(BAD_BODIES)} malformed bodies (invalid UTF-8, overlong and truncated sequences, "
           f"payloads that are not JSON objects, 50,000-deep JSON), each signed and unsigned: "
           f"{sum(s == 400 for s, _ in statuses.values())} of {len(statuses)} signed ones 400, 0 answered 500, "
           "0 tracebacks, one log line each without the body, the bot stayed up",
           bodies=len(BAD_BODIES), statuses=statuses)


# ------------------------------------------------------------------------------- 6. concurrent benign


def test_two_responders_submitting_the_same_suppression_at_once_make_one(make_bot, host):
    rounds = 6
    bot = started(make_bot(ESM_RESPONDERS=RESPONDERS), plain_rows("race", rounds), rounds)
    outcomes = []
    for finding in posted(host).values():
        key = key_of(finding)
        responses = at_once(lambda: bot.slack_request(submission(key, RESPONDER)),
                            lambda: bot.slack_request(submission(key, SECOND)))
        assert all(r.status_code == 200 for r in responses)
        closed = [r for r in responses if not r.text]
        told = [r.json()["errors"]["reason"] for r in responses if r.text]
        assert len(closed) == 1 and len(told) == 1, [r.text for r in responses]
        assert "already" in told[0].lower(), told
        outcomes.append("store rule" if "already hides these events" in told[0] else "status check")
    made = bot.query("SELECT finding_key, count(*) FROM suppressions GROUP BY finding_key")
    assert sorted(n for _, n in made) == [1] * rounds, made
    by_rule = outcomes.count("store rule")
    recorded = "SELECT count(*) FROM actions WHERE action = 'esm.mark_benign' AND outcome = 'already'"
    wait_for(lambda: bot.scalar(recorded) == by_rule, 10, "every refusal by the store rule in the audit trail")
    record("concurrent_benign",
           f"concurrent benign: {rounds} findings, each submitted by 2 responders at the same moment to one bot: "
           f"{len(made)} suppressions (one each); {rounds} second submitters told it already exists, {by_rule} by "
           f"the store's uniqueness rule (recorded in the audit trail), {rounds - by_rule} by the finding being "
           "benign already",
           rounds=rounds, suppressions=len(made), by_store_rule=outcomes.count("store rule"))


def test_two_responders_on_two_replicas_submitting_at_once_make_one_suppression(replicas, host):
    """The same race across processes: one submission to each replica of one PostgreSQL store."""
    rounds = 5
    replicas.start(plain_rows("rep", rounds), rounds)
    outcomes = []
    for finding in posted(host).values():
        key = key_of(finding)
        responses = at_once(lambda: replicas.a.slack_request(submission(key, RESPONDER)),
                            lambda: replicas.b.slack_request(submission(key, SECOND)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        told = [r.json()["errors"]["reason"] for r in responses if r.text]
        assert len(told) == 1 and "already" in told[0].lower(), [r.text for r in responses]
        outcomes.append("store rule" if "already hides these events" in told[0] else "status check")
    made = replicas.db("SELECT finding_key, count(*) FROM suppressions GROUP BY finding_key")
    assert sorted(n for _, n in made) == [1] * rounds, made
    by_rule = outcomes.count("store rule")
    record("concurrent_benign_replicas",
           f"concurrent benign across replicas: {rounds} findings, each submitted by 2 responders at the same moment, "
           f"one to each of 2 replicas on one PostgreSQL store: {len(made)} suppressions (one each); {rounds} told it "
           f"already exists, {by_rule} by the store's uniqueness rule, {rounds - by_rule} by the finding being "
           "benign already",
           rounds=rounds, suppressions=len(made), by_store_rule=by_rule)
