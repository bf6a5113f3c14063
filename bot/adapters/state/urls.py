"""What is said about a state store's location: its URL with the password masked, and errors."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit



from bot.core.ports import StoreError


class StateStoreError(StoreError):
    """The state store cannot be opened or cannot go on safely; the message says why (no secret)."""


_USERINFO = re.compile(r"(?i)(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_PARAM = re.compile(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]*)")


def redact_url(text: str) -> str:
    """The text with every PostgreSQL URL's password (and any password= parameter) as ****.
    Works on a bare URL and on an error message that quotes one; never fails."""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme.startswith("postgres") and "@" in parts.netloc and " " not in text:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:****@{host}" if ":" in userinfo else f"{user}@{host}"
        query = _PASSWORD_PARAM.sub(r"\1****", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _PASSWORD_PARAM.sub(r"\1****", _USERINFO.sub(r"\1****@", text))


def connect_timeout(url: str) -> dict[str, Any]:
    """10 s unless the URL says otherwise (libpq's default is to wait for ever)."""
    import psycopg

    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except (psycopg.Error, ValueError):
        return {"connect_timeout": 10}
    return {} if "connect_timeout" in given else {"connect_timeout": 10}
