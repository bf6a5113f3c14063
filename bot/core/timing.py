"""When an event happened, as the bot can know it: clocks that run ahead, rows that land late.

The audit table's `event_time` is the host's clock. A host whose clock is ahead dates its rows in
the future; a row can also land in the table long after its `event_time`. Neither may blind the
bot: the watermark never moves past the bot's own clock (less a small skew allowance), and the
late-arrival sweep re-reads a window behind it. These are the pure rules; the pipeline applies them.
"""
from __future__ import annotations

from datetime import datetime, timedelta


def capped_watermark(newest: datetime, now: datetime, skew: timedelta) -> datetime:
    """The watermark a sync may record: its newest row's time, never past now − skew."""
    return min(newest, now - skew)


def is_ahead(event_time: datetime, now: datetime, skew: timedelta) -> bool:
    return event_time > now + skew


def ahead_note(event_time: datetime, now: datetime) -> str:
    return f"dated {humanize(event_time - now)} after the bot's clock: the host's clock is ahead"


def late_note(event_time: datetime, seen_at: datetime) -> str:
    return f"landed {humanize(seen_at - event_time)} after it happened"


def timing_note(event_time: datetime, now: datetime, skew: timedelta, *, late: bool) -> str | None:
    """What a finding or reply says about its event's time, or None when nothing is odd."""
    if is_ahead(event_time, now, skew):
        return ahead_note(event_time, now)
    if late:
        return late_note(event_time, now)
    return None


def humanize(delta: timedelta) -> str:
    """3 h, 25 min, 45 s, 30 d, 1 d 4 h: the largest unit or two, never negative."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d" + (f" {hours} h" if hours and days < 7 else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


SENSOR_SILENT = "ESM sensor silent"  # the catalogue's detection for a host whose heartbeats stopped
HEARTBEAT = "Heartbeat"


def silence_row(instance_id: str, workspace_id: str, cluster_id: str | None, last_at: datetime,
                gap: timedelta, now: datetime) -> dict[str, object]:
    """The audit-shaped row the bot writes for a silent sensor: one per silence (its id names the
    last heartbeat, so the same silence is posted once however many syncs see it)."""
    params: dict[str, object] = {
        "instanceId": instance_id,
        "lastHeartbeat": last_at.isoformat(),
        "silentFor": humanize(now - last_at),
    }
    if cluster_id:
        params["clusterId"] = cluster_id
    return {
        "event_id": f"esm-sensor-silent:{instance_id}:{last_at.isoformat()}",
        "event_time": last_at + gap,
        "workspace_id": workspace_id,
        "service_name": "capsule8-alerts-dataplane",
        "action_name": SENSOR_SILENT,
        "request_params": params,
        "response": {"status_code": 200},
        "user_identity": {"email": None},
    }
