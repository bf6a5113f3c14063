"""esm-bot command line: serve, sync, load-events, sample-events, demo, deploy, backfill, doctor, rules check."""
from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.cli.deploy import DeployOptions

from bot.observability import logs
from bot.config import ConfigError, Settings, load_settings, read_settings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("esm-bot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esm-bot",
        description="Databricks Enhanced Security Monitoring (Capsule8) findings in Slack: posts each finding "
                    "with its context and lets responders act on it from Slack.",
        epilog="Settings come from the environment (ESM_*, SLACK_*, DATABRICKS_*): see the README's Configuration. "
               "`esm-bot doctor` checks them; `esm-bot demo` runs everything locally without any account.",
    )
    parser.add_argument("--version", action="version", version=f"esm-bot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ". " + details)

    serve = command("serve", "run the bot's HTTP server: DBSQL alert webhooks, Slack events, /healthz, /readyz, /metrics",
                    "Slack reaches it over HTTP (/slack/events), or over Socket Mode when SLACK_APP_TOKEN is set. "
                    "Every missing or malformed setting is named before anything starts.")
    serve.add_argument("--host", help="bind address (ESM_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (ESM_PORT, default 8080)")
    command("sync", "run one sync now, deliver what it finds to Slack, print its report as JSON, and exit",
            "Exits 1 when the sync failed.")
    load = command("load-events", "load JSON-lines audit rows into the embedded DuckDB audit store",
                   "ESM_AUDIT_SOURCE must be duckdb:<path>. Bad lines are reported by number; duplicates are skipped.")
    load.add_argument("file", help="a .jsonl file, or - for standard input")
    command("sample-events", "print sample Capsule8 audit rows (JSON lines) timed relative to now",
            "Pipe them into `esm-bot load-events -` to try the bot on realistic data.")
    demo = command("demo", "run the whole bot locally on sample events, with a Slack-like page to click it",
                   "Local stand-ins for Slack and Databricks, sample events, the real bot and a real webhook; the "
                   "page (printed at start) shows the findings as Slack does and sends clicks and /esm commands "
                   "to the bot. Runs until Ctrl-C.")
    demo.add_argument("--once", action="store_true", help="exit after the sample findings are posted (for scripts)")
    demo.add_argument("--port", type=int, default=8080, help="bot port (the Slack page uses port+1)")
    demo.add_argument("--dir", default=".esm-demo",
                      help="where the demo keeps its files: a new or empty folder, or one an earlier demo made (emptied)")
    deploy = command("deploy", "create or update the scheduled Databricks SQL alerts and their webhook destination",
                     "Every missing or malformed setting is named before any request.")
    deploy.add_argument("--dry-run", action="store_true", help="print the plan (create / update / unchanged) and change nothing")
    deploy.add_argument("--remove", action="store_true", help="delete every object esm-bot deploy created, and nothing else")
    deploy.add_argument("--public-url", help="the bot's public base URL (ESM_PUBLIC_URL)")
    deploy.add_argument("--rotate-webhook-secret", action="store_true",
                        help="re-send the webhook user and password (the API never shows them, so they are not compared)")
    deploy.add_argument("--api", choices=["v2", "legacy"],
                        help="which SQL alerts API: v2 (AlertsV2, the default where the workspace has it) or legacy "
                             "(a query, an alert and a job per category)")
    backfill = command("backfill", "process past events from the audit source (after an outage or on first install)")
    backfill.add_argument("--since", required=True, help="how far back: a duration like 12h or 7d")
    backfill.add_argument("--summary", action="store_true", help="post one digest message instead of each finding")
    command("doctor", "check the configuration, Slack and Databricks access, one line per check",
            "Reads only: it creates no file and changes nothing. Exits 1 when a check fails.")
    rules = command("rules", "check the detection catalogue (rules/): its schema and every entry's examples")
    rules.add_argument("action", choices=["check"], help="check: validate rules/ and run every entry's examples")
    return parser


# the settings each command cannot start without, named all at once with the malformed ones
def _missing(args: argparse.Namespace, settings: Settings) -> list[str]:
    if args.command == "serve":
        from bot.cli.doctor import missing_for_serve

        return [f"{name} is required for serve but is not set" for name in missing_for_serve(settings)]
    if args.command == "deploy":
        from bot.cli.deploy import setting_problems

        return setting_problems(settings, _deploy_options(args))
    return []


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        settings, problems = read_settings(environ)
        malformed = {line.split(":", 1)[0].split(" ", 1)[0] for line in problems}
        problems += [line for line in _missing(args, settings) if line.split(" ", 1)[0] not in malformed]
        if problems:
            raise ConfigError("\n".join(problems))
        logs.configure(settings.log_level, _secret_values(settings), settings.log_format)
        return COMMANDS[args.command](args, settings)
    except ConfigError as exc:
        if args.command == "doctor":  # the doctor reports it in its own one-line-per-check format
            from bot.cli.doctor import config_failure

            return config_failure(exc)
        lines = _masked(str(exc), environ, urls=False).splitlines() or [""]
        if len(lines) == 1:
            print(f"esm-bot: configuration error: {lines[0]}", file=sys.stderr)
        else:
            print(f"esm-bot: configuration error: {len(lines)} settings to fix:", file=sys.stderr)
            for line in lines:
                print(f"  - {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # a failure nobody expected: its traceback, with every secret masked
        import traceback

        print(_masked(traceback.format_exc(), environ), file=sys.stderr, end="")
        return 1


def _masked(text: str, environ: Mapping[str, str], urls: bool = True) -> str:
    """`text` with every secret the environment holds masked: the secret settings' values (read
    raw, as they may not even parse), the state URL's password in all its forms, and (`urls`)
    any PostgreSQL URL's password."""
    from bot.adapters.state.urls import redact_url
    from bot.config import ENV_NAMES, url_password_forms

    names = ("slack_bot_token", "slack_signing_secret", "slack_app_token", "webhook_password", "databricks_token",
             "admin_token")
    values = [environ.get(ENV_NAMES[name], "").strip() for name in names]
    state_url = environ.get(ENV_NAMES["state_url"], "").strip()
    values += url_password_forms(state_url) if state_url else []
    try:
        values += load_settings(environ).secret_values()  # the workspace tokens too, when the settings load
    except Exception:
        pass
    for value in sorted({v for v in values if len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, "****")
    return redact_url(text, url=state_url or None) if urls else text


def _secret_values(settings: Settings) -> list[str]:
    return settings.secret_values()  # the same values as bot.services.health.secret_values


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from bot.app import build_app
    from bot.runtime import build_runtime
    from bot.server import PortInUse, check_port, serve

    async def make_app() -> web.Application:
        runtime = await build_runtime(settings)
        return build_app(runtime)

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    try:
        check_port(host, port)  # before the state store is opened (and its file made)
        asyncio.run(serve(make_app, host, port, header_timeout=settings.header_timeout,
                          max_connections=settings.max_connections))
    except PortInUse as exc:
        print(f"esm-bot: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from bot.runtime import build_runtime

    async def once() -> int:
        from bot.observability import correlation

        correlation.set_id(correlation.new_id("cli-"))
        runtime = await build_runtime(settings)
        try:
            report = await runtime.pipeline.sync()
            await runtime.outbox.drain()
            pending = await runtime.store.outbox_depth()
        finally:
            await runtime.close()
        print(json.dumps({**report.to_json(), "outbox_pending": pending}))
        return 1 if report.error else 0

    return asyncio.run(once())


def cmd_load_events(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.loader import load_jsonl

    if settings.duckdb_path is None:
        raise ConfigError("ESM_AUDIT_SOURCE must be duckdb:<path> for load-events")
    try:  # bytes: each line is decoded on its own, so one line of bad UTF-8 is one bad line
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        print(f"esm-bot: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with stream:
        result = load_jsonl(stream, settings.duckdb_path)
    for line_number, problem in result.bad_lines:
        print(f"{args.file}:{line_number}: skipped: {problem}", file=sys.stderr)
    print(f"loaded {result.inserted} rows, {result.duplicates} duplicate event ids skipped, {len(result.bad_lines)} bad lines")
    return 1 if result.bad_lines else 0


def cmd_sample_events(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.samples import sample_rows

    for row in sample_rows():
        print(json.dumps(row))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.demo import DemoDirError, run_demo

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each line as it happens, piped too
    try:
        return asyncio.run(run_demo(Path(args.dir), args.port, once=args.once))
    except DemoDirError as exc:
        print(f"esm-bot demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo stopped")
        return 0
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"esm-bot demo: port {args.port} or {args.port + 1} is in use: {exc.strerror}; "
              "stop what listens there or choose others with --port", file=sys.stderr)
        return 1


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.rules_check import action_settings, check_rules

    problems = check_rules(settings.rules_dir)
    for problem in problems:
        print(f"FAIL {problem}")
    for line in action_settings(settings):
        print(f"note {line}")
    print("rules check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.deploy import run_deploy

    return run_deploy(settings, _deploy_options(args))


def _deploy_options(args: argparse.Namespace) -> "DeployOptions":
    from bot.cli.deploy import DeployOptions
    from bot.core.deploy_plan import Api

    return DeployOptions(dry_run=args.dry_run, remove=args.remove,
                         rotate_webhook_secret=args.rotate_webhook_secret, public_url=args.public_url,
                         api=Api(args.api) if args.api else None)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.backfill import run_backfill
    from bot.config import parse_duration

    since = parse_duration(args.since, "--since")
    return asyncio.run(run_backfill(settings, since, summary=args.summary))


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.doctor import run_doctor

    return asyncio.run(run_doctor(settings))


COMMANDS = {
    "doctor": cmd_doctor,
    "serve": cmd_serve,
    "sync": cmd_sync,
    "load-events": cmd_load_events,
    "sample-events": cmd_sample_events,
    "demo": cmd_demo,
    "rules": cmd_rules,
    "deploy": cmd_deploy,
    "backfill": cmd_backfill,
}

if __name__ == "__main__":
    raise SystemExit(main())
