"""Sample audit rows for the demo and for `esm-bot sample-events`: a realistic morning on
three clusters, with times relative to now so the first sync's look-back finds them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bot.cli.audit_rows import capsule8_row, cluster_row, minutes_ago, node_timeline_row, notebook_command_row

# (cluster id, name, owner, access mode, driver instance, executor instances)
SAMPLE_CLUSTERS = [
    ("0101-090000-etl001", "nightly-etl", "etl-sp@example.com", "SINGLE_USER", "i-0a11aa11aa11aa110", ["i-0a11aa11aa11aa111", "i-0a11aa11aa11aa112"]),
    ("0101-090000-ds0002", "data-science-shared", "dana@example.com", "USER_ISOLATION", "i-0b22bb22bb22bb220", ["i-0b22bb22bb22bb221"]),
    ("0101-090000-ml0003", "ml-training-gpu", "max@example.com", "SINGLE_USER", "i-0c33cc33cc33cc330", []),
]
TIMELINE_ONLY = ("0101-090000-old004", "i-0d44dd44dd44dd440")  # a terminated cluster, known only to system tables


def _capsule8(n: int, at: datetime, detection: str, instance: str, **params: Any) -> dict[str, Any]:
    return capsule8_row(f"demo-c8-{n:04d}", detection, instance, at, **params)


def _command(n: int, at: datetime, cluster: str, user: str, notebook: str, text: str) -> dict[str, Any]:
    return notebook_command_row(f"demo-nb-{n:04d}", cluster, at, user, text, notebook_id=notebook, executionTime="0.4")


def sample_rows(now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(timezone.utc)
    t = lambda minutes: minutes_ago(minutes, now)  # noqa: E731
    etl, ds, ml = (c[0] for c in SAMPLE_CLUSTERS)
    return [
        _command(1, t(52), ds, "dana@example.com", "4048611", "%sh curl -sO https://files.example.org/tools/kmod-helper.tgz"),
        _command(2, t(50), ds, "dana@example.com", "4048611", "%sh tar xzf kmod-helper.tgz && sudo insmod ./helper.ko"),
        _capsule8(1, t(49), "Kernel Module Loaded", "i-0b22bb22bb22bb220", containerId="8c1f5e0a9b7d", processLineage="python3(2211) > bash(9120) > insmod(9133)", commandLine="insmod ./helper.ko"),
        _capsule8(2, t(48), "Kernel Module Loaded", "i-0b22bb22bb22bb221", containerId="8c1f5e0a9b7e", processLineage="python3(2214) > bash(9201) > insmod(9209)", commandLine="insmod ./helper.ko"),
        _command(3, t(41), etl, "etl-sp@example.com", "777001", "%sh cp corp-root-ca.crt /usr/local/share/ca-certificates/ && update-ca-certificates"),
        _capsule8(3, t(40), "Root Certificate Store Modified", "i-0a11aa11aa11aa110", containerId="5b2e9c1d3a4f", filePath="/usr/local/share/ca-certificates/corp-root-ca.crt", commandLine="update-ca-certificates"),
        _capsule8(5, t(30), "Suspicious Interactive Shell", "i-0c33cc33cc33cc330", containerId="0000000000000000", processLineage="sshd(812) > bash(30112)", commandLine="bash -i"),
        _capsule8(6, t(20), "Userfaultfd Usage", "i-0d44dd44dd44dd440", processLineage="java(4410) > exploit(4499)"),
        _capsule8(7, t(12), "Packet Socket Opened On Host", "i-0a11aa11aa11aa112", commandLine="tcpdump -i any -w /tmp/cap.pcap"),
        _capsule8(4, t(8), "Heartbeat", "i-0a11aa11aa11aa111"),  # a live sensor: stored, never posted
        _capsule8(8, t(10), "Kernel Module Loaded", "i-0b22bb22bb22bb220", containerId="8c1f5e0a9b7d", processLineage="python3(2211) > bash(9320) > modprobe(9329)", commandLine="modprobe helper"),
    ]


def sample_node_timeline(now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(timezone.utc)
    cluster, instance = TIMELINE_ONLY
    return [node_timeline_row(cluster, instance, now - timedelta(minutes=m + 1), now - timedelta(minutes=m))
            for m in range(0, 120, 10)]


def sample_cluster_records(now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(timezone.utc)
    cluster, _ = TIMELINE_ONLY
    return [cluster_row(cluster, "adhoc-research", "riley@example.com", now - timedelta(hours=6), now - timedelta(hours=5))]
