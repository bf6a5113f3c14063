"""Chat over slack_sdk's AsyncWebClient.

Every Slack failure leaves this module as a `ChatError`: `retry_after` when Slack asked us to
wait, `permanent` when an identical retry cannot succeed. The bot token is held only by the
client; it never appears in a message, a log line or a repr.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.observability import metrics
from bot.core.ports import ChatError

DEFAULT_API_URL = "https://slack.com/api/"

# Slack reports its own trouble as HTTP 5xx, 429 or one of these error names. Any other
# `ok: false` (invalid_auth, channel_not_found, not_in_channel, message_not_found,
# invalid_blocks, msg_too_long, missing_scope, ...) is a verdict on the request itself, which an
# identical retry would only repeat: those are permanent.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)
HISTORY_PAGE = 100
# slack_sdk's files_upload_v2 calls these two methods, with the upload itself between them
UPLOAD_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
UPLOAD = "files_upload_v2"


class BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 inline only when Slack's Retry-After is short.

    Why not surface every 429: the per-channel posting limit (about 1 message per second)
    answers with a Retry-After of a second or two, and absorbing that here keeps callers simple.
    Why not retry every 429 (the stock handler): a long Retry-After would park an outbox worker
    or an interaction handler for that long; past `max_wait` the 429 is surfaced as a
    ChatError with `retry_after` so the caller can reschedule instead of blocking.
    """

    def __init__(self, max_retry_count: int, max_wait: float, jitter: float = 0.25):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self.jitter = jitter

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        return _retry_after(response.headers) <= self.max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response.headers if response else {})
        await asyncio.sleep(wait + random.uniform(0, self.jitter))
        state.increment_current_attempt()


class ProportionalJitter(Jitter):
    """Up to +50% of the backoff. slack_sdk's RandomJitter adds up to a whole second whatever
    the backoff, which would make a short configured backoff meaningless."""

    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random() / 2)


