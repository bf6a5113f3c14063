"""Slack Socket Mode, emulated: the websocket end of `apps.connections.open`.

The Slack emulator answers `apps.connections.open` (app-level `xapp-` token) with a
`ws://127.0.0.1:PORT/socket-mode/<id>` URL served here. As Slack does, the server greets each
connection with a `hello` frame, then pushes envelopes (`{"envelope_id", "type", "payload",
"accepts_response_payload"}`) and waits for the app to acknowledge each one by sending
`{"envelope_id": ..., "payload"?: ...}` back on the socket.

slack_sdk's aiohttp SocketModeClient connects with `ws_connect(url, autoping=False,
heartbeat=...)` and pings at once; aiohttp's server side answers pings itself (autoping), and a
plain `ws://` URL is accepted (its `ssl=True` only applies to `wss://`).
"""
from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from emulators.slack_signing import APP_ID, TEAM, VERIFICATION_TOKEN

ROUTE = "/socket-mode/{sid}"


class SocketModeServer:
    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: dict[str, dict[str, Any]] = {}  # envelope id -> the app's ack frame
        self.frames: list[dict[str, Any]] = []  # every frame the app sent, in order
        self.opened: list[str] = []  # connection ids issued by apps.connections.open
        self.accepted = 0  # websocket connections greeted with hello, ever
        self._acked: dict[str, asyncio.Event] = {}
        self._connected = asyncio.Event()
        # the Slack emulator's own (its views.open accepts only the trigger_ids it issued)
        self.new_trigger_id: Callable[[], str] = lambda: f"{secrets.randbelow(10**6)}.42.trigger"

    # -- what the Web API method hands out ---------------------------------------------------

    def new_url(self, base_url: str) -> str:
        sid = secrets.token_hex(6)
        self.opened.append(sid)
        return base_url.replace("http://", "ws://", 1) + ROUTE.replace("{sid}", sid)

    # -- the websocket -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        sid = request.match_info["sid"]
        ws = web.WebSocketResponse(autoping=True)
        if sid not in self.opened:
            await ws.prepare(request)
            await ws.close(code=4000, message=b"unknown connection")
            return ws
        await ws.prepare(request)
        self.sockets.append(ws)
        self.accepted += 1
        await ws.send_str(json.dumps({
            "type": "hello",
            "num_connections": len([s for s in self.sockets if not s.closed]),
            "debug_info": {"host": "esm-emulated", "approximate_connection_time": 3600},
            "connection_info": {"app_id": APP_ID},
        }))
        self._connected.set()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._received(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
            if not any(not s.closed for s in self.sockets):
                self._connected.clear()
        return ws

    def _received(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            return
        self.frames.append(frame)
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        if envelope_id:
            self.acks[envelope_id] = frame
            self._acked.setdefault(envelope_id, asyncio.Event()).set()

    # -- test helpers --------------------------------------------------------------------------

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_accepted(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` connections have been made in all (a reconnect makes the second) and one is open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.accepted < count or not any(not s.closed for s in self.sockets):
            if loop.time() > deadline:
                raise TimeoutError(f"{self.accepted} Socket Mode connection(s), expected {count}")
            await asyncio.sleep(0.02)

    async def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = False) -> str:
        """Push one envelope to the newest open connection; returns its envelope id."""
        live = [s for s in self.sockets if not s.closed]
        if not live:
            raise RuntimeError("no Socket Mode connection is open")
        envelope_id = secrets.token_hex(8)
        self._acked.setdefault(envelope_id, asyncio.Event())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": accepts_response_payload}
        await live[-1].send_str(json.dumps(envelope))
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        await asyncio.wait_for(self._acked.setdefault(envelope_id, asyncio.Event()).wait(), timeout)
        return self.acks[envelope_id]

    async def slash_command(self, *, text: str, user_id: str, channel_id: str, response_url: str,
                            command: str = "/esm") -> str:
        """An `/esm` invocation as Socket Mode delivers it (the form fields as a JSON object)."""
        payload = {
            "token": VERIFICATION_TOKEN, "team_id": TEAM["id"], "team_domain": TEAM["domain"],
            "channel_id": channel_id, "channel_name": "security-alerts", "user_id": user_id,
            "user_name": user_id.lower(), "command": command, "text": text, "api_app_id": APP_ID,
            "is_enterprise_install": "false", "response_url": response_url,
            "trigger_id": self.new_trigger_id(),
        }
        return await self.send("slash_commands", payload, accepts_response_payload=True)

    async def disconnect_all(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
