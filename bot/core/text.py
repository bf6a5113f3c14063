"""Text bounded the way Slack counts it: length in UTF-16 code units, and clipping to a limit.

The domain bounds the words it quotes back (a wrong `/esm recent` word, a scope label) with
these, and the Block Kit rendering (bot/render/) clips every text to its Slack limit with them.

Pure: imports only the standard library.
"""
from __future__ import annotations

ELLIPSIS = "…"

_ENTITIES = ("&amp;", "&lt;", "&gt;")  # what bot.render.blocks.escape writes; never cut in half


def slack_len(text: str) -> int:
    """Length in UTF-16 code units (an emoji counts 2), never less than Slack's own count."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` UTF-16 units with a trailing "…", never inside a pair or entity."""
    if slack_len(text) <= limit:
        return text
    if limit < 1:
        return ""
    cut = _cut_index(text, limit - 1)
    cut = _outside_surrogate_pair(text, cut)
    cut = _outside_entity(text, cut)
    return text[:cut] + ELLIPSIS


def _cut_index(text: str, budget: int) -> int:
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return index
    return len(text)


def _outside_surrogate_pair(text: str, cut: int) -> int:
    # Only text decoded with `surrogatepass` holds a pair as two code points; keep them together.
    if 0 < cut < len(text) and "\ud800" <= text[cut - 1] <= "\udbff" and "\udc00" <= text[cut] <= "\udfff":
        return cut - 1
    return cut


def _outside_entity(text: str, cut: int) -> int:
    start = text.rfind("&", max(0, cut - 4), cut)
    if start == -1:
        return cut
    for entity in _ENTITIES:
        if text.startswith(entity, start) and start + len(entity) > cut:
            return start
    return cut