def retry_handlers(
    max_retries: int, backoff: float, max_rate_limit_wait: float, *, idempotent: bool = True
) -> list[AsyncRetryHandler]:
    """slack_sdk shares one attempt counter across handlers, so `max_retries` bounds them all.

    A 429 means Slack did nothing, so it is always safe to retry. A 5xx or a broken connection
    may come after Slack already posted: for a non-idempotent call (chat.postMessage) those are
    left to the outbox, which first looks for the message by its metadata."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff, jitter=ProportionalJitter())
    rate_limit = BoundedRateLimitRetryHandler(max_retry_count=max_retries, max_wait=max_rate_limit_wait)
    if not idempotent:
        return [rate_limit]
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        AsyncServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        rate_limit,
    ]


class SlackChat:
    """The `Chat` port over the Slack Web API (or a local emulator at `api_url`)."""

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        max_rate_limit_wait: float = 5.0,
    ):
        self._token = token  # kept only to scrub it from error text
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._client = AsyncWebClient(
            token=token,
            base_url=api_url,
            timeout=timeout,  # type: ignore[arg-type]  # float works: it becomes a ClientTimeout
            retry_handlers=retry_handlers(max_retries, retry_backoff, max_rate_limit_wait),
        )
        self._poster = AsyncWebClient(  # chat.postMessage only: see retry_handlers
            token=token,
            base_url=api_url,
            timeout=timeout,  # type: ignore[arg-type]
            retry_handlers=retry_handlers(max_retries, retry_backoff, max_rate_limit_wait, idempotent=False),
        )

    def __repr__(self) -> str:
        return f"SlackChat(api_url={self._client.base_url!r})"

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        response = await self._call(
            "chat.postMessage", channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, metadata=metadata,
            client=self._poster,
        )
        return str(response["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]], *,
                     metadata: dict[str, Any] | None = None) -> None:
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks, metadata=metadata)

    async def upload_file(
        self,
        channel: str | None,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
        thread_ts: str | None = None,
        initial_comment: str | None = None,
        alt_txt: str | None = None,
    ) -> str:
        """files_upload_v2: files.getUploadURLExternal, the upload, files.completeUploadExternal.
        Only a 429 is retried (Slack did nothing then); any other failure is the caller's to
        report, since a retried completion could share the file twice."""
        if not content:
            raise ChatError(f"slack {UPLOAD}: {filename!r} is empty; Slack refuses empty files",
                            permanent=True)
        response = await self._call(
            UPLOAD, client=self._poster, upload_v2=dict(
                filename=filename, content=content, title=title or filename, channel=channel, thread_ts=thread_ts,
                initial_comment=initial_comment, alt_txt=alt_txt,
            ),
        )
        files = response.get("files") or []
        return str(files[0]["id"]) if files else ""

    async def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """views.publish: the user's Home tab."""
        await self._call("views.publish", user_id=user_id, view=view)

    async def permalink(self, channel: str, ts: str) -> str:
        """chat.getPermalink: a link to a message that opens it in Slack."""
        response = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        return str(response["permalink"])

    async def usergroup_members(self, group_id: str) -> set[str]:
        """The user ids in a Slack user group (usergroups.users.list)."""
        response = await self._call("usergroups.users.list", usergroup=group_id)
        return {str(user) for user in response.get("users") or []}

    async def find_reply(self, channel: str, thread_ts: str, event_type: str, key: str, limit: int = 1000) -> str | None:
        """The ts of a reply in that thread whose metadata carries this key, or None."""
        return await self._find_by_metadata(
            "conversations.replies", event_type, key, limit, channel=channel, ts=thread_ts
        )

    async def find_posted(self, channel: str, event_type: str, key: str, limit: int = 200) -> str | None:
        """The ts of a recent top-level message whose metadata carries this key, or None.

        Looks at most `limit` messages back, newest first: a restarted bot uses this to find
        what it already posted instead of posting it twice.
        """
        return await self._find_by_metadata("conversations.history", event_type, key, limit, channel=channel)

    async def _find_by_metadata(self, method: str, event_type: str, key: str, limit: int, **where: Any) -> str | None:
        cursor, seen = None, 0
        while seen < limit:
            page = await self._call(
                method, include_all_metadata=True, limit=min(HISTORY_PAGE, limit - seen), cursor=cursor, **where
            )
            messages = page.get("messages") or []
            seen += len(messages)
            found = _ts_with_key(messages, event_type, key)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if found or not cursor or not messages:
                return found
        return None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _call(self, method: str, *, client: AsyncWebClient | None = None, **kwargs: Any) -> AsyncSlackResponse:
        """Call the slack_sdk method named like the API method, mapping every failure."""
        self._ensure_session()
        upload = kwargs.pop("upload_v2", None)  # the three-step upload goes through slack_sdk's one helper
        send = getattr(client or self._client, method.replace(".", "_"))
        try:
            return await send(**(upload or kwargs))
        except SlackApiError as exc:
            raise self._api_error(method, exc) from None
        except SlackClientError as exc:  # a request slack_sdk refused to build: our bug, not Slack's
            metrics.SLACK_ERRORS.inc(method=method, error=type(exc).__name__)
            raise ChatError(self._scrub(f"slack {method}: {type(exc).__name__}: {exc}"), permanent=True) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            metrics.SLACK_ERRORS.inc(method=method, error=type(exc).__name__)
            raise ChatError(self._scrub(f"slack {method}: {type(exc).__name__}: {exc}")) from None

    def _ensure_session(self) -> None:
        """One pooled session, made lazily because aiohttp wants a running loop for it."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
            self._client.session = self._session
            self._poster.session = self._session

    def _api_error(self, method: str, exc: SlackApiError) -> ChatError:
        response = exc.response
        status = int(response.status_code or 0)
        data = response.data if isinstance(response.data, Mapping) else {}
        error = str(data.get("error") or f"http_{status}")
        retry_after = _retry_after(response.headers) if status == 429 else None
        permanent = status < 500 and status != 429 and error not in TRANSIENT_ERRORS
        message = f"slack {method} failed: {error} (HTTP {status}){_details(data)}"
        metrics.SLACK_ERRORS.inc(method=method, error=error[:64])
        return ChatError(self._scrub(message), retry_after=retry_after, permanent=permanent)

    def _scrub(self, text: str) -> str:
        # Defence in depth: nothing we format should contain the token, but make sure.
        return text.replace(self._token, "xox*-***") if self._token else text


def _retry_after(headers: Mapping[str, Any]) -> float:
    """Seconds from a Retry-After header (header values may be lists); 1 s when absent."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                break
    return 1.0


def _details(data: Mapping[str, Any]) -> str:
    """Slack explains invalid_blocks and invalid_arguments in response_metadata.messages."""
    messages = (data.get("response_metadata") or {}).get("messages") or []
    return f": {'; '.join(map(str, messages))}" if messages else ""


def _ts_with_key(messages: list[dict[str, Any]], event_type: str, key: str) -> str | None:
    for message in messages:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == event_type and payload.get("key") == key:
            return str(message["ts"])
    return None
