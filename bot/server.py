"""The HTTP server around the aiohttp application: a bounded number of connections, and a
deadline for each request's headers (slowloris).

aiohttp has no header timeout of its own: a client that sends one header byte a second holds a
connection (and a file descriptor) for as long as it likes, and enough of them exhaust the
process's descriptors, after which every accept fails. `serve` therefore listens through
`ConnectionGuard`, a wrapper around aiohttp's protocol factory (`AppRunner.server`):

* a connection must deliver a request's complete headers within `header_timeout` seconds of
  being opened, and again within `header_timeout` of the first byte of each later request on a
  kept-alive connection; otherwise it is answered 408 and closed;
* at most `max_connections` are open at once. At the limit, a new connection takes the place of
  the one that has waited longest for its headers (reset at once); only when every
  open connection is in the middle of a request is the new one refused (closed at once). So a
  flood of slow sockets never locks out a quick request such as `GET /healthz`;
* what it closes is logged as one summary line at most every `LOG_EVERY` seconds (no
  traceback), and counted in `/metrics` (`esm_connections_closed_total{reason}`,
  `esm_connections_open`). The same goes for the event loop's "accept() out of system resource"
  errors (`RateLimitedLog`), which otherwise print a traceback for every failed accept.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import resource
import signal
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.observability import metrics

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two summary lines about closed or refused connections
BACKLOG = 1024  # pending connections the kernel queues before accept(): a burst of them is not dropped
KEEPALIVE_TIMEOUT = 75.0  # an idle kept-alive connection (no byte of a next request) closes after this
FD_RESERVE = 128  # descriptors kept for everything but client connections (databases, Slack, Databricks)
_END_OF_HEADERS = b"\r\n\r\n"
_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

CONNECTIONS_OPEN = metrics.CONNECTIONS_OPEN
CONNECTIONS_CLOSED = metrics.CONNECTIONS_CLOSED


class _Guarded(asyncio.Protocol):
    """One connection: forwards everything to aiohttp's RequestHandler, and tells the guard when
    it starts or stops waiting for a request's headers."""

    __slots__ = ("guard", "inner", "transport", "waiting", "tail", "requests")

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol):
        self.guard = guard
        self.inner: asyncio.Protocol | None = inner
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # waiting for the complete headers of a request
        self.tail = b""  # the last bytes seen while waiting (the end of headers may span two reads)
        self.requests = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.guard.admit(self):
            self.inner = None
            transport.abort()  # type: ignore[attr-defined]
            return
        assert self.inner is not None
        self.inner.connection_made(transport)
        self.guard.start_waiting(self)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:
            return
        if not self.waiting and _idle(inner):
            self.guard.start_waiting(self)  # the first bytes of a next request on a kept-alive connection
        done = False
        if self.waiting:
            seen = self.tail + data
            done = _END_OF_HEADERS in seen
            self.tail = seen[-3:]
        inner.data_received(data)
        parsed = _parsed_requests(inner)
        if parsed is not None and parsed > self.requests:
            self.requests, done = parsed, True
        if done and self.waiting:
            self.guard.stop_waiting(self)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self.inner = self.inner, None
        self.guard.forget(self)
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- closing it from the guard

    def abort(self) -> None:
        self.waiting = False
        if self.transport is not None:
            self.transport.abort()

    def close(self, answer: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            transport.write(answer)
        except Exception:  # a broken socket: closing is all that is left
            pass
        transport.close()
        # whatever the client does not read within a moment is dropped, never waited for
        asyncio.get_running_loop().call_later(1.0, transport.abort)


def _idle(inner: asyncio.Protocol) -> bool:
    """aiohttp's handler is waiting for the next request (between requests)."""
    waiter = getattr(inner, "_waiter", None)
    return waiter is not None and not waiter.done()


def _parsed_requests(inner: asyncio.Protocol) -> int | None:
    count = getattr(inner, "_request_count", None)
    return count if isinstance(count, int) else None


class ConnectionGuard:
    """The protocol factory `loop.create_server` is given: wraps `factory` (aiohttp's Server)."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, header_timeout: float, max_connections: int):
        self.factory = factory
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.open: set[_Guarded] = set()
        self.waiting: OrderedDict[_Guarded, float] = OrderedDict()  # connection -> deadline, oldest first
        self.closed: Counter[str] = Counter()  # by reason, since the last summary line
        self.totals: Counter[str] = Counter()  # by reason, since start
        self._last_summary = time.monotonic()
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> _Guarded:
        return _Guarded(self, self.factory())

    # -- bookkeeping, called by the connections

    def admit(self, conn: _Guarded) -> bool:
        if len(self.open) >= self.max_connections:
            if not self.waiting:
                self._count("refused")  # every open connection is in the middle of a request
                return False
            oldest, _ = self.waiting.popitem(last=False)
            self._count("evicted")
            oldest.abort()  # the cheapest close: under a flood every microsecond per connection counts
            self.open.discard(oldest)  # its connection_lost follows; the slot is free now
        self.open.add(conn)
        CONNECTIONS_OPEN.set(len(self.open))
        return True

    def start_waiting(self, conn: _Guarded) -> None:
        conn.waiting, conn.tail = True, b""
        self.waiting[conn] = time.monotonic() + self.header_timeout
        self.waiting.move_to_end(conn)

    def stop_waiting(self, conn: _Guarded) -> None:
        conn.waiting = False
        self.waiting.pop(conn, None)

    def forget(self, conn: _Guarded) -> None:
        self.waiting.pop(conn, None)
        self.open.discard(conn)
        CONNECTIONS_OPEN.set(len(self.open))

    def _count(self, reason: str) -> None:
        self.closed[reason] += 1
        self.totals[reason] += 1
        CONNECTIONS_CLOSED.inc(reason=reason)

    # -- the deadline sweep and the summary line

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        self.summarise(force=True)

    async def _sweep_forever(self) -> None:
        tick = max(0.05, min(0.5, self.header_timeout / 4))
        while True:
            await asyncio.sleep(tick)
            try:
                self.sweep(time.monotonic())
                self.summarise()
            except Exception:  # never let the guard die: log once a period at most
                log.warning("connection guard sweep failed", exc_info=True)

    def sweep(self, now: float) -> int:
        """Close every connection whose headers are overdue (the oldest deadlines come first)."""
        expired = 0
        while self.waiting:
            conn, deadline = next(iter(self.waiting.items()))
            if deadline > now:
                break
            self.waiting.popitem(last=False)
            conn.waiting = False
            self._count("header_timeout")
            conn.close(_TIMEOUT_ANSWER)
            expired += 1
        return expired

    def summarise(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.closed or (not force and now - self._last_summary < LOG_EVERY):
            return
        period = now - self._last_summary
        parts = []
        if self.closed["header_timeout"]:
            parts.append(f"{self.closed['header_timeout']} sent no complete request headers within "
                         f"{self.header_timeout:g}s (ESM_HEADER_TIMEOUT)")
        if self.closed["evicted"]:
            parts.append(f"{self.closed['evicted']} still waiting for headers made room for new ones at the "
                         f"limit of {self.max_connections} (ESM_MAX_CONNECTIONS)")
        if self.closed["refused"]:
            parts.append(f"{self.closed['refused']} refused: all {self.max_connections} connections busy")
        log.warning("connections closed in the last %.0fs: %s; %d open", period, "; ".join(parts), len(self.open))
        self.closed.clear()
        self._last_summary = now


class RateLimitedLog(logging.Filter):
    """At most one record per message text every `every` seconds (the first keeps its traceback,
    masked like every other record); the next one says how many were left out. For loggers that
    can repeat one error thousands of times a second under a flood (the event loop's accept
    errors, aiohttp's connection errors)."""

    def __init__(self, every: float = LOG_EVERY):
        super().__init__()
        self.every = every
        self._last: dict[str, float] = {}
        self._dropped: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._dropped[key] += 1
            return False
        if len(self._last) > 1000:  # bounded, whatever the messages
            self._last.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like it in the last {self.every:g}s not logged)"
            record.args = None
        return True


RATE_LIMITED_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.internal")


def limit_noisy_loggers() -> None:
    for name in RATE_LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitedLog) for f in logger.filters):
            logger.addFilter(RateLimitedLog())


