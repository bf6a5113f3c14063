"""The baseline for scenario 1: a bare aiohttp endpoint that only checks HTTP Basic auth (in
constant time, as the bot does) and answers 200. Run as its own process:
`python -m bench.baseline PORT USER PASSWORD`."""
from __future__ import annotations

import base64
import hmac
import sys

from aiohttp import web


def build(user: str, password: str) -> web.Application:
    expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    async def handle(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(header, expected):
            return web.Response(status=401)
        await request.read()
        return web.Response(status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/dbsql", handle)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    web.run_app(build(user, password), host="127.0.0.1", port=port, access_log=None, print=None)
