"""The machine, the targets of issue #6, and the Markdown table."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_mb": memory_mb,
            "python": platform.python_version(), "platform": platform.platform()}


Row = dict[str, Any]


def _row(scenario: str, metric: str, target: str, measured: Any, ok: bool | None) -> Row:
    verdict = "—" if ok is None else ("pass" if ok else "**miss**")
    return {"scenario": scenario, "metric": metric, "target": target, "measured": measured, "verdict": verdict}


def _failed(scenario: str, result: dict[str, Any]) -> list[Row]:
    return [_row(scenario, "run", "completes", result["error"], False)]


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    builders = {"webhook": _webhook, "storm": _storm, "latency": _latency, "command": _command, "growth": _growth,
                "visibility": _visibility}
    names = {"webhook": "1 webhook ingest", "storm": "2 storm", "latency": "3 latency to Slack",
             "command": "4 /esm recent, warehouse +5 s", "growth": "5 growth", "visibility": "6 time to visibility"}
    for key, build in builders.items():
        if key in results:
            result = results[key]
            rows += _failed(names[key], result) if "error" in result else build(names[key], result)
    return rows


def _webhook(name: str, r: dict[str, Any]) -> list[Row]:
    bot, base = r["bot"]["max"], r["baseline"]["max"]
    steps = ", ".join(f"{s['offered_rps']}/s: p50 {s['p50_ms']} / p99 {s['p99_ms']} ms" for s in r["bot"]["steps"])
    base_steps = ", ".join(f"{s['offered_rps']}/s: p99 {s['p99_ms']} ms" for s in r["baseline"]["steps"])
    cpu = ""
    if bot.get("server_cpu_ms_per_request") is not None:
        ratio = r.get("cpu_per_request_ratio")
        times = f"x{1 / ratio:.1f} the bare server's" if ratio else "n/a"
        cpu = (f"; server CPU per request {bot['server_cpu_ms_per_request']} ms vs {base['server_cpu_ms_per_request']} ms "
               f"({times}); server busy {bot['server_cpu_share']} vs "
               f"{base['server_cpu_share']} of a core, load generator {bot['loadgen_cpu_share']} vs {base['loadgen_cpu_share']}")
    return [
        # no target: a few alerts a minute is the real load; the closed-loop ratio flatters the
        # bare server (the load generator saturates its core first), the CPU per request does not
        _row(name, "throughput vs bare aiohttp + Basic auth (closed loop, 32 conns), and server CPU per request", "",
             f"{r['throughput_ratio']} ({bot['throughput_rps']:.0f} vs {base['throughput_rps']:.0f} req/s){cpu}", None),
        _row(name, "p99 at 500 req/s (open loop)", "< 25 ms",
             f"{r['bot_p99_ms_at_500']} ms (p50 {r['bot_p50_ms_at_500']} ms)",
             r["bot_p99_ms_at_500"] is not None and r["bot_p99_ms_at_500"] < 25),
        _row(name, "bot latency by offered rate", "", steps, None),
        _row(name, "baseline latency by offered rate", "", base_steps, None),
    ]


def _storm(name: str, r: dict[str, Any]) -> list[Row]:
    c = r["check"]
    rows = [
        _row(name, f"events/s, one sync, embedded store ({r['events']} events, {r['groups']} groups)", ">= 2,000/s",
             f"{r['events_per_s']}/s (sync {r['sync_s']} s; all Slack posts delivered {r['delivered_s']} s)",
             (r["events_per_s"] or 0) >= 2000),
        _row(name, "Slack API calls per finding group", "<= 3",
             f"{r['slack_calls_per_group']} ({r['slack_calls_per_1000_events']} per 1,000 events; {r['slack_calls']})",
             r["slack_calls_per_group"] <= 3),
        _row(name, "Databricks API calls per cluster", "<= 1 within the TTL",
             f"{r['databricks_calls_per_cluster']} ({r['databricks_calls']})", r["databricks_calls_per_cluster"] <= 1),
        _row(name, "peak RSS of the bot (VmHWM)", "< 250 MB", f"{r['peak_rss_mb']} MB (idle {r['idle_rss_mb']} MB)",
             r["peak_rss_mb"] < 250),
        _row(name, "lost (events, findings, Slack messages)", "0", c["lost"], c["lost"] == 0),
    ]
    if "drain_minimum_s_at_1_per_s" in r:
        minimum, estimate = r["drain_minimum_s_at_1_per_s"], r["drain_estimate_s_at_1_per_s"]
        pace = r["pace"]
        rows.append(_row(
            name, "drain at Slack's 1 msg/s vs the minimum (messages x 1 s)", "close to the minimum",
            f"~{estimate} s vs {minimum} s minimum (estimated: pace measured at {pace['interval_s']} s/msg "
            f"= {pace['seconds_per_message']} s/msg over {pace['messages']} msgs, scaled to 1 s)",
            estimate <= minimum * 1.05 + (r["stored_s"] or 0)))
    return rows


def _latency(name: str, r: dict[str, Any]) -> list[Row]:
    return [
        _row(name, f"webhook -> chat.postMessage at Slack, p50 ({r['runs']} runs)", "< 100 ms", f"{r['p50_ms']} ms",
             r["p50_ms"] < 100),
        _row(name, "same, p99 / max", "", f"{r['p99_ms']} / {r['max_ms']} ms", None),
    ]


def _command(name: str, r: dict[str, Any]) -> list[Row]:
    return [
        _row(name, f"time to acknowledge, p99 ({r['commands']} commands, {r['ack_load_rate_per_s']}/s under load)",
             "< 100 ms (Slack: 3 s)", f"{r['ack_p99_ms']} ms (p50 {r['ack_p50_ms']}, max {r['ack_max_ms']})",
             r["ack_p99_ms"] < 100),
        _row(name, f"time to the answer ({r['answers']} commands, 4 at a time; the last 4 while a sync's enrichment "
                   "reads the warehouse)", "<= warehouse delay + 1 s",
             f"p50 {r['answer_p50_s']} s, p99 {r['answer_p99_s']} s", r["answer_p99_s"] <= r["warehouse_delay_s"] + 1.0),
        *([_row(name, "the 4 answers asked during the sync", "", ", ".join(f"{a} s" for a in r["during_sync_answers_s"])
                + f" (the sync: {r['during_sync_command_lookups']} notebook-command look-ups)", None)]
          if "during_sync_answers_s" in r else []),
    ]


def _sweep_text(sweep: dict[str, Any] | None) -> str:
    if not sweep:
        return "not measured"
    return (f"{int(sweep.get('ids_read', 0)):,} ids + {int(sweep.get('rows_read', 0)):,} rows read, "
            f"{sweep.get('seconds', 0):.2f} s per sweep")


def _growth(name: str, r: dict[str, Any]) -> list[Row]:
    runs = [x for x in r["runs"] if x.get("sync_s")]
    if len(runs) < 2:
        return [_row(name, "runs", "", "not enough runs", None)]
    # judged from the second-largest run to the largest (10k -> 100k): the smallest run is mostly
    # fixed cost (start-up, the first cluster listing, the sweep), which flatters the growth
    first, small, large = runs[0], runs[-2], runs[-1]
    factor = large["events"] / small["events"]
    time_growth = large["sync_s"] / small["sync_s"]
    mem_growth = large["peak_rss_mb"] / small["peak_rss_mb"]
    per_event_q = (large["audit_queries_total"] - small["audit_queries_total"]) / (large["events"] - small["events"])
    whole = f"{first['events']:,} -> {large['events']:,}: x{large['sync_s'] / first['sync_s']:.1f} for x{large['events'] / first['events']:g}"
    detail = "; ".join(
        f"{x['events']:,}: sync {x['sync_s']} s ({x['events_per_s']}/s), peak {x['peak_rss_mb']} MB, "
        f"{x['audit_queries_total']} audit queries, {sum(x['outbox_items'].values())} Slack messages queued "
        f"({x['outbox_items_per_group']}/group)" for x in runs)
    return [
        _row(name, f"sync time growth, {small['events']:,} -> {large['events']:,} events (x{factor:g})",
             f"<= x{factor:g} (linear or better)", f"x{time_growth:.2f} ({whole})", time_growth <= factor * 1.1),
        _row(name, "peak RSS growth", f"<= x{factor:g}", f"x{mem_growth:.2f}", mem_growth <= factor),
        _row(name, "audit queries per additional event", "~0 (no per-event query)", f"{per_event_q:.4f}",
             per_event_q < 0.01),
        _row(name, "Slack messages queued per finding group", "constant (<= 3)",
             " -> ".join(str(x["outbox_items_per_group"]) for x in runs),
             all(x["outbox_items_per_group"] <= 3 for x in runs)),
        _row(name, "lost (store side)", "0", sum(x["check"]["lost"] for x in runs), all(x["check"]["lost"] == 0 for x in runs)),
        _row(name, f"late-arrival sweep over the {large['events']:,}-event storm (ids, then rows not stored)",
             "cheap: ids only when nothing is late", _sweep_text(large.get("sweep")), None),
        _row(name, "runs", "", detail, None),
    ]


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"esm-bot benchmark ({report['mode']} run, {report['when']}, {report['total_s']} s)",
        f"machine: {m['cpus']} CPUs, {m['cpu_model']}, {m['memory_mb']} MB RAM, Python {m['python']}, {m['platform']}",
        "",
        "| scenario | metric | target | measured | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in report["table"]:
        cells = [str(row[k]).replace("|", "\\|") for k in ("scenario", "metric", "target", "measured", "verdict")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _visibility(name: str, r: dict[str, Any]) -> list[Row]:
    """Scenario 6 (#14): every event counted in a Slack message, at Slack's real pace."""
    rows: list[Row] = []
    labels = {"storm_10k": "10k storm (200 clusters)", "storm_100k": "100k storm (1,000 clusters)",
              "storm_2k": "2k storm (100 clusters)", "calm": "calm sync (24 findings)",
              "no_rollup_100k": "100k storm, roll-ups off (outbox only)"}
    for key, label in labels.items():
        run = r.get(key)
        if run is None:
            continue
        if "error" in run:
            rows += _failed(f"{name}: {label}", run)
            continue
        calls = run["slack_calls_total"]
        if key != "no_rollup_100k":
            visible = run["visible_s"]
            rows.append(_row(name, f"{label}: webhook -> every event counted in Slack", "<= 60 s",
                             f"{visible} s ({run['incidents']} incidents, {run['findings_posted_alone']} findings "
                             f"posted alone, {run['findings']} findings)", visible is not None and visible <= 60))
            target = "<= 60" if key == "storm_10k" else "—"
            rows.append(_row(name, f"{label}: Slack calls until the outbox is empty", target,
                             f"{calls} ({_calls(run['slack_calls'])}); drained in {run['drained_s']} s",
                             calls <= 60 if key == "storm_10k" else None))
            rows.append(_row(name, f"{label}: peak chat.postMessage per channel (10 s window)", "<= 1/s",
                             f"{run['peak_posts_per_s_per_channel']}/s, {run['rate_limited_429']} × 429",
                             run["peak_posts_per_s_per_channel"] <= 1.0 + 0.3))
        if key in ("storm_100k", "no_rollup_100k"):
            rows.append(_row(name, f"{label}: next-due outbox query", "< 50 ms",
                             f"max {run['due_ms_max']} ms, p99 {run['due_ms_p99']} ms ({run['due_samples']} samples, "
                             f"up to {run['pending_max']} pending)",
                             run["due_ms_max"] is not None and run["due_ms_max"] < 50))
            rows.append(_row(name, f"{label}: /healthz while the bot works", "< 100 ms",
                             f"max {run['healthz_ms_max']} ms, p99 {run['healthz_ms_p99']} ms "
                             f"({run['healthz_samples']} probes, {run['healthz_failures']} failed)",
                             run["healthz_ms_max"] is not None and run["healthz_ms_max"] < 100))
    return rows


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{method} {n}" for method, n in sorted(calls.items()))
