"""The aiohttp application: /webhooks/dbsql, /slack/events (Bolt), /healthz."""
from __future__ import annotations

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from handlers import benign_modal, commands, interactions
from handlers.webhook import BasicAuth, webhook_handler

RUNTIME = web.AppKey("runtime", Runtime)


def build_bolt(runtime: Runtime) -> AsyncApp:
    settings = runtime.settings
    settings.require("slack_bot_token", "slack_signing_secret")
    client = AsyncWebClient(token=settings.slack_bot_token.reveal(), base_url=settings.slack_api_url)
    # Bolt answers Slack as soon as a listener calls ack(); the slow part runs on afterwards
    bolt = AsyncApp(client=client, signing_secret=settings.slack_signing_secret.reveal())
    commands.register(bolt, lambda: runtime)
    interactions.register(bolt, runtime.dispatcher)
    benign_modal.register(bolt, runtime.dispatcher)
    return bolt


async def status_text(runtime: Runtime) -> str:
    counts = await runtime.store.counts()
    watermark = await runtime.store.watermark()
    report = runtime.pipeline.last_report
    return (
        f"*esm-bot status*\n"
        f"• last sync: {runtime.pipeline.last_sync_at or 'never'}"
        f"{' — error: ' + report.error if report and report.error else ''}\n"
        f"• watermark: {watermark or 'none yet'}\n"
        f"• events stored: {sum(v for k, v in counts.items() if k not in ('findings', 'posted'))}, "
        f"findings: {counts.get('findings', 0)}, posted: {counts.get('posted', 0)}, "
        f"ignored: {counts.get('ignored', 0)}, suppressed: {counts.get('suppressed', 0)}\n"
        f"• outbox depth: {await runtime.store.outbox_depth()}"
    )


def build_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    settings.require("webhook_user", "webhook_password")
    bolt = build_bolt(runtime)
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    auth = BasicAuth(settings.webhook_user, settings.webhook_password)
    app.router.add_post("/webhooks/dbsql", webhook_handler(auth, runtime.trigger_sync))
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)

    async def lifecycle(app: web.Application):
        runtime.start_background()
        yield
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app
