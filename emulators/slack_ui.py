"""The Slack stand-in's demo page: Block Kit rendered the way Slack shows it, and clickable.

The page (emulators/slack_ui/: static HTML, JS and CSS, no build step) reads the emulator's
state as JSON and follows it live over server-sent events. What a user does on it becomes the
request Slack would send the app, built here from what the emulator stored and signed with the
app's signing secret (`SlackEmulator.app_url` / `signing_secret`):

* a click on a message's button or menu: `block_actions` with the message as stored, a fresh
  trigger_id (so the app can open a modal on the page) and a response_url bound to the message;
* a change or button in a modal: `block_actions` with the view and its state;
* a modal's submit: `view_submission`; the app's answer (close, `errors`, `update`, `push`,
  `clear`) is applied as Slack applies it;
* `/esm …` typed in the message box: the slash command, its answers shown as ephemeral messages;
* opening the Home tab: the `app_home_opened` event.

The request is refused before it leaves (HTTP 400) when the page names a message, view or
element the emulator does not hold: the page can only press what the app really sent.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from emulators.block_kit import view_problems
from emulators.slack_signing import (
    APP_ID, TEAM, VERIFICATION_TOKEN, payload_body, signed_form_headers, signed_headers, slash_command_body,
)

STATIC = Path(__file__).with_name("slack_ui")
STATIC_FILES = {"app.js": "application/javascript", "app.css": "text/css"}
APP_TIMEOUT = 3.0  # Slack waits 3 s for the app's answer, then shows the user an error
KEEPALIVE = 15.0


def add_routes(app: web.Application, emu: Any) -> None:
    """The page's routes on the emulator's app; `emu` is the SlackEmulator (which imports this module)."""
    ui = SlackUI(emu)
    app.router.add_get("/", ui.index)
    app.router.add_get("/ui/static/{name}", ui.static)
    app.router.add_get("/ui/state", ui.state)
    app.router.add_get("/ui/events", ui.events)
    app.router.add_post("/ui/action", ui.action)
    app.router.add_post("/ui/submit", ui.submit)
    app.router.add_post("/ui/close", ui.close)
    app.router.add_post("/ui/command", ui.command)
    app.router.add_post("/ui/home_opened", ui.home_opened)
    app.router.add_post("/ui/hook/{name}", ui.hook)
    app.router.add_get("/files/{file_id}", ui.file)
    app.on_shutdown.append(ui.shutdown)


class PageError(Exception):
    """The page asked for something the emulator does not hold: HTTP 400 with this text."""


class SlackUI:
    def __init__(self, emu: Any):
        self.emu = emu

    # ---------------------------------------------------------------- the page and its state

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html",
                            headers=_NO_STORE)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=STATIC_FILES[name], headers=_NO_STORE)

    async def file(self, request: web.Request) -> web.Response:
        """An uploaded file's bytes (an image block's slack_file shows through this)."""
        upload = self.emu._uploads.get(request.match_info["file_id"])
        if upload is None or not upload.get("shared") or upload.get("data") is None:
            raise web.HTTPNotFound()
        kind = "image/png" if str(upload["name"]).lower().endswith(".png") else "application/octet-stream"
        return web.Response(body=upload["data"], content_type=kind, headers=_NO_STORE)

    async def state(self, request: web.Request) -> web.Response:
        user = request.query.get("user") or self._default_user()
        return web.json_response(self.snapshot(user), headers=_NO_STORE)

    def snapshot(self, user: str) -> dict[str, Any]:
        emu = self.emu
        channels = sorted(set(emu._messages) | {e["channel"] for e in emu._ephemerals if e["user"] == user})
        users = {uid: (emu.users or {}).get(uid, {}).get("name", uid.lower()) for uid in (emu.users or {})}
        users.update(emu.ui_users)
        users[emu.bot["user_id"]] = "esm-bot"
        return {
            "version": emu.version,
            "workspace": "ESM Emulated",
            "bot": {"user_id": emu.bot["user_id"], "name": "esm-bot"},
            "acting": [{"id": uid, "name": name} for uid, name in emu.ui_users.items()],
            "user": user,
            "users": users,
            "connected": emu.app_url is not None and emu.signing_secret is not None,
            "hooks": sorted(emu.ui_hooks),
            "channels": [{
                "id": channel,
                "messages": [{**m, "replies": emu.thread(channel, m["ts"])} for m in emu.messages(channel)],
                "ephemerals": [e for e in emu.ephemerals(channel) if e["user"] == user],
            } for channel in channels],
            "views": emu.views_of(user),
            "home": emu.home(user),
        }

    def _default_user(self) -> str:
        return next(iter(self.emu.ui_users), "U0RESPONDER")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `version` whenever anything the page shows changed."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue = self.emu.subscribe()
        try:
            await response.write(f"event: version\ndata: {self.emu.version}\n\n".encode())
            while True:
                try:
                    version = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if version < 0:  # the emulator is stopping
                    break
                while not queue.empty():
                    version = max(version, queue.get_nowait())
                await response.write(f"event: version\ndata: {version}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.emu.unsubscribe(queue)
        return response

    async def shutdown(self, app: web.Application) -> None:
        for queue in list(self.emu._subscribers):
            queue.put_nowait(-1)

    # ---------------------------------------------------------------- what the user does

    async def action(self, request: web.Request) -> web.Response:
        """A click or a choice: {user, channel, ts, ephemeral?, block, action_id, value?} on a
        message, or {user, view_id, block, action_id, value?, values} in a modal."""
        try:
            body = await _json(request)
            user = self._user(body)
            if body.get("view_id"):
                payload = self._view_action(body, user)
            else:
                payload = self._message_action(body, user)
        except PageError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        status, _ = await self._post(payload_body(payload), form=True)
        return self._answer(status)

    def _message_action(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        emu = self.emu
        channel, ts = str(body.get("channel") or ""), str(body.get("ts") or "")
        if body.get("ephemeral"):
            message = next((e for e in emu._ephemerals if e["ts"] == ts and e["user"] == user), None)
        else:
            message = emu._find(channel, ts)
        if message is None:
            raise PageError("no such message")
        block, element = _element(message.get("blocks") or [], body)
        container: dict[str, Any] = {"type": "message", "message_ts": ts, "channel_id": channel,
                                     "is_ephemeral": bool(body.get("ephemeral"))}
        if message.get("thread_ts") and message["thread_ts"] != ts:
            container["thread_ts"] = message["thread_ts"]
        payload = self._common("block_actions", user)
        payload.update({
            "container": container,
            "channel": {"id": channel, "name": channel.lower()},
            "state": {"values": {}},
            "response_url": emu.new_response_url(channel, None if body.get("ephemeral") else ts, user),
            "actions": [_action(block, element, body.get("value"))],
        })
        if not body.get("ephemeral"):
            payload["message"] = emu._render(channel, message, False)
        return payload

    def _view_action(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        view = self._open_view(body, user)
        view["state"] = {"values": _values(body.get("values"))}
        block, element = _element(view.get("blocks") or [], body)
        payload = self._common("block_actions", user)
        payload.update({
            "container": {"type": "view", "view_id": view["id"]},
            "view": _copy(view),
            "actions": [_action(block, element, body.get("value"))],
        })
        return payload

    async def submit(self, request: web.Request) -> web.Response:
        """A modal's submit: view_submission; the app's answer is applied as Slack applies it."""
        try:
            body = await _json(request)
            user = self._user(body)
            view = self._open_view(body, user)
        except PageError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        view["state"] = {"values": _values(body.get("values"))}
        payload = self._common("view_submission", user)
        payload.update({"view": _copy(view), "response_urls": []})
        status, text = await self._post(payload_body(payload), form=True)
        if status != 200:
            return self._answer(status)
        answer = _json_or_empty(text)
        kind = answer.get("response_action")
        if kind == "errors":
            return web.json_response({"ok": True, "errors": answer.get("errors") or {}})
        if kind in ("update", "push"):
            checked = answer.get("view")
            problems = view_problems(checked)
            if problems:  # Slack shows the user an error and keeps the modal as it was
                return web.json_response({"ok": False, "error": "the app answered an invalid view: " + "; ".join(problems)})
            assert isinstance(checked, dict)
            if kind == "update":
                view.update(checked, hash=secrets.token_hex(6))
            else:
                pushed = self.emu._store_view(checked, root=view["id"])
                self.emu._view_users[pushed["id"]] = user
        elif kind == "clear":
            self.emu.closed_views.update(v["id"] for v in self.emu.views_of(user))
        else:  # an empty 200: this view closes
            self.emu.closed_views.add(view["id"])
        self.emu.changed()
        return web.json_response({"ok": True})

    async def close(self, request: web.Request) -> web.Response:
        """The modal's Cancel (or its ×): view_closed when the app asked for it (notify_on_close)."""
        try:
            body = await _json(request)
            user = self._user(body)
            view = self._open_view(body, user)
        except PageError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        self.emu.closed_views.add(view["id"])
        self.emu.changed()
        if view.get("notify_on_close"):
            payload = self._common("view_closed", user)
            payload.update({"view": _copy(view), "is_cleared": False})
            await self._post(payload_body(payload), form=True)
        return web.json_response({"ok": True})

    async def command(self, request: web.Request) -> web.Response:
        """A slash command typed in the message box: `/esm status`."""
        try:
            body = await _json(request)
            user = self._user(body)
        except PageError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        line = str(body.get("text") or "").strip()
        channel = str(body.get("channel") or "")
        command, _, text = line.partition(" ")
        if not command.startswith("/") or not channel:
            return web.json_response({"ok": False, "error": "type a slash command, such as /esm help"}, status=400)
        emu = self.emu
        form = slash_command_body(
            command=command, text=text.strip(), user_id=user, user_name=emu.ui_users.get(user, user.lower()),
            channel_id=channel, channel_name=channel.lower(), trigger_id=emu.trigger_id(user),
            response_url=emu.new_response_url(channel, None, user),
        )
        status, answer_text = await self._post(form, form=True)
        if status == 200:
            answer = _json_or_empty(answer_text)
            if answer.get("text") or answer.get("blocks"):  # the app answered in its ack
                emu._ephemerals.append({**emu._new_message(answer), "channel": channel, "user": user})
                emu.changed()
        return self._answer(status)

    async def home_opened(self, request: web.Request) -> web.Response:
        """The user opened the app's Home tab: the app_home_opened event (Events API, JSON)."""
        try:
            user = self._user(await _json(request))
        except PageError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        emu = self.emu
        event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": "home",
                                 "event_ts": f"{time.time():.6f}"}
        if emu.home(user):
            event["view"] = emu.home(user)
        envelope = {
            "token": VERIFICATION_TOKEN, "team_id": TEAM["id"], "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": "Ev" + secrets.token_hex(8).upper(), "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM["id"], "user_id": emu.bot["user_id"],
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        status, _ = await self._post(json.dumps(envelope).encode(), form=False)
        return self._answer(status)

    async def hook(self, request: web.Request) -> web.Response:
        """A demo button (Send DBSQL alert, Load events): whatever the demo registered."""
        hook = self.emu.ui_hooks.get(request.match_info["name"])
        if hook is None:
            raise web.HTTPNotFound()
        try:
            said = await hook(await request.read())
        except Exception as exc:  # shown on the page, in one line
            return web.json_response({"ok": False, "error": str(exc)[:500]})
        return web.json_response({"ok": True, "message": str(said)})

    # ---------------------------------------------------------------- helpers

    def _user(self, body: dict[str, Any]) -> str:
        user = str(body.get("user") or "")
        if self.emu.ui_users and user not in self.emu.ui_users:
            raise PageError("unknown user")
        return user or self._default_user()

    def _open_view(self, body: dict[str, Any], user: str) -> dict[str, Any]:
        view_id = str(body.get("view_id") or "")
        view = self.emu._views.get(view_id)
        if view is None or view_id in self.emu.closed_views or self.emu._view_users.get(view_id) != user:
            raise PageError("no such view open for this user")
        return view

    def _common(self, kind: str, user: str) -> dict[str, Any]:
        name = self.emu.ui_users.get(user, user.lower())
        return {
            "type": kind,
            "user": {"id": user, "username": name, "name": name, "team_id": TEAM["id"]},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.emu.trigger_id(user),
            "team": TEAM,
            "enterprise": None,
            "is_enterprise_install": False,
        }

    async def _post(self, body: bytes, *, form: bool) -> tuple[int, str]:
        """The request, signed as Slack signs it, to the app; (status, body), or (0, why)."""
        emu = self.emu
        if emu.app_url is None or emu.signing_secret is None:
            return 0, "no app is connected to this workspace"
        headers = (signed_form_headers(emu.signing_secret, body) if form else
                   {"Content-Type": "application/json", **signed_headers(emu.signing_secret, body)})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=APP_TIMEOUT)) as session:
                async with session.post(emu.app_url, data=body, headers=headers) as response:
                    return response.status, await response.text()
        except asyncio.TimeoutError:
            return 0, "timeout"
        except aiohttp.ClientError as exc:
            return 0, str(exc)

    @staticmethod
    def _answer(status: int) -> web.Response:
        if status == 200:
            return web.json_response({"ok": True})
        why = "esm-bot did not respond in time" if status == 0 else f"esm-bot answered HTTP {status}"
        return web.json_response({"ok": False, "error": why})


