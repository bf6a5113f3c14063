"""Inbound Slack requests built by emulators.slack_signing verify as Slack's own would."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from emulators.slack_signing import (
    block_actions_body,
    signed_form_headers,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def test_signed_headers_verify_with_slack_sdk():
    body = slash_command_body(text="recent i-0abc")
    headers = signed_headers(SECRET, body)

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)


def test_slack_documented_example_signature():
    # The worked example from Slack's "Verifying requests from Slack" guide.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    headers = signed_headers("8f742231b10e8888abcd99yyyzzz85a5", body, timestamp=1531420618)

    assert headers["X-Slack-Signature"] == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_tampered_body_or_stale_timestamp_fails_verification():
    body = slash_command_body()
    verifier = SignatureVerifier(SECRET)

    assert not verifier.is_valid_request(body + b"x", signed_headers(SECRET, body))
    assert not verifier.is_valid_request(body, signed_headers(SECRET, body, int(time.time()) - 600))
    assert not verifier.is_valid_request(body, signed_headers("other-secret", body))


def test_interaction_bodies_carry_a_json_payload_and_verify():
    for body in (
        block_actions_body(action_id="acknowledge", value='{"key":"k"}'),
        view_submission_body(callback_id="benign", private_metadata="k"),
    ):
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        headers = signed_form_headers(SECRET, body)

        assert payload["type"] in ("block_actions", "view_submission")
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert SignatureVerifier(SECRET).is_valid_request(body, headers)


def test_slash_command_body_has_slacks_fields():
    fields = parse_qs(slash_command_body(command="/esm", text="ack 123", response_url="http://r").decode())

    assert fields["command"] == ["/esm"] and fields["text"] == ["ack 123"]
    assert {"team_id", "channel_id", "user_id", "trigger_id", "response_url"} <= set(fields)
