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

The state store decides (#11): each new digest is written to its replay ledger
(`ReplayLedger.first_seen`, one INSERT … ON CONFLICT DO NOTHING), so a replay after a restart, or
to another replica on the same PostgreSQL store, finds it and is not run again. The memory here is
only a fast path for this process's own repeats. If the store cannot answer within
`ledger_timeout` (down, or locked), the memory decides alone and the warning says so: every
request that could change anything needs that same store to run, so none can run twice through
that gap; only a read-only answer could be given again, to the original requester.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

from slack_sdk.signature import SignatureVerifier

from bot.core.ports import ReplayLedger, StoreError

log = logging.getLogger(__name__)

RETENTION_SECONDS = 15 * 60.0  # Slack's signature window is 5 min; its retries come within ~5 min
MAX_REMEMBERED = 200_000  # ~20 MB at most; only correctly signed bodies are ever remembered
LEDGER_TIMEOUT = 2.0  # seconds the state store may take to decide (Slack wants an answer within 3 s)
KEY_PREFIX = "slack:"  # the ledger's keys: "slack:<sha256 of the body>"


class ReplayGuard:
    def __init__(
        self,
        signing_secret: str,
        *,
        ledger: ReplayLedger | None = None,
        retention: float = RETENTION_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
        ledger_timeout: float = LEDGER_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._verifier = SignatureVerifier(signing_secret)
        self._ledger = ledger
        self._retention = retention
        self._max = max_remembered
        self._ledger_timeout = ledger_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # body digest -> forget after
        self.replays = 0
        self.ledger_failures = 0  # times the store could not decide and the memory did alone

    async def is_replay(self, body: str | bytes, headers: Mapping[str, str | Sequence[str]]) -> bool:
        """True when this correctly signed body was already let through (by this process, before
        a restart, or by another replica); records it otherwise."""
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
            return self._replayed(headers, "")
        self._seen[digest] = now + self._retention
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        if self._ledger is None or await self._first_in_store(digest):
            return False
        return self._replayed(headers, " (by another replica, or before a restart)")

    async def _first_in_store(self, digest: str) -> bool:
        """The store's answer; True (let through, the memory decided) when it fails or is slow.
        A slow write is not cancelled, only no longer waited for: it still records the key."""
        assert self._ledger is not None
        expires_at = datetime.fromtimestamp(self._wall_clock() + self._retention, tz=timezone.utc)
        task = asyncio.ensure_future(self._ledger.first_seen(KEY_PREFIX + digest, expires_at))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._ledger_timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.add_done_callback(_ignore_outcome)
            return self._decided_in_memory(f"no answer within {self._ledger_timeout:g}s")
        try:
            return task.result()
        except StoreError as exc:
            return self._decided_in_memory(str(exc))

    def _decided_in_memory(self, reason: str) -> bool:
        self.ledger_failures += 1
        log.warning("replay ledger unavailable (%s): this Slack request was checked in this process's memory only",
                    reason[:300])
        return True

    def _replayed(self, headers: Mapping[str, str | Sequence[str]], where: str) -> bool:
        self.replays += 1
        retry = _header(headers, "x-slack-retry-num")
        log.warning("Slack request seen before%s (%s), answered without running it again", where,
                    f"Slack retry {retry[:8]!r}" if retry else "replay")
        return True

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


def _ignore_outcome(task: asyncio.Future[bool]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure was already reported as "unavailable"


def _header(headers: Mapping[str, str | Sequence[str]], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            if isinstance(value, str):
                return value
            return str(value[0]) if value else None
    return None
