"""Slowloris against the real bot process: 1,000 loopback sockets that each send one byte of a
request header per second (re-opened when the bot closes them, as slowloris tools do), while
/healthz is asked five times a second. The bot closes connections whose headers are not
complete within ESM_HEADER_TIMEOUT, keeps at most ESM_MAX_CONNECTIONS open (those waiting longest
for their headers make room for new ones), answers /healthz quickly throughout, and logs a few
summary lines instead of a traceback per socket. The bot runs with 1,024 open files at most, as
in a small container: without the limits it runs out of descriptors and every accept fails.

The slow sockets live in a child process (`python -m tests.reliability.test_slowloris PORT …`),
so the /healthz timings are not those of a test process busy with a thousand sockets. It stops
by itself (bounded in time and in sockets opened) and closes every socket it opened."""
from __future__ import annotations

import json
import resource
import socket
import statistics
import subprocess
import sys
import time

import requests

from tests.reliability.harness import ROOT, record

SOCKETS = 1000
SECONDS = 12  # the flood (re-opening what the bot closes) ...
QUIET = 4  # ... then this long with no new socket: the rest must be closed by the header timeout
HEADER_TIMEOUT = 3
MAX_CONNECTIONS = 512
MAX_OPENS = 20_000  # bound on the connections the flood opens in all
HEADER = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 4000


# ------------------------------------------------------------------- the flood (child process)


def _connect(port: int) -> socket.socket | None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return None
    s.setblocking(False)
    return s


def _still_open(s: socket.socket) -> bool:
    try:
        s.send(b"s")
        return True
    except OSError:
        return False


def flood(port: int, sockets_wanted: int, seconds: float, quiet: float) -> dict[str, int]:
    """Keep `sockets_wanted` sockets trickling one header byte a second for `seconds`, then go on
    trickling without opening new ones for `quiet` seconds. Returns the tallies."""
    sockets: dict[socket.socket, int] = {}  # each socket -> how much of its header it has sent
    opened = closed_by_bot = 0
    try:
        started = time.monotonic()
        while time.monotonic() - started < seconds + quiet:
            tick = time.monotonic()
            alive: dict[socket.socket, int] = {}
            for s, sent in sockets.items():
                try:
                    s.send(HEADER[sent:sent + 1])
                    alive[s] = sent + 1
                except OSError:  # closed by the bot
                    s.close()
                    closed_by_bot += 1
            flooding = time.monotonic() - started < seconds
            while flooding and len(alive) < sockets_wanted and opened < MAX_OPENS and time.monotonic() - tick < 0.8:
                s = _connect(port)
                opened += 1
                if s is not None:
                    alive[s] = 0
            sockets = alive
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        left = sum(1 for s in sockets if _still_open(s))
    finally:
        for s in sockets:
            s.close()
    return {"opened": opened, "closed_by_bot": closed_by_bot, "left_open": left}


# ------------------------------------------------------------------- the test


def _metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_slow_header_sockets_never_lock_out_healthz(make_bot):
    bot = make_bot(ESM_HEADER_TIMEOUT=str(HEADER_TIMEOUT), ESM_MAX_CONNECTIONS=str(MAX_CONNECTIONS))
    bot.start()
    assert bot.proc is not None
    resource.prlimit(bot.proc.pid, resource.RLIMIT_NOFILE, (1024, 1024))
    port = int(bot.url.rsplit(":", 1)[1])
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.test_slowloris", str(port), str(SOCKETS), str(SECONDS), str(QUIET)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    latencies: list[float] = []
    failures: list[str] = []
    try:
        time.sleep(1.5)  # the first 1,000 sockets are open
        deadline = time.monotonic() + SECONDS + QUIET - 1
        while time.monotonic() < deadline and child.poll() is None:
            asked = time.monotonic()
            try:
                status = requests.get(bot.url + "/healthz", timeout=2).status_code
                if status != 200:
                    failures.append(f"HTTP {status}")
            except requests.RequestException as exc:
                failures.append(type(exc).__name__)
            latencies.append(time.monotonic() - asked)
            time.sleep(max(0.0, 0.2 - (time.monotonic() - asked)))
        out, _ = child.communicate(timeout=SECONDS + QUIET + 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    tally = json.loads(out.strip().splitlines()[-1])
    open_now = _metric(bot.url, "esm_connections_open")
    timed_out = _metric(bot.url, 'esm_connections_closed_total{reason="header_timeout"}')
    evicted = _metric(bot.url, 'esm_connections_closed_total{reason="evicted"}')
    assert bot.alive(), bot.log_tail()
    time.sleep(0.5)
    log = bot.log_text()
    log_bytes = sum(p.stat().st_size for p in bot.logs)
    ordered = sorted(latencies)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    record(
        "slowloris",
        f"slowloris: {SOCKETS:,} slow-header sockets (one byte a second) for {SECONDS}s, then {QUIET}s without new "
        f"ones: {tally['opened']:,} opened, {timed_out:.0f} closed by the {HEADER_TIMEOUT}s header timeout, "
        f"{evicted:.0f} reset to make room, {tally['left_open']} left; /healthz {len(latencies)} asks, "
        f"{len(failures)} failed, p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; at most "
        f"{MAX_CONNECTIONS} connections open; log {log_bytes:,} bytes, {log.count('Traceback')} tracebacks",
        sockets=SOCKETS, seconds=SECONDS, opened=tally["opened"], header_timeouts=timed_out, evicted=evicted,
        left_open=tally["left_open"], healthz=len(latencies), failures=len(failures),
        p50_ms=statistics.median(latencies) * 1000, p99_ms=p99 * 1000, max_ms=ordered[-1] * 1000, log_bytes=log_bytes,
    )
    assert failures == [], failures[:5]
    assert p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms"
    assert timed_out > 0 and evicted > 0
    assert tally["left_open"] == 0 and open_now <= 2, "every slow socket is closed once the flood stops"
    assert "Traceback" not in log and "Too many open files" not in log
    assert log_bytes < 20_000, f"{log_bytes} bytes of log"
    summaries = [line for line in log.splitlines() if "connections closed in the last" in line]
    assert 1 <= len(summaries) <= (SECONDS + QUIET) // 10 + 2, summaries


def _read_answer(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_a_kept_alive_connection_may_idle_but_not_trickle_its_next_request(make_bot):
    """Idle between requests is not slow headers (a proxy keeps connections open): only the
    bytes of a next request start the clock, and a trickled next request is closed with 408."""
    bot = make_bot(ESM_HEADER_TIMEOUT=str(HEADER_TIMEOUT))
    bot.start()
    port = int(bot.url.rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        assert _read_answer(s, 5).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT + 1)  # idle, longer than the header timeout: still open
        s.sendall(request)
        assert _read_answer(s, 5).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        answer = b""
        for byte in request[:-4]:  # the next request one byte a second: closed after the header timeout
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            s.settimeout(1.0)
            try:
                answer += s.recv(4096)
            except socket.timeout:
                continue
            if answer:
                break
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 2, waited


if __name__ == "__main__":  # the child process: python -m tests.reliability.test_slowloris PORT SOCKETS SECONDS QUIET
    port_, sockets_, seconds_, quiet_ = sys.argv[1:5]
    print(json.dumps(flood(int(port_), int(sockets_), float(seconds_), float(quiet_))), flush=True)
