"""/esm recent — filled in by issue #3."""
from __future__ import annotations

VERBS: list = []
