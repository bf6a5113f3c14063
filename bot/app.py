"""The aiohttp application: /webhooks/dbsql, /slack/events (Bolt), /healthz, /readyz, /metrics.

Slack traffic reaches the ONE AsyncApp built by build_bolt over either transport: HTTP
(`POST /slack/events`, signed requests; the default) or Socket Mode (an outbound websocket, when
SLACK_APP_TOKEN is set: for a Databricks App, which Slack cannot call). The listeners are the
same either way.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.observability import metrics
from bot.services.health import Readiness, bearer_matches
from bot.runtime import Runtime
from handlers import benign_modal, commands, home, incident, interactions
from handlers.replay_guard import ReplayGuard
from handlers.webhook import BasicAuth, webhook_handler
from handlers.workspace_guard import workspace_guard

RUNTIME = web.AppKey("runtime", Runtime)
log = logging.getLogger(__name__)


def build_bolt(runtime: Runtime) -> AsyncApp:
    """The Slack app and its listeners, whatever the transport. HTTP mode needs the signing
    secret; Socket Mode (SLACK_APP_TOKEN) does not, as websocket envelopes are not signed."""
    settings = runtime.settings
    settings.require("slack_bot_token")
    if settings.slack_app_token is None:
        settings.require("slack_signing_secret")
    client = AsyncWebClient(token=settings.secret("slack_bot_token"), base_url=settings.slack_api_url)
    signing_secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else ""
    # Bolt answers Slack as soon as a listener calls ack(); the slow part runs on afterwards.
    # ESM_SLACK_TEAM_ID / ESM_SLACK_ENTERPRISE_ID: other workspaces are refused before anything runs (#11)
    guard = workspace_guard(settings.slack_team_id, settings.slack_enterprise_id)
    bolt = AsyncApp(client=client, signing_secret=signing_secret, before_authorize=guard)
    commands.register(bolt, lambda: runtime)
    interactions.register(bolt, runtime.dispatcher)
    benign_modal.register(bolt, runtime.dispatcher)
    home.register(bolt, lambda: runtime)
    incident.register(bolt, runtime)
    return bolt


def build_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    if settings.poll_interval is None:  # polling bots (Databricks Apps) may go without webhooks
        settings.require("webhook_user", "webhook_password")
    bolt = build_bolt(runtime)
    readiness = Readiness(settings, runtime.store, health=runtime.health)
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime

    # seen signed bodies live in the state store: a replay after a restart or to another replica is caught (#11)
    replays = (ReplayGuard(settings.slack_signing_secret.reveal(), ledger=runtime.store)
               if settings.slack_signing_secret else None)

    async def slack_events(request: web.Request) -> web.Response:
        if ReplayGuard.malformed(request.headers):
            return web.json_response({"error": "invalid request"}, status=401)
        bolt_request = await _bolt_request(request)
        if bolt_request is None:
            return web.json_response({"error": "invalid request"}, status=400)
        if replays is not None and await replays.is_replay(bolt_request.raw_body, bolt_request.headers):
            return web.Response(status=200)  # seen before: answered, never run twice (handlers/replay_guard.py)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})  # alive: no dependency is consulted

    admin_token = settings.admin_token.reveal() if settings.admin_token else None

    async def readyz(request: web.Request) -> web.Response:
        # details (hosts, principals, SDK errors) only for the admin token; everyone else: ok / not ok
        detailed = bearer_matches(request.headers.get("Authorization"), admin_token)
        ready, checks = await readiness.run(detailed=detailed)
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
        if not ready:
            body["failing"] = sorted(name for name, check in checks.items() if not check["ok"])
        return web.json_response(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})

    async def metrics_page(request: web.Request) -> web.Response:
        try:
            metrics.OUTBOX_DEPTH.set(await asyncio.wait_for(runtime.store.outbox_depth(), 2.0))
        except Exception as exc:  # the scrape still answers; the gauge keeps its last value
            log.warning("outbox depth unavailable for /metrics: %s", exc)
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": metrics.CONTENT_TYPE})

    auth = BasicAuth(settings.webhook_user, settings.webhook_password)  # unset: refuses every call
    app.router.add_post("/webhooks/dbsql", webhook_handler(auth, runtime.trigger_sync))
    if settings.slack_signing_secret is not None:  # never verify Slack requests with an empty secret
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)

    async def lifecycle(app: web.Application):
        runtime.start_background()
        socket = start_socket_mode(bolt, settings.slack_app_token.reveal()) if settings.slack_app_token else None
        yield
        if socket is not None:
            await socket.close()
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _bolt_request(request: web.Request) -> AsyncBoltRequest | None:
    """The request as Bolt reads it, or None (answered 400, never a 500 with a traceback) when its
    body is not UTF-8 or not the form or JSON Slack sends; logged in one line, without the body."""
    raw = await request.read()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("Slack request refused (400): its body (%d bytes) is not UTF-8", len(raw))
        return None
    try:  # Bolt parses the body here: a payload that is not a JSON object fails in its parser
        return AsyncBoltRequest(body=body, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        log.warning("Slack request refused (400): its body (%d bytes) cannot be read (%s)", len(raw), type(exc).__name__)
        return None


class SocketMode:
    """Bolt's Socket Mode transport (slack_sdk's aiohttp SocketModeClient) around the same AsyncApp.
    It connects in the background: a Slack outage at start-up must not hold the HTTP server
    (health, metrics, webhooks) back; the client keeps retrying and reconnects by itself."""

    def __init__(self, bolt: AsyncApp, app_token: str):
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self.handler = AsyncSocketModeHandler(bolt, app_token=app_token)  # web client: bolt.client
        self.task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        await self.handler.connect_async()
        log.info("Slack Socket Mode connected")

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.handler.close_async()


def start_socket_mode(bolt: AsyncApp, app_token: str) -> SocketMode:
    return SocketMode(bolt, app_token)
