"""The command-line tools: serve, sync, load-events, sample-events, demo, doctor, backfill,
deploy, rules check (entry point: bot.cli.main:main; `python -m bot.cli` runs it too)."""
