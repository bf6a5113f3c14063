"""Load generator for scenario 1, on loopback: an open-loop fixed-rate schedule (request i is
due at start + i/rate and its latency is counted from when it was due, so a slow server cannot
hide queueing: no coordinated omission), and a closed loop of C workers for the most a target
serves. Connections are bounded and kept alive."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.harness import percentile


def _summary(latencies: list[float], errors: int, elapsed: float, offered: float | None) -> dict[str, Any]:
    done = len(latencies)
    return {
        "offered_rps": offered, "completed": done, "errors": errors,
        "throughput_rps": round(done / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def _post_ok(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    """One request, read to the end; True for a 2xx answer."""
    try:
        async with session.post(url, data=body) as response:
            await response.read()
            return response.status < 300
    except aiohttp.ClientError:
        return False


async def open_loop(url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float,
                    connections: int = 64) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def one(due: float) -> None:
            nonlocal errors
            if await _post_ok(session, url, body):
                latencies.append(time.perf_counter() - due)
            else:
                errors += 1

        total = int(rate * seconds)
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return _summary(latencies, errors, elapsed, rate)


async def closed_loop(url: str, body: bytes, headers: dict[str, str], workers: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                if await _post_ok(session, url, body):
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - start
    result = _summary(latencies, errors, elapsed, None)
    result["workers"] = workers
    return result
