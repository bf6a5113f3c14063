"""The command line as a user runs it: separate processes, real files, real ports."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def esm_bot(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )


def free_port_pair() -> int:
    """A port whose next port is free too (the demo's Slack stand-in uses port + 1)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    pytest.skip("no free pair of ports")


def test_the_quickstart_demo_posts_rendered_findings_without_any_account(tmp_path):
    result = esm_bot("demo", "--once", "--port", str(free_port_pair()), "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "HTTP 202" in result.stdout
    assert "5 findings posted" in result.stdout
    for shown in ("Kernel Module Loaded", "data-science-shared", "sudo insmod ./helper.ko", "[Acknowledge]"):
        assert shown in result.stdout
    assert "Heartbeat" not in result.stdout


def test_serve_names_every_missing_and_malformed_setting_at_once_and_creates_no_file(tmp_path):
    state = tmp_path / "s.sqlite3"
    result = esm_bot("serve", env={"ESM_STATE_PATH": str(state), "ESM_PORT": "eighty", "ESM_SLACK_CHANNEL": "C0SEC"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "esm-bot: configuration error: 5 settings to fix:",
        "  - ESM_PORT: 'eighty' is not a whole number",
        "  - SLACK_BOT_TOKEN is required for serve but is not set",
        "  - SLACK_SIGNING_SECRET is required for serve but is not set",
        "  - ESM_WEBHOOK_USER is required for serve but is not set",
        "  - ESM_WEBHOOK_PASSWORD is required for serve but is not set",
    ]
    assert list(tmp_path.iterdir()) == [], "a serve that cannot start leaves no state file behind"


def test_deploy_names_every_missing_setting_at_once():
    result = esm_bot("deploy", "--dry-run", env={"ESM_PUBLIC_URL": "http://bot.example.com"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "esm-bot: configuration error: 3 settings to fix:"
    assert [line.split()[1] for line in lines[1:]] == ["ESM_WAREHOUSE_ID", "ESM_PUBLIC_URL:", "ESM_WEBHOOK_USER"]
    assert "not https" in lines[2]


def test_doctor_creates_no_file(tmp_path):
    env = {"ESM_STATE_PATH": str(tmp_path / "state.sqlite3"), "ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}",
           "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    result = esm_bot("doctor", env=env)
    assert result.returncode == 1  # Slack is unreachable here
    assert "does not exist yet" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_busy_port_is_one_line_and_no_file(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s" * 32, "ESM_SLACK_CHANNEL": "C0SEC",
               "ESM_WEBHOOK_USER": "u", "ESM_WEBHOOK_PASSWORD": "p" * 16, "ESM_STATE_PATH": str(tmp_path / "s.sqlite3"),
               "ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'a.duckdb'}"}
        result = esm_bot("serve", "--port", str(port), env=env)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"esm-bot: port {port} is in use: ")
    assert list(tmp_path.iterdir()) == []


def test_version_and_every_command_says_what_it_does():
    version = esm_bot("--version")
    assert version.returncode == 0 and version.stdout.startswith("esm-bot 0.")
    overview = esm_bot("--help").stdout
    for name in ("serve", "sync", "load-events", "sample-events", "demo", "deploy", "backfill", "doctor", "rules"):
        assert name in overview
        page = esm_bot(name, "--help")
        assert page.returncode == 0
        description = page.stdout.split("\n\n")[1]  # after the usage lines
        assert len(description.split()) >= 4 and not description.startswith("options"), (name, description)


def test_a_malformed_setting_is_named(tmp_path):
    result = esm_bot("sync", env={"ESM_GROUP_WINDOW": "an hour"})
    assert result.returncode == 2
    assert "ESM_GROUP_WINDOW" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_load_events_reports_bad_lines_by_number_and_keeps_the_rest(tmp_path):
    good = esm_bot("sample-events").stdout.splitlines()
    assert len(good) >= 5
    lines = [good[0], "{not json", good[1], json.dumps({"event_time": "2026-01-01T00:00:00Z"}), good[0], good[2]]
    data = tmp_path / "events.jsonl"
    data.write_text("\n".join(lines) + "\n")
    env = {"ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}"}

    result = esm_bot("load-events", str(data), env=env)
    assert result.returncode == 1
    assert f"{data}:2: skipped" in result.stderr and f"{data}:4: skipped: event_id is missing" in result.stderr
    assert "loaded 3 rows, 1 duplicate event ids skipped, 2 bad lines" in result.stdout

    again = esm_bot("load-events", str(data), env=env)
    assert "loaded 0 rows, 4 duplicate event ids skipped" in again.stdout


def test_load_events_reports_a_line_of_invalid_utf8_and_loads_every_good_line(tmp_path):
    good = esm_bot("sample-events").stdout.splitlines()
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"\n".join([good[0].encode(), b'{"event_id": "caf\xe9", "bad": "\xff\xfe"}', good[1].encode(),
                                 good[2].encode().replace(b"Capsule8", b"Capsule8 \xc3\xa9")]) + b"\n")
    env = {"ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}"}
    result = esm_bot("load-events", str(data), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"{data}:2: skipped: not valid UTF-8 (byte 0xe9 at column 18)"]
    assert "loaded 3 rows, 0 duplicate event ids skipped, 1 bad lines" in result.stdout
    assert "Traceback" not in result.stderr

    piped = subprocess.run([sys.executable, "-m", "bot.cli", "load-events", "-"], input=data.read_bytes(),
                           capture_output=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
                           env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env})
    assert piped.returncode == 1 and b"-:2: skipped: not valid UTF-8" in piped.stderr
    assert b"loaded 0 rows, 3 duplicate event ids skipped, 1 bad lines" in piped.stdout


def test_load_events_on_a_missing_file_is_one_line(tmp_path):
    result = esm_bot("load-events", str(tmp_path / "nope.jsonl"),
                     env={"ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"esm-bot: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"]


def test_the_demo_refuses_a_folder_it_did_not_make_and_deletes_nothing(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "state.sqlite3").write_text("not the demo's")
    afile = tmp_path / "a-file"
    afile.write_text("data")
    link = tmp_path / "link"
    link.symlink_to(mine)
    for target, says in ((mine, "is not empty and was not made by esm-bot demo"), (afile, "is not a folder"),
                         (link, "is not a folder")):
        result = esm_bot("demo", "--once", "--port", str(free_port_pair()), "--dir", str(target))
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [line for line in result.stderr.strip().splitlines()
                                                      if line.startswith("esm-bot demo: ")]
        assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert (mine / "thesis.tex").read_text() == "years of work" and (mine / "state.sqlite3").exists()
    assert afile.read_text() == "data"


def test_the_demo_empties_only_a_folder_it_made(tmp_path):
    from bot.cli.demo import MARKER, DemoDirError, prepare_workdir

    new = tmp_path / "new"
    prepare_workdir(new)
    assert [p.name for p in new.iterdir()] == [MARKER]
    (new / "audit.duckdb").write_text("x")
    prepare_workdir(new)  # made by the demo: emptied again
    assert [p.name for p in new.iterdir()] == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_workdir(empty)
    assert (empty / MARKER).is_file()
    (empty / MARKER).unlink()
    (empty / "keep").write_text("k")
    with pytest.raises(DemoDirError):
        prepare_workdir(empty)
    assert (empty / "keep").read_text() == "k"


def test_rules_check_passes_on_the_shipped_rules():
    result = esm_bot("rules", "check")
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("ok")


def test_rules_check_fails_on_a_broken_catalogue(tmp_path):
    (tmp_path / "detections.yml").write_text(
        "- name: Kernel Module Loaded\n  category: Kernel Related Events\n  severity: extreme\n"
        "  description: a module was loaded\n  guidance: [check it]\n"
        "  examples:\n    - row: {event_id: e1, event_time: '2026-01-01T00:00:00Z', service_name: capsule8-alerts-dataplane,"
        " action_name: Kernel Module Loaded}\n      expect: {category: Kernel Related Events, severity: high, ignored: false}\n"
    )
    result = esm_bot("rules", "check", env={"ESM_RULES_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "severity" in result.stdout


def test_a_corrupted_state_file_stops_the_bot_with_one_line_saying_so(tmp_path):
    env = {"SLACK_BOT_TOKEN": "xoxb-cli-test", "ESM_SLACK_CHANNEL": "C0CLI", "SLACK_API_URL": "http://127.0.0.1:9/",
           "ESM_AUDIT_SOURCE": f"duckdb:{tmp_path / 'audit.duckdb'}", "ESM_STATE_PATH": str(tmp_path / "state.sqlite3")}
    assert esm_bot("sync", env=env).returncode == 0
    state = tmp_path / "state.sqlite3"
    data = bytearray(state.read_bytes())
    data[4096:] = bytes((i * 7 + 13) % 256 for i in range(len(data) - 4096))  # every page after the header
    state.write_bytes(bytes(data))
    result = esm_bot("sync", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"esm-bot: configuration error: ESM_STATE_PATH: cannot open the state store {state}: "
        "database disk image is malformed"
    ]
