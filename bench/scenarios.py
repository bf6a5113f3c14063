"""Scenarios 1, 3 and 4 (2 and 5 live in bench/storm.py). Each returns a JSON-able dict."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp

from bench import loadgen
from bench.harness import (
    CHANNEL,
    DBX_TOKEN,
    DETECTIONS,
    PROCESS,
    RESPONDER,
    ROOT,
    SIGNING_SECRET,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    BotProcess,
    cluster_id,
    instances_of,
    notebook_rows,
    percentile,
    start_emulators,
    stop_emulators,
    storm_rows,
)
from bot.cli.audit_rows import capsule8_row
from emulators.botprocess import free_port
from emulators.slack_signing import signed_form_headers, slash_command_body
from emulators.thrift_sql import ThriftSQLEmulator

# -- 1. webhook ingest -----------------------------------------------------------------------


async def webhook_ingest(rates: list[int], step_s: float, closed_s: float, workers: int = 32) -> dict[str, Any]:
    slack, dbx = await start_emulators(200)
    folder = Path(tempfile.mkdtemp(prefix="esm-bench-webhook-"))
    bot = BotProcess(folder, slack.api_url, dbx.host, {})
    base_port = free_port()
    baseline = subprocess.Popen([sys.executable, "-m", "bench.baseline", str(base_port), WEBHOOK_USER, WEBHOOK_PASSWORD],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await bot.start_async()
        await _wait_http(f"http://127.0.0.1:{base_port}/healthz")
        headers, body = bot.webhook_headers(), bot.alert_body
        targets = {"baseline": f"http://127.0.0.1:{base_port}/webhooks/dbsql", "bot": bot.url + "/webhooks/dbsql"}
        pids = {"baseline": baseline.pid, "bot": bot.proc.pid if bot.proc else None}
        results: dict[str, Any] = {}
        for name, url in targets.items():
            await loadgen.open_loop(url, body, headers, 100, 0.5)  # warm up connections and code paths
            steps = [await loadgen.open_loop(url, body, headers, rate, step_s) for rate in rates]
            # the closed loop, with the CPU each side spent: the server's per request, and the load
            # generator's share of one core (near 1.0: it, not the server, set the pace)
            server_cpu, own_cpu, wall = _cpu_seconds(pids[name]), time.process_time(), time.perf_counter()
            most = await loadgen.closed_loop(url, body, headers, workers, closed_s)
            server_cpu = (_cpu_seconds(pids[name]) or 0.0) - (server_cpu or 0.0)
            requests = most["completed"] + most["errors"]
            most["server_cpu_ms_per_request"] = round(server_cpu * 1000 / requests, 3) if requests else None
            most["server_cpu_share"] = round(server_cpu / (time.perf_counter() - wall), 2)
            most["loadgen_cpu_share"] = round((time.process_time() - own_cpu) / (time.perf_counter() - wall), 2)
            results[name] = {"steps": steps, "max": most}
        syncs = len(bot.sync_reports())
        ratio = results["bot"]["max"]["throughput_rps"] / results["baseline"]["max"]["throughput_rps"]
        bot_cpu, base_cpu = (results[n]["max"]["server_cpu_ms_per_request"] for n in ("bot", "baseline"))
        at500 = next((s for s in results["bot"]["steps"] if s["offered_rps"] == 500), None)
        return {**results, "throughput_ratio": round(ratio, 3), "bot_p99_ms_at_500": at500 and at500["p99_ms"],
                "bot_p50_ms_at_500": at500 and at500["p50_ms"], "syncs_triggered": syncs,
                "cpu_per_request_ratio": round(base_cpu / bot_cpu, 3) if bot_cpu and base_cpu else None,
                "peak_rss_mb": round((bot.proc_status("VmHWM") or 0) / 1024, 1)}
    finally:
        baseline.terminate()
        baseline.wait(10)
        await bot.stop_async()
        await stop_emulators(slack, dbx)


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


# -- 3. latency to Slack ---------------------------------------------------------------------


async def latency_to_slack(runs: int, warmup: int = 3) -> dict[str, Any]:
    """Webhook sent -> chat.postMessage arriving at the Slack emulator, one new event per run
    (each on a new detection x cluster pair, so each is a new finding with full enrichment)."""
    slack, dbx = await start_emulators(200)
    folder = Path(tempfile.mkdtemp(prefix="esm-bench-latency-"))
    bot = BotProcess(folder, slack.api_url, dbx.host, {})
    try:
        source = bot.source()
        source.insert_rows(notebook_rows(200))
        await bot.start_async()
        latencies: list[float] = []
        async with aiohttp.ClientSession() as session:
            for i in range(runs + warmup):
                n, detection = i // len(DETECTIONS), DETECTIONS[i % len(DETECTIONS)]
                at = datetime.now(timezone.utc) - timedelta(seconds=1)
                source.insert_rows([capsule8_row(f"lat-{i:05d}", detection, instances_of(n % 200)[0], at, **PROCESS)])
                before = len(slack.post_times)
                t0 = time.perf_counter()
                status = await bot.webhook_async(session)
                assert status == 202, status
                deadline = t0 + 10
                while len(slack.post_times) == before and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
                if len(slack.post_times) == before:
                    raise RuntimeError(f"run {i}: no chat.postMessage within 10 s")
                if i >= warmup:
                    latencies.append(slack.post_times[before] - t0)
                await asyncio.sleep(0.01)
        return {"runs": len(latencies), "warmup_runs": warmup, "p50_ms": _ms(percentile(latencies, 50)),
                "p99_ms": _ms(percentile(latencies, 99)), "max_ms": _ms(max(latencies)),
                "min_ms": _ms(min(latencies))}
    finally:
        await bot.stop_async()
        await stop_emulators(slack, dbx)


# -- 4. /esm recent with a slow warehouse ----------------------------------------------------


async def command_latency(answer_rounds: int, ack_commands: int, ack_rate: float, delay_s: float = 5.0) -> dict[str, Any]:
    """`/esm recent`, signed as Slack signs it, with ESM_AUDIT_SOURCE=databricks and the Thrift
    SQL emulator holding every statement `delay_s`. ack = the HTTP answer to Slack's POST;
    answer = the bot's post to the response_url arriving at the Slack emulator."""
    slack, dbx = await start_emulators(200)
    folder = Path(tempfile.mkdtemp(prefix="esm-bench-command-"))
    warehouse = ThriftSQLEmulator(folder / "audit.duckdb", token=DBX_TOKEN).start()
    bot = BotProcess(folder, slack.api_url, dbx.host, {
        "ESM_AUDIT_SOURCE": "databricks", "ESM_WAREHOUSE_URI": warehouse.uri,
        "ESM_WAREHOUSE_HTTP_PATH": warehouse.http_path, "ESM_WAREHOUSE_TIMEOUT": "30",
    })
    try:
        warehouse.load(storm_rows(500, 20, 12, prefix="cmd"))
        await bot.start_async()
        async with aiohttp.ClientSession() as session:
            # warm-up (Bolt's auth.test, the first warehouse connection), run to its answer before
            # the delay is switched on: a warm-up statement still running would hold a worker
            warm = await _command(bot, slack, session)
            await _answers(slack, [warm["rid"]], timeout=60)
            warm_statements = len(warehouse.statements)
            warehouse.delay(delay_s)
            # answers: rounds of 4 at once (the warehouse source runs 4 statements at a time)
            sent = []
            for _ in range(answer_rounds):
                batch = await asyncio.gather(*(_command(bot, slack, session) for _ in range(4)))
                sent += batch
                await _answers(slack, [b["rid"] for b in batch], timeout=delay_s * 3 + 10)
            answers = [slack.response_times[b["rid"]] - b["t0"] for b in sent]
            answer_statements = len(warehouse.statements) - warm_statements
            # answers while a sync reads the warehouse: a webhook starts a sync over the loaded
            # events; once its enrichment asks for notebook commands (one statement per cluster,
            # several at once), 4 answers are asked for
            await bot.webhook_async(session)
            await _until(lambda: any(_is_commands_lookup(p) for _, p in warehouse.statements[warm_statements:]),
                         timeout=delay_s * 4 + 30)
            during = await asyncio.gather(*(_command(bot, slack, session) for _ in range(4)))
            await _answers(slack, [b["rid"] for b in during], timeout=delay_s * 40 + 30)
            during_sync = [slack.response_times[b["rid"]] - b["t0"] for b in during]
            sync_statements = sum(1 for _, p in warehouse.statements[warm_statements:] if _is_commands_lookup(p))
            sent += during
            answers += during_sync
            # acks under load: commands arrive at a fixed rate while earlier ones wait on the warehouse
            tasks = []
            start = time.perf_counter()
            for i in range(ack_commands):
                wait = start + i / ack_rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                tasks.append(asyncio.create_task(_command(bot, slack, session)))
            loaded = await asyncio.gather(*tasks)
        acks = [b["ack"] for b in sent + loaded]
        return {
            "warehouse_delay_s": delay_s, "commands": len(acks), "ack_statuses": sorted({b["status"] for b in sent + loaded}),
            "ack_p50_ms": _ms(percentile(acks, 50)), "ack_p99_ms": _ms(percentile(acks, 99)), "ack_max_ms": _ms(max(acks)),
            "answers": len(answers), "answer_p50_s": _s(percentile(answers, 50)), "answer_p99_s": _s(percentile(answers, 99)),
            "answer_max_s": _s(max(answers)), "answers_s": [_s(a) for a in answers],
            "during_sync_answers_s": [_s(a) for a in during_sync], "during_sync_p99_s": _s(percentile(during_sync, 99)),
            "during_sync_command_lookups": sync_statements,
            "warehouse_statements_per_answer": round(answer_statements / len(answers), 2),
            "ack_load_rate_per_s": ack_rate,
        }
    finally:
        warehouse.clear_faults()
        await bot.stop_async()
        warehouse.stop()
        await stop_emulators(slack, dbx)


async def _command(bot: BotProcess, slack: Any, session: aiohttp.ClientSession) -> dict[str, Any]:
    response_url = slack.new_response_url(CHANNEL)
    body = slash_command_body(text="recent 24h", user_id=RESPONDER, channel_id=CHANNEL, response_url=response_url)
    headers = signed_form_headers(SIGNING_SECRET, body)
    t0 = time.perf_counter()
    async with session.post(bot.url + "/slack/events", data=body, headers=headers) as response:
        await response.read()
        ack = time.perf_counter() - t0
        return {"rid": response_url.rsplit("/", 1)[-1], "t0": t0, "ack": ack, "status": response.status}


def _is_commands_lookup(params: dict[str, Any]) -> bool:
    return {"cluster_id", "start", "end"} <= set(params)  # enrichment's notebook-command statement


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError("the sync did not reach the warehouse in time")
        await asyncio.sleep(0.01)


async def _answers(slack: Any, rids: list[str], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(rid in slack.response_times for rid in rids):
            return
        await asyncio.sleep(0.005)
    raise RuntimeError("no answer to /esm recent in time")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _s(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


__all__ = ["webhook_ingest", "latency_to_slack", "command_latency", "cluster_id"]
