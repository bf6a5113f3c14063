"""Replayed and redelivered Slack requests are answered without being dispatched twice.

Slack signs every request (v0 HMAC-SHA256 over the timestamp and the body) and Bolt refuses a bad,
missing or stale (older than 5 minutes) signature; but within those 5 minutes Bolt accepts the
very same signed request as often as it arrives. Anyone holding a copy of one (a logging proxy,
a shared HAR file) could replay a button click or a slash command, and Slack's own redeliveries
(`X-Slack-Retry-Num`) carry the same body under a fresh signature.

The guard runs in front of Bolt. It remembers the SHA-256 of every correctly signed body for
`retention` seconds (past Slack's 5-minute window and its retry schedule). A body it has seen
before is answered **200 with an empty body and not dispatched**: Slack (or a retrying proxy)
sees success and stops, a replayer learns nothing, and nothing runs twice. Every genuine Slack
request is unique (each carries its own trigger_id or action_ts), so no legitimate request is
lost. Requests whose signature does not verify pass through untouched, so Bolt answers them 401
as before, and they are never remembered: a forged request cannot block a genuine one.

The memory is per process: a replay that reaches another replica within the window is not
caught there (destructive actions are still claimed once in the state store).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

RETENTION_SECONDS = 15 * 60.0  # Slack's signature window is 5 min; its retries come within ~5 min
MAX_REMEMBERED = 200_000  # ~20 MB at most; only correctly signed bodies are ever remembered


class ReplayGuard:
    def __init__(
        self,
        signing_secret: str,
        *,
        retention: float = RETENTION_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._verifier = SignatureVerifier(signing_secret)
        self._retention = retention
        self._max = max_remembered
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # body digest -> forget after
        self.replays = 0

    def is_replay(self, body: str | bytes, headers: Mapping[str, str | Sequence[str]]) -> bool:
        """True when this correctly signed body was already let through; records it otherwise."""
        timestamp = _header(headers, "x-slack-request-timestamp")
        signature = _header(headers, "x-slack-signature")
        try:
            if not self._verifier.is_valid(body, timestamp, signature):
                return False  # Bolt answers it 401
        except ValueError:  # a timestamp that is not a number
            return False
        now = self._clock()
        self._forget(now)
        digest = hashlib.sha256(body.encode() if isinstance(body, str) else body).hexdigest()
        if digest in self._seen:
            self.replays += 1
            retry = _header(headers, "x-slack-retry-num")
            log.warning("Slack request seen before (%s), answered without running it again",
                        f"Slack retry {retry[:8]}" if retry else "replay")
            return True
        self._seen[digest] = now + self._retention
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return False

    @staticmethod
    def malformed(headers: Mapping[str, str | Sequence[str]]) -> bool:
        """A timestamp header that is not a number: refuse it (401) here, as Bolt would fail on
        it with a 500 instead of refusing it."""
        timestamp = _header(headers, "x-slack-request-timestamp")
        return timestamp is not None and not timestamp.strip().isdigit()

    def _forget(self, now: float) -> None:
        while self._seen:
            digest, until = next(iter(self._seen.items()))
            if until > now:
                return
            del self._seen[digest]


def _header(headers: Mapping[str, str | Sequence[str]], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            if isinstance(value, str):
                return value
            return str(value[0]) if value else None
    return None
