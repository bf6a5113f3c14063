"""Application services: the sync pipeline, the Slack outbox, enrichment, the response-action
dispatcher, benign suppressions, /esm recent and status, the watchdog. They use the domain
(bot.core) and reach the world only through its ports, which bot.adapters implement."""
