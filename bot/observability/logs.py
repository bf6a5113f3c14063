"""Logging set-up with a last line of defence: known secret values are masked in every record."""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone

from bot.observability.correlation import CorrelationFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "correlation_id"}


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = message
            for secret in self._secrets:
                masked = masked.replace(secret, "****")
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:  # a traceback quotes exception messages too
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.mask(record.exc_text)
        return True

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text


class OneLine(logging.Filter):
    """A message never starts a new log line: CR and LF from outside data (an alert id, a
    detection name) are shown as \\r and \\n, so no one can forge a log line (tracebacks, which the
    formatter adds after the message, keep their lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n" in message or "\r" in message or "\x85" in message or "\u2028" in message:
            for char, shown in (("\r", "\\r"), ("\n", "\\n"), ("\x85", "\\x85"), ("\u2028", "\\u2028")):
                message = message.replace(char, shown)
            record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, correlation_id, any `extra=` fields,
    and the exception text. The whole line passes through the secret mask too (tracebacks and
    extra fields are not covered by the record filter)."""

    def __init__(self, redact: RedactSecrets | None = None):
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or "-",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if self._redact is None:
            return json.dumps(entry, default=str, ensure_ascii=False)
        mask = self._redact.mask  # before escaping (a secret with a quote) and after (anything else)
        masked = {k: mask(v) if isinstance(v, str) else v for k, v in entry.items()}
        return mask(json.dumps(masked, default=lambda v: mask(str(v)), ensure_ascii=False))


def configure(level: str, secrets: Iterable[str] = (), fmt: str = "text") -> None:
    """`fmt` is ESM_LOG_FORMAT: "text" (default) or "json"; both carry the correlation id and
    both mask every known secret value."""
    handler = logging.StreamHandler(sys.stderr)
    redact = RedactSecrets(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(CorrelationFilter())
    handler.addFilter(OneLine())
    handler.addFilter(redact)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "urllib3", "databricks.sdk", "databricks.sql", "slack_bolt", "slack_sdk", "alembic",
                  "aiosqlite", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