def descriptor_budget(max_connections: int) -> int:
    """Raise the soft limit on open files to the hard one, and keep `max_connections` below it
    (with room for everything else), so accept() never runs out of descriptors."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            wanted = hard if hard != resource.RLIM_INFINITY else max(soft, max_connections + FD_RESERVE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (ValueError, OSError):
        return max_connections
    if soft == resource.RLIM_INFINITY or max_connections + FD_RESERVE <= soft:
        return max_connections
    allowed = max(1, soft - FD_RESERVE)
    log.warning("ESM_MAX_CONNECTIONS=%d is more than this process's %d open files allow: using %d",
                max_connections, soft, allowed)
    return allowed


class GuardedSite(web.BaseSite):
    """A TCP site whose protocol factory is wrapped in a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, header_timeout: float,
                 max_connections: int, backlog: int = BACKLOG):
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port
        assert runner.server is not None
        self.guard = ConnectionGuard(runner.server, header_timeout=header_timeout, max_connections=max_connections)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        sockets = getattr(self._server, "sockets", None)  # an asyncio.Server (create_server) has them
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, self._host, self._port, backlog=self._backlog,
                                                reuse_address=True)
        self.guard.start()

    async def stop(self) -> None:
        await self.guard.stop()
        await super().stop()


SWITCH_INTERVAL = 0.001  # seconds


class PortInUse(Exception):
    """The port is taken: said in one line, not as a traceback."""


def check_port(host: str, port: int) -> None:
    """PortInUse when nothing can listen on host:port (another server holds it)."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(_in_use(host, port, exc)) from None
            raise


def _in_use(host: str, port: int, exc: OSError) -> str:
    return (f"port {port} is in use: another program listens on {host}:{port} ({exc.strerror}); "
            "stop it or choose another port with --port or ESM_PORT")


async def serve(make_app: Callable[[], Awaitable[web.Application]], host: str, port: int, *,
                header_timeout: float, max_connections: int,
                say: Callable[[str], Any] = lambda text: print(text, file=sys.stderr, flush=True)) -> None:
    """Run the application until SIGTERM or SIGINT, then stop gracefully."""
    limit_noisy_loggers()
    # The sync plans pages and the drivers convert rows in worker threads; a shorter GIL switch
    # interval (CPython's default: 5 ms) hands the event loop the interpreter sooner, so /healthz
    # and Slack clicks are answered while a storm is stored (#14).
    sys.setswitchinterval(SWITCH_INTERVAL)
    max_connections = descriptor_budget(max_connections)
    app = await make_app()
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = GuardedSite(runner, host, port, header_timeout=header_timeout, max_connections=max_connections)
        try:
            await site.start()
        except OSError as exc:  # taken between the check and now
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(_in_use(host, port, exc)) from None
            raise
        say(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        log.info("listening on %s: headers within %gs, at most %d connections", site.name, header_timeout,
                 max_connections)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
