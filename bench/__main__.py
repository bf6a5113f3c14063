"""`python -m bench [--quick] [--only N ...] [--profile]`: run the issue #6 scenarios against the
real bot process and local emulators, print a Markdown table and write bench/results/latest.json."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import scenarios, storm, visibility
from bench.report import machine, render, rows_for

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {
    "rates": [100, 250, 500, 1000, 2000], "step_s": 4.0, "closed_s": 5.0,
    "storm": 10_000, "growth": [1_000, 10_000, 100_000], "latency_runs": 200,
    "answer_rounds": 2, "ack_commands": 40, "ack_rate": 4.0, "pace_interval": 0.1,
}
QUICK = {
    "rates": [100, 500], "step_s": 2.0, "closed_s": 2.0,
    "storm": 2_000, "growth": [500, 2_000, 5_000], "latency_runs": 30,
    "answer_rounds": 1, "ack_commands": 12, "ack_rate": 4.0, "pace_interval": 0.05,
}


async def run(only: set[int], quick: bool, log: Any) -> dict[str, Any]:
    p = QUICK if quick else FULL
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}

    async def step(key: str, number: int, coro_factory: Any) -> None:
        if only and number not in only:
            return
        print(f"[bench] scenario {number}: {key} ...", file=log, flush=True)
        started = time.perf_counter()
        try:
            results[key] = await coro_factory()
        except Exception as exc:  # report it and go on with the other scenarios
            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        timings[key] = round(time.perf_counter() - started, 1)
        print(f"[bench]   done in {timings[key]} s", file=log, flush=True)

    await step("webhook", 1, lambda: scenarios.webhook_ingest(p["rates"], p["step_s"], p["closed_s"]))

    async def storm_with_pace() -> dict[str, Any]:
        result = await storm.run_storm(p["storm"])
        result["pace"] = await storm.pace_check(interval=p["pace_interval"])
        messages = result["slack_calls"].get("chat.postMessage", 0)
        result["drain_minimum_s_at_1_per_s"] = messages  # one message per second per channel
        # measured seconds per paced message, scaled from the check's interval to Slack's 1 s
        per = result["pace"]["seconds_per_message"] / result["pace"]["interval_s"]
        result["drain_estimate_s_at_1_per_s"] = round((result["stored_s"] or 0) + messages * per, 1)
        return result

    await step("storm", 2, storm_with_pace)
    await step("latency", 3, lambda: scenarios.latency_to_slack(p["latency_runs"]))
    await step("command", 4, lambda: scenarios.command_latency(p["answer_rounds"], p["ack_commands"], p["ack_rate"]))

    async def growth() -> dict[str, Any]:
        runs = []
        for events in p["growth"]:
            reused = results.get("storm")
            if reused and reused.get("events") == events and "error" not in reused:
                runs.append({k: v for k, v in reused.items() if k != "pace"} | {"reused_from": "storm"})
                continue
            print(f"[bench]   growth: {events} events", file=log, flush=True)
            runs.append(await storm.run_storm(events, deliver=False))
        return {"runs": runs}

    await step("growth", 5, growth)
    await step("visibility", 6, lambda: visibility.run_all(quick))
    return {"results": results, "seconds": timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter steps (a smoke run)")
    parser.add_argument("--only", type=int, action="append", choices=[1, 2, 3, 4, 5, 6],
                        help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    parser.add_argument("--state-url", help="run every bot on this PostgreSQL server (a fresh schema each) "
                                            "instead of a SQLite file, e.g. the URL scripts/postgres.sh prints")
    args = parser.parse_args(argv)
    if args.state_url:
        from bench.harness import STATE_URL_ENV

        os.environ[STATE_URL_ENV] = args.state_url
    started = time.perf_counter()
    body = asyncio.run(run(set(args.only or ()), args.quick, sys.stderr))
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": ("quick" if args.quick else "full") + (", PostgreSQL state store" if args.state_url else ""),
        "machine": machine(),
        "total_s": round(time.perf_counter() - started, 1),
        **body,
    }
    report["table"] = rows_for(report["results"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    print(f"\nJSON: {os.path.relpath(args.out)}  ({report['total_s']} s, {report['mode']} run, Python {platform.python_version()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
