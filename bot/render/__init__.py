"""Slack Block Kit rendering: pure functions from domain values (bot.core) to Slack dicts.

No IO. Modules here may import bot.core; bot.core never imports bot.render.
"""
