"""Profile the bot process during a storm with py-spy (sampling, every thread, native frames off):
`python -m bench.profile [--events 10000] [--py-spy PATH]`. Prints the functions with the most
samples (own and cumulative) and leaves the collapsed stacks in the work folder (flamegraph
input). py-spy is not a dependency: `pip install py-spy` (or --target somewhere) first."""
from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.harness import BotProcess, notebook_rows, start_emulators, state_progress, stop_emulators, storm_rows


async def profile(events: int, py_spy: str, scenario: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="esm-bench-profile-"))
    slack, dbx = await start_emulators(200)
    bot = BotProcess(folder, slack.api_url, dbx.host, {})
    out = folder / "stacks.txt"
    try:
        if scenario == "storm":
            source = bot.source()
            source.insert_rows(notebook_rows(200))
            source.insert_rows(storm_rows(events))
        await bot.start_async()
        spy = subprocess.Popen([py_spy, "record", "--pid", str(bot.proc.pid), "--format", "raw", "--threads",
                                "--rate", "250", "--output", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.sleep(1.0)
        t0 = time.perf_counter()
        if scenario == "storm":
            async with aiohttp.ClientSession() as session:
                await bot.webhook_async(session)
            while time.perf_counter() - t0 < 300:
                await asyncio.sleep(0.05)
                p = state_progress(bot)
                if p["events"] >= events and p["pending"] == 0 and p["posted"] == p["findings"]:
                    break
        else:  # webhook: 500 req/s for 5 s
            from bench import loadgen
            print(await loadgen.open_loop(bot.url + "/webhooks/dbsql", bot.alert_body, bot.webhook_headers(), 500, 5))
        print(f"{scenario} took {time.perf_counter() - t0:.2f} s under the profiler")
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        return out
    finally:
        await bot.stop_async()
        await stop_emulators(slack, dbx)


def summarise(path: Path, top: int = 25) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if "idle" in frames[-1] or frames[-1].startswith(("select ", "_worker ", "wait ", "poll ")):
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            total[frame] += n
    print(f"{samples} busy samples")
    print("-- own --")
    for frame, n in own.most_common(top):
        print(f"{n:7d} {100 * n / samples:5.1f}%  {frame}")
    print("-- cumulative --")
    for frame, n in total.most_common(top):
        print(f"{n:7d} {100 * n / samples:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--scenario", choices=["storm", "webhook"], default="storm")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    out = asyncio.run(profile(args.events, args.py_spy, args.scenario))
    print(f"stacks: {out}")
    summarise(out)


if __name__ == "__main__":
    main()
