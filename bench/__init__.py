"""Benchmarks for esm-bot (issue #6): `python -m bench [--quick] [--only N]`.

The bot runs as a real separate process (`python -m bot.cli serve`) against the local Slack,
Databricks REST and Thrift SQL emulators, which this process starts on 127.0.0.1.
"""
