"""What is said about a state store's location: its URL with the password masked, and errors."""
from __future__ import annotations

import re
from typing import Any
from bot.config import url_password_forms
from bot.core.ports import StoreError


class StateStoreError(StoreError):
    """The state store cannot be opened or cannot go on safely; the message says why (no secret)."""


_SCHEME = re.compile(r"(?i)postgres(?:ql)?(?:\+\w+)?://")
_URL_IN_TEXT = re.compile(r"(?i)(postgres(?:ql)?(?:\+\w+)?://)(\S+)")
_PASSWORD_PARAM = re.compile(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]*)")


def _mask_userinfo(rest: str) -> str:
    """`user:password@host…` (what follows `scheme://`) with the password as ****: from the
    first colon to the last @, so a password holding an @, a ? or a / is masked whole (an @ in
    the query masks the host too: more than needed, never less)."""
    at = rest.rfind("@")
    if at == -1:
        return rest
    user, colon, _ = rest[:at].partition(":")
    return f"{user}:****@{rest[at + 1:]}" if colon else rest


def redact_url(text: str, *, url: str | None = None) -> str:
    """The text with every PostgreSQL URL's password (and any password= parameter) as ****.
    Works on a bare URL (even one with a space, an @ or a malformed escape in its password) and
    on an error message that quotes one; with `url`, that URL's password is also masked wherever
    it appears on its own (drivers quote it: `invalid percent-encoded token: "…"`). Never fails."""
    try:
        if _SCHEME.match(text) and text.count("://") == 1:  # one bare URL
            scheme, rest = text.split("://", 1)
            masked = f"{scheme}://{_mask_userinfo(rest)}"
        else:  # free text: each URL runs to the next white space
            masked = _URL_IN_TEXT.sub(lambda m: m.group(1) + _mask_userinfo(m.group(2)), text)
        masked = _PASSWORD_PARAM.sub(r"\1****", masked)
        if url is not None:
            for form in sorted(url_password_forms(url), key=len, reverse=True):
                if len(form) >= 4:  # as the log mask: shorter strings are everywhere
                    masked = masked.replace(form, "****")
        return masked
    except Exception:  # a mask must never be the thing that fails: say nothing rather than leak
        return "(text withheld: it may hold a password)"


def connect_timeout(url: str) -> dict[str, Any]:
    """10 s unless the URL says otherwise (libpq's default is to wait for ever)."""
    import psycopg

    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except (psycopg.Error, ValueError):
        return {"connect_timeout": 10}
    return {} if "connect_timeout" in given else {"connect_timeout": 10}
