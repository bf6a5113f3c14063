"""Hostile or broken webhook requests: each gets its documented status, nothing runs, the bot
stays up."""
from __future__ import annotations

import asyncio

import aiohttp

from handlers import webhook
from tests.e2e.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER, Bot, basic_auth, capsule8

AUTH = basic_auth(WEBHOOK_USER, WEBHOOK_PASSWORD)
JSON = {"Content-Type": "application/json", **AUTH}


async def test_an_oversized_body_is_413_whether_or_not_it_declares_its_length(bot: Bot):
    big = b'{"alert": {"id": "' + b"x" * (webhook.MAX_BODY_BYTES + 10) + b'"}}'
    assert (await bot.post("/webhooks/dbsql", big, JSON))[0] == 413

    async def chunks():
        for _ in range(20):
            yield b"y" * 20_000

    async with aiohttp.ClientSession() as session:
        async with session.post(bot.url + "/webhooks/dbsql", data=chunks(), headers=JSON) as response:
            assert response.status == 413
    assert await bot.healthy()


async def test_deeply_nested_json_is_400_not_a_crash(bot: Bot):
    nested = b'{"alert": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    status, answer = await bot.post("/webhooks/dbsql", nested, JSON)
    assert status == 400 and "nested" in answer["error"]
    huge_number = b'{"alert": {"id": ' + b"9" * 5000 + b"}}"
    assert (await bot.post("/webhooks/dbsql", huge_number, JSON))[0] == 400
    assert await bot.healthy()


async def test_a_client_that_trickles_its_body_is_cut_off(bot: Bot, monkeypatch):
    monkeypatch.setattr(webhook, "BODY_TIMEOUT_SECONDS", 0.5)

    async def trickle():
        yield b'{"alert":'
        await asyncio.sleep(2)
        yield b'{"id": "x"}}'

    async with aiohttp.ClientSession() as session:
        async with session.post(bot.url + "/webhooks/dbsql", data=trickle(), headers=JSON) as response:
            assert response.status == 408
    assert await bot.healthy()


async def test_basic_auth_header_garbage_is_401(bot: Bot):
    for header in ("Basic", "Basic !!!notbase64", "Bearer abc", "Basic " + "A" * 5_000, "basic ZGF0YWJyaWNrczp4"):
        status, _ = await bot.post("/webhooks/dbsql", b"{}", {"Content-Type": "application/json", "Authorization": header})
        assert status == 401, header
    # past the HTTP server's header limit the request never reaches the bot
    status, _ = await bot.post("/webhooks/dbsql", b"{}", {"Authorization": "Basic " + "A" * 10_000})
    assert status == 400
    assert await bot.healthy()


async def test_nothing_runs_for_refused_requests(bot: Bot):
    bot.add(capsule8("c8-1", "Kernel Module Loaded", "i-0driver000000001", 3))
    await bot.post("/webhooks/dbsql", b"{}", {"Content-Type": "application/json"})
    await bot.post("/webhooks/dbsql", b"nope", JSON)
    await bot.settle()
    assert bot.runtime.pipeline.runs == 0
    assert bot.findings() == []
