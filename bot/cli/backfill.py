"""`esm-bot backfill --since 7d [--summary]`: process past events from the audit source.

It is one pipeline sync that starts at `now - since` instead of the watermark (which never
moves back), with a text progress bar on stderr. Events already handled are skipped as always
(event_id). Without `--summary` the new findings are posted as usual (the outbox is drained
before exit, at Slack's pace); with `--summary` findings and events are stored but nothing is
queued for Slack, and ONE digest message (bot.render.digest) sums them up per detection and
cluster instead.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import TextIO

from bot.config import Settings
from bot.core.digest import Tally
from bot.core.ports import AuditSource
from bot.services.pipeline import PAGE_SIZE
from bot.render.digest import digest_message

BAR_WIDTH = 30


class ProgressBar:
    """`backfill [#########.....] 450/1000 events` on one line, redrawn in place."""

    def __init__(self, total: int, out: TextIO, label: str = "backfill"):
        self.total, self.done, self.out, self.label = total, 0, out, label

    def advance(self, count: int) -> None:
        self.done += count
        self.draw()

    def draw(self) -> None:
        total = max(self.total, self.done)  # rows that landed after counting still show
        filled = BAR_WIDTH if total == 0 else BAR_WIDTH * self.done // total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        print(f"\r{self.label} [{bar}] {self.done}/{total} events", end="", file=self.out, flush=True)

    def finish(self) -> None:
        self.draw()
        print(file=self.out, flush=True)


async def count_since(source: AuditSource, since: datetime) -> int:
    """How many Capsule8 rows the backfill will read: the same keyset pages, counted."""
    total, start, after_id = 0, since, ""
    while True:
        rows = await source.capsule8_since(start, PAGE_SIZE, after_id)
        total += len(rows)
        if len(rows) < PAGE_SIZE:
            return total
        start, after_id = rows[-1].event_time, rows[-1].event_id


async def run_backfill(settings: Settings, since: timedelta, *, summary: bool,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from bot.runtime import build_runtime

    runtime = await build_runtime(settings)
    start = datetime.now(timezone.utc) - since
    try:
        bar = ProgressBar(await count_since(runtime.source, start), err)
        bar.draw()
        tally = Tally(since=start)

        def on_page(rows, plan) -> None:
            bar.advance(len(rows))
            if plan is not None:
                tally.add_plan(plan.dispositions)

        report = await runtime.pipeline.sync(since=start, post=not summary, on_page=on_page)
        bar.finish()
        result = {**report.to_json(), "since": start.isoformat()}
        if report.error:
            print(f"esm-bot backfill: {report.error}", file=err)
        elif summary:
            text, blocks = digest_message(tally)
            try:
                result["digest_ts"] = await runtime.chat.post(settings.slack_channel or "", text, blocks)
            except Exception as exc:  # ChatError: the findings are stored; say why the digest is not
                result["error"] = f"the digest message was not posted: {exc}"
                print(f"esm-bot backfill: {result['error']}", file=err)
        else:
            print(f"posting {report.new_findings} findings to Slack …", file=err, flush=True)
            await runtime.outbox.drain()
        result["outbox_pending"] = await runtime.store.outbox_depth()
    finally:
        await runtime.close()
    print(json.dumps(result), file=out)
    return 1 if result.get("error") else 0
