"""POST /webhooks/dbsql: a Databricks SQL alert says there may be new Capsule8 rows.

HTTP Basic auth is the only auth a Databricks webhook destination supports; it is checked in
constant time and fails closed. The body is validated, the sync is triggered in the
background, and the answer goes back at once.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Callable

from aiohttp import web

from bot.observability import correlation, metrics
from bot.config import Secret
from bot.core.alert_payload import PayloadError, parse_alert_payload

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
BODY_TIMEOUT_SECONDS = 10.0


class BasicAuth:
    def __init__(self, user: str | None, password: Secret | None):
        # with no credentials configured every request is refused (fail closed)
        self._expected = None if not (user and password) else (user.encode(), password.reveal().encode())

    def allows(self, header: str | None) -> bool:
        if self._expected is None or not header or header[:6].lower() != "basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # compare both parts every time: no early exit that would time the user name
        user_ok = hmac.compare_digest(user, self._expected[0])
        password_ok = hmac.compare_digest(password, self._expected[1])
        return user_ok and password_ok


def _problem(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (chunked bodies have no length)."""
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_handler(auth: BasicAuth, trigger_sync: Callable[[str], str]):
    async def handle(request: web.Request) -> web.Response:
        if not auth.allows(request.headers.get("Authorization")):
            return _problem(401, "authentication required", **{"WWW-Authenticate": 'Basic realm="esm-bot"'})
        if request.content_type != "application/json":
            return _problem(415, f"content type must be application/json, got {request.content_type or 'none'}")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:  # a client that trickles its body must not hold a handler for ever
            body = await asyncio.wait_for(_read_bounded(request, MAX_BODY_BYTES), BODY_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            return _problem(408, f"body not received within {BODY_TIMEOUT_SECONDS:g}s")
        if body is None:
            return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            notice = parse_alert_payload(body)
        except PayloadError as exc:
            return _problem(400, f"not a Databricks SQL alert payload: {exc}")
        cid = correlation.from_header(request.headers.get("X-Request-Id"))
        with correlation.bound(cid):  # the sync task this starts copies the id from here
            sync = trigger_sync(f"webhook:{notice.alert_id}")
            log.info("alert %s (%s payload) triggered a sync: %s", notice.alert_id, notice.shape, sync,
                     extra={"alert_id": notice.alert_id, "payload_shape": notice.shape, "sync": sync})
        metrics.WEBHOOKS.inc()
        answer = {"accepted": True, "alert_id": notice.alert_id, "sync": sync, "correlation_id": cid}
        return web.json_response(answer, status=202, headers={"X-Request-Id": cid})

    return handle
