"""A small async TTL cache with single flight: concurrent misses for one key share one load.

A storm of events on one cluster must cost one Databricks call, not one per event; and an
outage must not turn into one timed-out call per event, so failures are cached briefly too.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    def __init__(self, ttl: float, error_ttl: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.error_ttl = error_ttl
        self._clock = clock
        self._values: dict[str, tuple[float, T | None, BaseException | None]] = {}
        self._loading: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        cached = self._values.get(key)
        if cached is not None and cached[0] > self._clock():
            if cached[2] is not None:
                raise cached[2]
            return cached[1]  # type: ignore[return-value]
        if key in self._loading:
            return await asyncio.shield(self._loading[key])
        return await self._load(key, load)

    async def _load(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except Exception as exc:
            self._values[key] = (self._clock() + self.error_ttl, None, exc)
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            self._values[key] = (self._clock() + self.ttl, value, None)
            future.set_result(value)
            return value
        finally:
            del self._loading[key]
