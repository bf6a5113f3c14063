"""Terminate anyway (#12): Terminate's follow-up on a shared cluster, offered beside "Quarantine
instead" in Terminate's private answer. The same terminate, claimed with it (once per finding)."""
from __future__ import annotations

from handlers.actions.terminate_cluster import ANYWAY_SPEC, TerminateCluster


class TerminateAnyway(TerminateCluster):
    spec = ANYWAY_SPEC
    offers_quarantine = False


ACTION = TerminateAnyway()
