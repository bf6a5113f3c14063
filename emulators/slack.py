"""A local Slack Web API emulator for tests and the product demo.

The real `slack_sdk` / `slack_bolt` clients talk real HTTP to it (`base_url=emu.api_url`), so
tests exercise the same request encoding, headers and retry handlers as production. It keeps
the state a test wants to assert on (messages, threads, views, response_url posts), records
every call, and can inject the failures Slack produces (429 with Retry-After, 5xx, slowness).

Fidelity notes: error names and response shapes follow the public Web API docs. Every block and
view is checked as Slack checks it (emulators/block_kit.py: slack_sdk's Block Kit models plus the
limits they miss): a message that breaks one gets `{"ok": false, "error": "invalid_blocks",
"errors": [...], "response_metadata": {"messages": ["[ERROR] ... [json-pointer:...]"]}}`, a view
`invalid_arguments` with the same messages, a response_url post HTTP 400 `invalid_blocks`.
`trigger_id`s are the emulator's own (`trigger_id()`, what a test puts in the interaction it
sends): views.open and views.push accept one once, within `trigger_ttl` (3 s, as Slack) of the
interaction, else `expired_trigger_id`, `exchanged_trigger_id` or `invalid_trigger_id`. Where
Slack is lenient or undocumented the emulator is stricter (e.g. an unknown `thread_ts` is
`thread_not_found`) so that bugs surface in tests.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web

from emulators.block_kit import message_problems, view_problems
from emulators.slack_socket import ROUTE as SOCKET_ROUTE, SocketModeServer

TEST_BOT_TOKEN = "xoxb-0000-esm-emulated-test-token"  # a fake token for tests and demos
# what a bot token installed from manifest.yml holds; auth.test reports it in X-OAuth-Scopes
DEFAULT_SCOPES = ("chat:write", "commands", "channels:history", "groups:history", "channels:read", "groups:read",
                  "usergroups:read", "users:read", "files:write")
APP_TOKEN_METHODS = {"apps.connections.open"}  # called with the app-level xapp- token
JSON_FIELDS = ("blocks", "attachments", "metadata", "view")  # JSON-encoded in form bodies
FIRST_TS_MICROS = 1_700_000_000_000_100
MAX_TEXT = 40_000
RESPONSE_URL_USES = 5
TRIGGER_TTL = 3.0  # seconds a trigger_id can open a view after the interaction that carried it
MAX_FILE_BYTES = 1024 * 1024 * 1024  # Slack's limit for one file (slack_sdk checks it too)
MAX_ALT_TXT = 1000  # files.getUploadURLExternal: alt_txt_too_large past this
MAX_INITIAL_COMMENT = 4000  # like a message's text, counted as characters
UPLOAD_TTL = 600.0  # seconds an upload URL is usable (Slack does not document it; the emulator is strict)


class Call(NamedTuple):
    method: str
    params: dict[str, Any]


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: float | None
    remaining: int | None  # None: every call until cleared


class SlackError(Exception):
    """Raised inside a method handler: becomes {"ok": false, "error": ...} with HTTP 200."""

    def __init__(self, error: str, **extra: Any):
        super().__init__(error)
        self.error = error
        self.extra = extra


class SlackEmulator:
    """Slack Web API on 127.0.0.1 with an OS-assigned port; see the module docstring."""

    def __init__(
        self,
        *,
        token: str | None = None,
        channels: set[str] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        users: dict[str, dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        post_rate: float | None = None,
        post_burst: int = 3,
    ):
        self.token = token
        # chat.postMessage per channel, as Slack: about `post_rate` per second sustained with a
        # small burst, then 429 with Retry-After (None: no limit)
        self.post_rate = post_rate
        self.post_burst = post_burst
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, when counted)
        self.rate_limited = 0  # 429s answered for the channel rate
        # every accepted post and update, for time-to-visibility: (monotonic, method, channel, ts of
        # the top-level message, metadata event_payload)
        self.visibility: list[tuple[float, str, str, str, dict[str, Any]]] = []
        self.channels = channels  # None: every channel exists
        self.usergroups = dict(usergroups or {})
        self.users = users  # None: any user id resolves to a synthesised profile
        self.scopes: list[str] = list(DEFAULT_SCOPES)  # sent in X-OAuth-Scopes
        self.app_token: str | None = None  # apps.connections.open: None accepts any xapp- token
        self.not_member: set[str] = set()  # channels the bot has not been invited to
        self.socket = SocketModeServer()  # Socket Mode: apps.connections.open hands out its URLs
        self.socket.new_trigger_id = self.trigger_id
        self.trigger_ttl = TRIGGER_TTL
        self._triggers: dict[str, float] = {}  # trigger_id -> when its interaction happened (monotonic)
        self._exchanged: set[str] = set()
        self.bot = {"user_id": "U0ESMBOT", "bot_id": "B0ESMBOT", "team_id": "T0ESM", "app_id": "A0ESM"}
        self.calls: list[Call] = []
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._next_ts = FIRST_TS_MICROS
        self._messages: dict[str, list[dict[str, Any]]] = {}  # channel -> every message, in order
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._responses: dict[str, list[dict[str, Any]]] = {}
        self._response_targets: dict[str, tuple[str | None, str | None]] = {}
        self._response_users: dict[str, str] = {}  # response_url id -> the user its ephemerals go to
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, list[Any]] = {}  # method -> [seconds, remaining or None]
        self._lost: dict[str, int] = {}  # method -> calls left whose answer is replaced by a 503
        self._homes: dict[str, dict[str, Any]] = {}  # user id -> the Home tab views.publish gave them
        self._view_users: dict[str, str] = {}  # view id -> the user it was opened for (the demo page)
        self._trigger_users: dict[str, str] = {}  # trigger_id -> the user whose interaction carried it
        self.closed_views: set[str] = set()  # views the page closed (submitted or cancelled)
        self._subscribers: set[asyncio.Queue[int]] = set()  # the demo page's live updates
        self.version = 0  # bumped on every change a page could show
        # the demo page (emulators/slack_ui.py): where the app listens and how its requests are signed
        self.app_url: str | None = None
        self.signing_secret: str | None = None
        self.ui_users: dict[str, str] = {}  # user id -> name, the "acting as" choices
        self.ui_hooks: dict[str, Any] = {}  # name -> async callable(bytes) -> str: demo buttons
        self._uploads: dict[str, dict[str, Any]] = {}  # file id -> its upload (getUploadURLExternal on)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> "SlackEmulator":
        self._runner = web.AppRunner(self._build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "SlackEmulator":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def api_url(self) -> str:
        """Usable as slack_sdk's `base_url` (it must end with a slash)."""
        return f"{self.base_url}/api/"

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response_url/{rid}", self._handle_response_url)
        app.router.add_get("/text", self._handle_text)
        from emulators.slack_ui import add_routes  # the demo page: Block Kit rendered, clickable

        add_routes(app, self)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get(SOCKET_ROUTE, self.socket.handle)
        return app

    # ---------------------------------------------------------------- fault injection

    def fail(
        self,
        method: str,
        status: int = 429,
        times: int | None = 1,
        retry_after: float | None = 1,
        error: str | None = None,
    ) -> None:
        """The next `times` calls to `method` fail (None: until clear_faults). Status 200 with
        `error` injects a Slack-level error such as channel_not_found."""
        error = error or _default_error(status)
        fault = _Fault(status, error, retry_after if status == 429 else None, times)
        self._faults.setdefault(method, deque()).append(fault)

    def delay(self, method: str, seconds: float, times: int | None = None) -> None:
        """Calls to `method` answer after `seconds` (the next `times` calls, or all)."""
        self._delays[method] = [seconds, times]

    def clear_faults(self) -> None:
        self._faults.clear()
        self._delays.clear()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    def _take_delay(self, method: str) -> float:
        entry = self._delays.get(method)
        if not entry:
            return 0.0
        seconds, remaining = entry
        if remaining is not None:
            entry[1] = remaining - 1
            if entry[1] <= 0:
                del self._delays[method]
        return seconds

    # ---------------------------------------------------------------- recorded state

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.params for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages of a channel, oldest first, with their current content."""
        return [_copy(m) for m in self._messages.get(channel, []) if _is_top_level(m)]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies to the message `ts` (the parent excluded), oldest first."""
        return [_copy(m) for m in self._messages.get(channel, []) if _is_reply_to(m, ts)]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        found = self._find(channel, ts)
        return _copy(found) if found else None

    def files(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Files shared by files.completeUploadExternal, oldest first: id, name, title, bytes
        (`content`), channel, thread_ts and initial_comment."""
        shared = [f for f in self._uploads.values() if f.get("shared")]
        return [{**{k: v for k, v in f.items() if k != "data"}, "content": f["data"]}
                for f in shared if channel in (None, f.get("channel"))]

    def ephemerals(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [_copy(e) for e in self._ephemerals if channel in (None, e["channel"])]

    @property
    def views(self) -> list[dict[str, Any]]:
        """Every view opened or pushed, in order, with its latest content."""
        return [_copy(v) for v in self._views.values()]

    def trigger_id(self, user: str | None = None) -> str:
        """A fresh trigger_id for an interaction a test is about to send; it opens a view once,
        within `trigger_ttl` seconds from now (for `user`'s page when given)."""
        tid = f"{int(time.time() * 1000)}.{len(self._triggers) + 1}.{secrets.token_hex(12)}"
        self._triggers[tid] = time.monotonic()
        if user:
            self._trigger_users[tid] = user
        return tid

    def _exchange_trigger(self, params: dict[str, Any]) -> str:
        tid = str(params.get("trigger_id") or "")
        if not tid:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: trigger_id"]})
        issued = self._triggers.get(tid)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if tid in self._exchanged:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - issued > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        return tid

    def new_response_url(self, channel: str | None = None, ts: str | None = None, user: str | None = None) -> str:
        """A fresh response_url; bound to a message, `replace_original` posts update it; with a
        `user`, ephemeral answers are kept as that user's ephemeral messages in `channel`."""
        rid = secrets.token_hex(8)
        self._responses[rid] = []
        self._response_targets[rid] = (channel, ts)
        if user:
            self._response_users[rid] = user
        return f"{self.base_url}/response_url/{rid}"

    # ---------------------------------------------------------------- live updates (the demo page)

    def changed(self) -> None:
        """Something a page could show changed: every live page is told (it then reloads the state)."""
        self.version += 1
        for queue in list(self._subscribers):
            queue.put_nowait(self.version)

    def subscribe(self) -> "asyncio.Queue[int]":
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: "asyncio.Queue[int]") -> None:
        self._subscribers.discard(queue)

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab views.publish last gave `user`, or None."""
        view = self._homes.get(user)
        return _copy(view) if view else None

    def views_of(self, user: str) -> list[dict[str, Any]]:
        """The modal stack open for `user` on the demo page, bottom first."""
        return [_copy(v) for vid, v in self._views.items()
                if self._view_users.get(vid) == user and vid not in self.closed_views]

    def responses(self, rid_or_url: str) -> list[dict[str, Any]]:
        """Bodies posted to a response_url, given its id or the whole URL."""
        rid = rid_or_url.rstrip("/").rsplit("/", 1)[-1]
        return [_copy(body) for body in self._responses.get(rid, [])]

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    # ---------------------------------------------------------------- HTTP: Web API

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, token = await _read_params(request)
        self.calls.append(Call(method, params))
        await asyncio.sleep(self._take_delay(method))
        fault = self._take_fault(method)
        if fault is not None:
            return _fault_response(fault)
        if method == "chat.postMessage" and self.post_rate:
            wait = self._take_post_token(str(params.get("channel") or ""))
            if wait is not None:
                self.rate_limited += 1
                return _fault_response(_Fault(429, "ratelimited", max(1, -(-wait // 1)), 1))
        try:
            self._check_token(method, token)
            body = {"ok": True, **self._dispatch(method, params)}
        except SlackError as exc:
            body = {"ok": False, "error": exc.error, **exc.extra}
        if body["ok"] and method not in _READ_ONLY:
            self.changed()
        if self._take_lost_answer(method):
            # the work is done but the caller never learns it: the ambiguous failure
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        return web.json_response(body, headers={"X-OAuth-Scopes": ",".join(self.scopes)})

    def _take_post_token(self, channel: str) -> float | None:
        """A token of the channel's bucket, or the seconds until one is there."""
        assert self.post_rate
        now = time.monotonic()
        tokens, at = self._buckets.get(channel, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - at) * self.post_rate)
        if tokens < 1.0:
            self._buckets[channel] = (tokens, now)
            return (1.0 - tokens) / self.post_rate
        self._buckets[channel] = (tokens - 1.0, now)
        return None

    def peak_post_rate(self, window: float = 10.0) -> dict[str, float]:
        """Per channel: the most chat.postMessage calls accepted in any `window` seconds, per second."""
        times: dict[str, list[float]] = {}
        for at, method, channel, _ts, _payload in self.visibility:
            if method == "chat.postMessage":
                times.setdefault(channel, []).append(at)
        peaks = {}
        for channel, moments in times.items():
            best, start = 0, 0
            for end, moment in enumerate(moments):
                while moment - moments[start] > window:
                    start += 1
                best = max(best, end - start + 1)
            peaks[channel] = round(best / window, 2)
        return peaks

    def _check_token(self, method: str, token: str | None) -> None:
        if method not in APP_TOKEN_METHODS:
            return self._check_auth(token)
        if not token:
            raise SlackError("not_authed")
        if not token.startswith("xapp-"):
            raise SlackError("not_allowed_token_type")
        if self.app_token is not None and not secrets.compare_digest(token, self.app_token):
            raise SlackError("invalid_auth")
        return None

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket.new_url(self.base_url)}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        private = channel.startswith("G")
        return {"channel": {
            "id": channel, "name": channel.lower(), "is_channel": not private, "is_group": private,
            "is_private": private, "is_archived": False, "is_member": channel not in self.not_member,
        }}

    def lose_answers(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method` but answer 503, as when Slack accepted a
        message and the answer was lost on the way back (or the caller died before reading it)."""
        self._lost[method] = self._lost.get(method, 0) + times

    def _take_lost_answer(self, method: str) -> bool:
        if self._lost.get(method, 0) <= 0:
            return False
        self._lost[method] -= 1
        return True

    def _check_auth(self, token: str | None) -> None:
        if self.token is None:
            return
        if not token:
            raise SlackError("not_authed")  # what Slack answers when no token is sent at all
        if not secrets.compare_digest(token, self.token):
            raise SlackError("invalid_auth")

    def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = _METHODS.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        return handler(self, params)

    # ---------------------------------------------------------------- Web API methods

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://esm-emulated.slack.com/",
            "team": "ESM Emulated",
            "user": "esm-bot",
            **{k: self.bot[k] for k in ("team_id", "user_id", "bot_id")},
            **({"enterprise_id": self.bot["enterprise_id"]} if self.bot.get("enterprise_id") else {}),
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        _check_content(params)
        message = self._new_message(params)
        thread_ts = params.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = self._thread_root(channel, str(thread_ts))
            message["parent_user_id"] = self.bot["user_id"]
        if _truthy(params.get("reply_broadcast")):
            message["reply_broadcast"] = True
        self._messages.setdefault(channel, []).append(message)
        self._seen("chat.postMessage", channel, message)
        return {"channel": channel, "ts": message["ts"], "message": self._render(channel, message, True)}

    def _seen(self, method: str, channel: str, message: dict[str, Any]) -> None:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        root = message.get("thread_ts") or message["ts"]
        self.visibility.append((time.monotonic(), method, channel, str(root), dict(payload)))

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        message = self._find(channel, str(params.get("ts", "")))
        if message is None:
            raise SlackError("message_not_found")
        _check_content(params, require=False)
        for field in ("text", "blocks", "metadata"):
            if field in params:
                message[field] = params[field]
        message["edited"] = {"user": self.bot["user_id"], "ts": self._new_ts()}
        self._seen("chat.update", channel, message)
        rendered = self._render(channel, message, True)
        return {"channel": channel, "ts": message["ts"], "text": message.get("text", ""), "message": rendered}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        message = self._find(channel, str(params.get("ts", "")))
        if message is None:
            raise SlackError("message_not_found")
        self._messages[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        if not params.get("user"):
            raise SlackError("user_not_in_channel")
        _check_content(params)
        ephemeral = {**self._new_message(params), "channel": channel, "user": params["user"]}
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral["ts"]}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        ts = str(params.get("message_ts", ""))
        if self._find(channel, ts) is None:
            raise SlackError("message_not_found")
        link = f"https://esm-emulated.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        listed = [m for m in self._messages.get(channel, []) if _is_top_level(m) or m.get("reply_broadcast")]
        listed = _within(listed, params.get("oldest"), params.get("latest"))
        return self._page(channel, list(reversed(listed)), params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        parent = self._find(channel, str(params.get("ts", "")))
        if parent is None:
            raise SlackError("thread_not_found")
        root = parent.get("thread_ts", parent["ts"])
        listed = [m for m in self._messages[channel] if m["ts"] == root or _is_reply_to(m, root)]
        return self._page(channel, listed, params)

    def _page(self, channel: str, listed: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """Cursor paging as Slack does it: an opaque next_cursor, empty on the last page."""
        start = _decode_cursor(params.get("cursor"))
        limit = max(1, min(int(params.get("limit") or 100), 999))
        page = listed[start : start + limit]
        more = start + limit < len(listed)
        metadata = _truthy(params.get("include_all_metadata"))
        return {
            "messages": [self._render(channel, m, metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": _encode_cursor(start + limit) if more else ""},
        }

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        tid = self._exchange_trigger(params)
        view = self._store_view(_checked_view(params), root=None)
        self._exchanged.add(tid)
        if tid in self._trigger_users:
            self._view_users[view["id"]] = self._trigger_users[tid]
        return {"view": view}

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        tid = self._exchange_trigger(params)
        previous = next(reversed(self._views), None)
        view = self._store_view(_checked_view(params), root=previous)
        self._exchanged.add(tid)
        if tid in self._trigger_users:
            self._view_users[view["id"]] = self._trigger_users[tid]
        return {"view": view}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        current = self._view_for_update(params)
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        current.update(_checked_view(params), hash=secrets.token_hex(6))
        return {"view": _copy(current)}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        """The user's Home tab. Slack's limits: a home view, 1..100 blocks, each block valid, and
        the optional hash guarding against a concurrent publish."""
        user = str(params.get("user_id") or "")
        if not user or (self.users is not None and user not in self.users):
            raise SlackError("user_not_found")
        view = _checked_view(params)
        if view.get("type") != "home":
            raise SlackError("invalid_arguments", response_metadata={"messages": [
                "[ERROR] views.publish takes a home view [json-pointer:/view/type]"]})
        current = self._homes.get(user)
        if params.get("hash") and current is not None and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        home = {"id": (current or {}).get("id") or f"VH{len(self._homes) + 1:07d}", "team_id": self.bot["team_id"],
                "app_id": self.bot["app_id"], "bot_id": self.bot["bot_id"], "callback_id": "", "private_metadata": "",
                "external_id": "", **view, "state": {"values": {}}, "hash": secrets.token_hex(6)}
        self._homes[user] = home
        return {"view": _copy(home)}

    def _view_for_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id, external_id = params.get("view_id"), params.get("external_id")
        for view in self._views.values():
            if view["id"] == view_id or (external_id and view.get("external_id") == external_id):
                return view
        raise SlackError("not_found")

    def _store_view(self, spec: dict[str, Any], root: str | None) -> dict[str, Any]:
        view_id = f"V{len(self._views) + 1:08d}"
        view = {
            "id": view_id,
            "team_id": self.bot["team_id"],
            "app_id": self.bot["app_id"],
            "bot_id": self.bot["bot_id"],
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            **spec,
            "state": {"values": {}},
            "hash": secrets.token_hex(6),
            "root_view_id": self._views[root]["root_view_id"] if root else view_id,
            "previous_view_id": root,
        }
        self._views[view_id] = view
        return _copy(view)

    # ---------------------------------------------------------------- files (the external upload flow)

    def _require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise SlackError("missing_scope", needed=scope, provided=",".join(self.scopes))

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 1: a file id and a one-time URL to POST the bytes to. `length` is required and
        must be the exact size that is then uploaded (0 is `missing_argument`, as Slack says)."""
        self._require_scope("files:write")
        filename = str(params.get("filename") or "")
        if not filename:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: filename"]})
        length = _int_or_none(params.get("length"))
        if length is None:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: length"]})
        if length <= 0:
            raise SlackError("missing_argument")
        if length > MAX_FILE_BYTES:
            raise SlackError("file_upload_size_restricted")
        if len(str(params.get("alt_txt") or "")) > MAX_ALT_TXT:
            raise SlackError("alt_txt_too_large")
        file_id = f"F{len(self._uploads) + 1:010d}"
        self._uploads[file_id] = {"id": file_id, "name": filename, "length": length, "data": None,
                                  "issued": time.monotonic(), "alt_txt": params.get("alt_txt"), "shared": False}
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """Step 2: the bytes, raw or as a multipart form's one file, exactly `length` of them."""
        file_id = request.match_info["file_id"]
        upload = self._uploads.get(file_id)
        self.calls.append(Call("upload", {"file_id": file_id}))
        fault = self._take_fault("upload")
        if fault is not None:
            return _fault_response(fault)
        if upload is None or upload["shared"] or time.monotonic() - upload["issued"] > UPLOAD_TTL:
            return web.Response(status=404, text="invalid upload URL")
        data = await _upload_bytes(request)
        if len(data) != upload["length"]:
            return web.Response(status=400, text=f"expected {upload['length']} bytes, got {len(data)}")
        upload["data"] = data
        return web.Response(text=f"OK - {len(data)}")

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Step 3: share the uploaded files, in a channel (and thread) or privately."""
        self._require_scope("files:write")
        files = _json_or_raw(params["files"]) if isinstance(params.get("files"), str) else params.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] files must be a non-empty JSON array of {id, title}"]})
        uploads = [self._uploads.get(str(f["id"])) for f in files]
        if any(u is None or u["data"] is None or u["shared"] for u in uploads):
            raise SlackError("file_not_found")
        channel = params.get("channel_id") or params.get("channels")
        thread_ts = params.get("thread_ts")
        comment = str(params.get("initial_comment") or "")
        if len(comment) > MAX_INITIAL_COMMENT:
            raise SlackError("msg_too_long")
        if channel:
            channel = self._require_channel({"channel": channel})
            if channel in self.not_member:
                raise SlackError("not_in_channel")
            if thread_ts:
                thread_ts = self._thread_root(channel, str(thread_ts))
        elif thread_ts:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] thread_ts needs channel_id"]})
        shared = []
        for given, upload in zip(files, uploads):
            assert upload is not None
            upload.update(shared=True, title=str(given.get("title") or upload["name"]), channel=channel,
                          thread_ts=thread_ts, initial_comment=comment or None)
            shared.append({"id": upload["id"], "name": upload["name"], "title": upload["title"],
                           "size": upload["length"]})
        if channel and comment:
            message = self._new_message({"text": comment})
            message["files"] = [{"id": f["id"], "name": f["name"], "title": f["title"]} for f in shared]
            if thread_ts:
                message["thread_ts"] = thread_ts
            self._messages.setdefault(channel, []).append(message)
        return {"files": shared}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if not user_id or (self.users is not None and user_id not in self.users):
            raise SlackError("user_not_found")
        return {"user": self._user(user_id)}

    def _user(self, user_id: str) -> dict[str, Any]:
        given = dict((self.users or {}).get(user_id, {}))
        name = given.get("name", user_id.lower())
        profile = {"email": f"{name}@example.com", "real_name": name, "display_name": name}
        profile.update(given.pop("profile", {}))
        return {
            "id": user_id,
            "team_id": self.bot["team_id"],
            "name": name,
            "real_name": profile["real_name"],
            "deleted": False,
            "is_admin": False,
            "is_owner": False,
            "is_bot": False,
            "tz": "UTC",
            **given,
            "profile": profile,
        }

    # ---------------------------------------------------------------- message helpers

    def _require_channel(self, params: dict[str, Any]) -> str:
        channel = params.get("channel")
        if not channel or (self.channels is not None and channel not in self.channels):
            raise SlackError("channel_not_found")
        return str(channel)

    def _thread_root(self, channel: str, thread_ts: str) -> str:
        parent = self._find(channel, thread_ts)
        if parent is None:
            raise SlackError("thread_not_found")
        return parent.get("thread_ts", parent["ts"])  # a reply's ts means its thread, as in Slack

    def _new_ts(self) -> str:
        micros, self._next_ts = self._next_ts, self._next_ts + 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_message(self, params: dict[str, Any]) -> dict[str, Any]:
        message = {
            "type": "message",
            "ts": self._new_ts(),
            "user": self.bot["user_id"],
            "bot_id": self.bot["bot_id"],
            "app_id": self.bot["app_id"],
            "team": self.bot["team_id"],
            "text": params.get("text", ""),
        }
        for field in ("blocks", "metadata"):
            if params.get(field):
                message[field] = params[field]
        return message

    def _render(self, channel: str, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        """A message as the API returns it: metadata only on request, thread summary on parents."""
        shown = _copy(message)
        if not with_metadata:
            shown.pop("metadata", None)
        replies = [m for m in self._messages.get(channel, []) if _is_reply_to(m, message["ts"])]
        if replies:
            shown.update(
                thread_ts=message["ts"],
                reply_count=len(replies),
                reply_users=[self.bot["user_id"]],
                latest_reply=replies[-1]["ts"],
            )
        return shown

    # ---------------------------------------------------------------- HTTP: response_url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        body = await _read_json_or_form(request)
        self.calls.append(Call("response_url", {"id": rid, **body}))
        fault = self._take_fault("response_url")
        if fault is not None:
            return _fault_response(fault)
        if rid not in self._responses:
            return web.Response(status=404, text="no_such_url")
        if len(self._responses[rid]) >= RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url")
        if body.get("blocks") is not None:
            blocks = _json_or_raw(body["blocks"]) if isinstance(body["blocks"], str) else body["blocks"]
            if message_problems(blocks):
                return web.Response(status=400, text="invalid_blocks")
        self._responses[rid].append(body)
        self._apply_response(rid, body)
        self.changed()
        return web.Response(text="ok")

    def _apply_response(self, rid: str, body: dict[str, Any]) -> None:
        """What Slack does with a response_url post bound to a message (best effort)."""
        channel, ts = self._response_targets.get(rid, (None, None))
        original = self._find(channel, ts) if channel and ts else None
        if original is not None and _truthy(body.get("delete_original")):
            self._messages[channel].remove(original)
        elif original is not None and _truthy(body.get("replace_original")):
            original.update({k: body[k] for k in ("text", "blocks") if k in body})
        elif channel and body.get("response_type") == "in_channel":
            message = self._new_message(body)
            if body.get("thread_ts"):
                message["thread_ts"] = body["thread_ts"]
            self._messages.setdefault(channel, []).append(message)
        elif channel and rid in self._response_users and (body.get("text") or body.get("blocks")):
            # an ephemeral answer: only its user sees it, in the channel the interaction came from
            ephemeral = {**self._new_message(body), "channel": channel, "user": self._response_users[rid]}
            root = (original or {}).get("thread_ts")
            if root and root != ts:  # a click on a reply: its answer shows in that thread
                ephemeral["thread_ts"] = root
            self._ephemerals.append(ephemeral)

    # ---------------------------------------------------------------- HTTP: viewer

    async def _handle_text(self, request: web.Request) -> web.Response:
        return web.Response(text=self.text_dump() + "\n")

    def text_dump(self) -> str:
        """Every channel as plain text, for terminal demos and failing-test output."""
        out = []
        for channel in sorted(self._messages):
            out.append(f"#{channel}")
            for message in self.messages(channel):
                out.append(_indent(_message_text(message), "  "))
                for reply in self.thread(channel, message["ts"]):
                    out.append(_indent(_message_text(reply), "      ↳ "))
        return "\n".join(out)


_METHODS = {
    "auth.test": SlackEmulator._auth_test,
    "chat.postMessage": SlackEmulator._chat_post_message,
    "chat.update": SlackEmulator._chat_update,
    "chat.delete": SlackEmulator._chat_delete,
    "chat.postEphemeral": SlackEmulator._chat_post_ephemeral,
    "chat.getPermalink": SlackEmulator._chat_get_permalink,
    "conversations.history": SlackEmulator._conversations_history,
    "conversations.replies": SlackEmulator._conversations_replies,
    "views.open": SlackEmulator._views_open,
    "views.push": SlackEmulator._views_push,
    "views.update": SlackEmulator._views_update,
    "usergroups.users.list": SlackEmulator._usergroups_users_list,
    "users.info": SlackEmulator._users_info,
    "conversations.info": SlackEmulator._conversations_info,
    "apps.connections.open": SlackEmulator._apps_connections_open,
    "views.publish": SlackEmulator._views_publish,
    "files.getUploadURLExternal": SlackEmulator._files_get_upload_url_external,
    "files.completeUploadExternal": SlackEmulator._files_complete_upload_external,
}
# methods that change nothing a page shows
_READ_ONLY = {"auth.test", "chat.getPermalink", "conversations.history", "conversations.replies",
              "usergroups.users.list", "users.info", "conversations.info", "apps.connections.open"}


# -------------------------------------------------------------------- request parsing


async def _read_params(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Query + body (JSON or form), JSON-string fields decoded; the token is split off so it is
    never recorded. slack_sdk sends JSON for chat.*/views.*, query strings for GET methods."""
    params: dict[str, Any] = dict(request.query)
    params.update(await _read_json_or_form(request))
    for field in JSON_FIELDS:
        if isinstance(params.get(field), str):
            params[field] = _json_or_raw(params[field])
    token = params.pop("token", None)
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    return params, token


async def _read_json_or_form(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        body = await request.json()
        return body if isinstance(body, dict) else {}
    return dict(await request.post())


async def _upload_bytes(request: web.Request) -> bytes:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "filename", None) is not None or getattr(part, "name", None) == "file":
                return bytes(await part.read())  # type: ignore[union-attr]
        return b""
    return await request.read()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _json_or_raw(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # left as sent; the validators reject it like Slack would


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _default_error(status: int) -> str:
    if status == 429:
        return "ratelimited"
    return "service_unavailable" if status == 503 else "internal_error"


def _fault_response(fault: _Fault) -> web.Response:
    headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
    body = {"ok": False, "error": fault.error}
    return web.json_response(body, status=fault.status, headers=headers)


def _encode_cursor(offset: int) -> str:
    return f"offset:{offset}"


def _decode_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        return max(0, int(str(cursor).removeprefix("offset:")))
    except ValueError:
        raise SlackError("invalid_cursor") from None


def _within(messages: list[dict[str, Any]], oldest: Any, latest: Any) -> list[dict[str, Any]]:
    low = float(oldest) if oldest else float("-inf")
    high = float(latest) if latest else float("inf")
    return [m for m in messages if low < float(m["ts"]) < high]


def _is_top_level(message: dict[str, Any]) -> bool:
    return message.get("thread_ts") in (None, message["ts"])


def _is_reply_to(message: dict[str, Any], ts: str) -> bool:
    return message.get("thread_ts") == ts and message["ts"] != ts


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))  # callers must not mutate emulator state


# -------------------------------------------------------------------- validation (Slack's limits)


def _check_content(params: dict[str, Any], require: bool = True) -> None:
    text, blocks = params.get("text"), params.get("blocks")
    if require and not text and not blocks:
        raise SlackError("no_text")
    if text and len(str(text)) > MAX_TEXT:
        raise SlackError("msg_too_long")
    if blocks is not None:
        _raise_block_errors(blocks, "invalid_blocks")
    if "metadata" in params and params["metadata"]:
        _check_metadata(params["metadata"])


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
        raise SlackError("invalid_metadata_format")
    if not isinstance(metadata.get("event_payload", {}), dict):
        raise SlackError("invalid_metadata_format")


def _raise_block_errors(blocks: Any, error: str) -> None:
    problems = message_problems(blocks)
    if problems:
        raise SlackError(error, errors=problems, response_metadata={"messages": problems})


def _checked_view(params: dict[str, Any]) -> dict[str, Any]:
    view = params.get("view")
    problems = view_problems(view)
    if problems:
        raise SlackError("invalid_arguments", response_metadata={"messages": problems})
    assert isinstance(view, dict)
    return view


# -------------------------------------------------------------------- Block Kit -> plain text


def blocks_to_text(blocks: list[dict[str, Any]] | None) -> str:
    """Block Kit as plain text for terminals and logs: buttons show as `[Label]`."""
    lines: list[str] = []
    for block in blocks or []:
        render = _BLOCK_TEXT.get(block.get("type"), _unknown_block_text)
        lines.extend(render(block))
    return "\n".join(lines)


def _header_text(block: dict[str, Any]) -> list[str]:
    return [f"== {_text_of(block.get('text'))} =="]


def _section_text(block: dict[str, Any]) -> list[str]:
    lines = [_text_of(block.get("text"))] if block.get("text") else []
    lines += [f"  {_text_of(field).replace(chr(10), ' ')}" for field in block.get("fields") or []]
    accessory = _element_label(block.get("accessory"))
    if accessory and lines:
        lines[0] = f"{lines[0]}  {accessory}"
    elif accessory:
        lines.append(accessory)
    return lines


def _context_text(block: dict[str, Any]) -> list[str]:
    parts = [_text_of(e) if e.get("type") != "image" else f"[{e.get('alt_text', 'image')}]" for e in block.get("elements", [])]
    return [" | ".join(p for p in parts if p)]


def _actions_text(block: dict[str, Any]) -> list[str]:
    return [" ".join(filter(None, (_element_label(e) for e in block.get("elements", []))))]


def _element_label(element: dict[str, Any] | None) -> str:
    if not element:
        return ""
    kind = element.get("type", "")
    if kind == "button":
        return f"[{_text_of(element.get('text'))}]"
    if kind == "overflow":
        return "[...]"
    if kind.endswith("select") or kind.endswith("picker"):
        return f"[{_text_of(element.get('placeholder')) or kind} v]"
    if kind == "image":
        return f"[{element.get('alt_text', 'image')}]"
    return f"[{kind}]"


def _rich_text(block: dict[str, Any]) -> list[str]:
    return "".join(_rich_element(e) for e in block.get("elements", [])).splitlines() or [""]


def _rich_element(element: dict[str, Any]) -> str:
    kind = element.get("type")
    children = element.get("elements", [])
    if kind == "rich_text_list":
        return "".join(f"- {_rich_element(child).strip()}\n" for child in children)
    if kind == "rich_text_quote":
        return "> " + "".join(_rich_element(c) for c in children) + "\n"
    if kind in ("rich_text_section", "rich_text_preformatted"):
        return "".join(_rich_element(c) for c in children) + ("\n" if kind.endswith("preformatted") else "")
    return _rich_leaf(element)


def _rich_leaf(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "link":
        return element.get("text") or element.get("url", "")
    if kind == "user":
        return f"@{element.get('user_id', '')}"
    if kind == "channel":
        return f"#{element.get('channel_id', '')}"
    if kind == "emoji":
        return f":{element.get('name', '')}:"
    return str(element.get("text", ""))


def _unknown_block_text(block: dict[str, Any]) -> list[str]:
    if block.get("type") == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    if block.get("type") == "input":
        return [f"{_text_of(block.get('label'))}: [{block.get('element', {}).get('type', 'input')}]"]
    return [f"[{block.get('type', '?')}]"]


_BLOCK_TEXT = {
    "header": _header_text,
    "section": _section_text,
    "context": _context_text,
    "divider": lambda block: ["-" * 40],
    "actions": _actions_text,
    "rich_text": _rich_text,
}

_SLACK_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_SLACK_REF = re.compile(r"<([@#!])([^>|]+)>")


def _text_of(obj: Any) -> str:
    """The readable text of a text object: Slack links `<url|label>` become `label (url)`."""
    text = obj.get("text", "") if isinstance(obj, dict) else str(obj or "")
    text = _SLACK_LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _SLACK_REF.sub(lambda m: f"{m.group(1) if m.group(1) != '!' else '@'}{m.group(2)}", text)
    # Slack shows its three entities as the characters they stand for; so does this view
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _message_text(message: dict[str, Any]) -> str:
    body = blocks_to_text(message.get("blocks")) or _text_of(message.get("text", ""))
    edited = " (edited)" if message.get("edited") else ""
    return f"[{message['ts']}]{edited}\n{body}"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())




# -------------------------------------------------------------------- standalone (demo) entry


async def _serve_forever(port: int, token: str | None) -> None:
    async with SlackEmulator(token=token, port=port) as emu:
        print(f"Slack emulator: api_url={emu.api_url} viewer={emu.base_url}/", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Slack Web API emulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_forever(args.port, args.token))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