_NO_STORE = {"Cache-Control": "no-store"}


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise PageError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise PageError("the body is not a JSON object")
    return body


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _block_id(block: dict[str, Any], index: int) -> str:
    return str(block.get("block_id") or f"b{index}")  # Slack makes one up where the app gave none


def _element(blocks: list[dict[str, Any]], body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The block and element the page says were used, found among the blocks the app sent."""
    try:
        index = int(body.get("block"))  # type: ignore[arg-type]
        block = blocks[index]
    except (TypeError, ValueError, IndexError):
        raise PageError("no such block") from None
    candidates = list(block.get("elements") or []) if block.get("type") == "actions" else []
    candidates += [block[key] for key in ("accessory", "element") if isinstance(block.get(key), dict)]
    for element in candidates:
        if isinstance(element, dict) and element.get("action_id") == body.get("action_id"):
            return {**block, "block_id": _block_id(block, index)}, element
    raise PageError("no such element")


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options += group.get("options") or []
    return options


def _action(block: dict[str, Any], element: dict[str, Any], value: Any) -> dict[str, Any]:
    """The `actions[0]` Slack sends for `element`: a button's value, a menu's chosen option, …"""
    kind = element.get("type")
    action: dict[str, Any] = {"type": kind, "action_id": element["action_id"], "block_id": block["block_id"],
                              "action_ts": f"{time.time():.6f}"}
    if kind == "button":
        action["text"] = element.get("text")
        for key in ("value", "style", "url"):
            if key in element:
                action[key] = element[key]
    elif kind in ("static_select", "overflow", "radio_buttons"):
        option = next((o for o in _options(element) if o.get("value") == value), None)
        if option is None:
            raise PageError("no such option")
        action["selected_option"] = option
    elif kind == "checkboxes":
        chosen = value if isinstance(value, list) else []
        action["selected_options"] = [o for o in _options(element) if o.get("value") in chosen]
    elif kind == "datepicker":
        action["selected_date"] = value
    elif kind == "users_select":
        action["selected_user"] = value
    elif kind == "plain_text_input":
        action["value"] = value
    return action


def _values(values: Any) -> dict[str, Any]:
    """A modal's state as the page sends it, kept to Slack's shape {block_id: {action_id: {...}}}."""
    if not isinstance(values, dict):
        return {}
    return {str(b): {str(a): v for a, v in actions.items() if isinstance(v, dict)}
            for b, actions in values.items() if isinstance(actions, dict)}
