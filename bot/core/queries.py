"""The SQL the bot runs, in Databricks SQL dialect, with named `:parameters` only.

The warehouse runs this text as it is; the embedded DuckDB store runs the same text translated
(see bot/adapters/sql_dialect.py). Values never enter the text: every caller binds them.

`sql_literal` is only for SQL the bot writes for others and never runs itself: the query shown
on a finding to reproduce it (bot/render/blocks.py) and the alert queries that deploy installs
(bot/core/deploy_plan.py). There a value has to become a quoted literal.
"""
from __future__ import annotations

from bot.core.events import CAPSULE8_SERVICE, CLAMAV_SERVICE

AUDIT_COLUMNS = (
    "event_id, event_time, workspace_id, service_name, action_name, request_params, "
    "response, user_identity, source_ip_address"
)

# The sync's rows: Capsule8 detections and ClamAV scans. Keyset pagination on
# (event_time, event_id): pages never skip or repeat rows that share a time.
CAPSULE8_SINCE = f"""
SELECT {AUDIT_COLUMNS}
FROM system.access.audit
WHERE service_name IN (:service, :clamav_service)
  AND event_date >= CAST(:since AS DATE)
  AND (event_time > :since OR (event_time = :since AND event_id > :after_id))
ORDER BY event_time, event_id
LIMIT :limit
"""

# The late-arrival sweep, step 1: only what de-duplication needs (the ids) of a window behind the
# incremental read, pruned on event_date. Step 2 reads whole rows for the ids the bot has not seen.
SWEEP_IDS = """
SELECT event_id
FROM system.access.audit
WHERE service_name IN (:service, :clamav_service)
  AND event_date >= CAST(:since AS DATE)
  AND event_time >= :since
  AND event_time < :until
LIMIT :limit
"""

SWEEP_CHUNK = 200  # ids per statement in step 2


def rows_by_id(count: int) -> str:
    """Step 2: whole rows of `count` ids, bound as :id0 … :id{count-1} (the text names only the
    parameters, never a value), oldest first."""
    if not 0 < count <= SWEEP_CHUNK:
        raise ValueError(f"between 1 and {SWEEP_CHUNK} ids per statement, not {count}")
    names = ", ".join(f":id{i}" for i in range(count))
    return f"""
SELECT {AUDIT_COLUMNS}
FROM system.access.audit
WHERE service_name IN (:service, :clamav_service)
  AND event_date >= CAST(:since AS DATE)
  AND event_id IN ({names})
ORDER BY event_time, event_id
"""


NOTEBOOK_COMMANDS = """
SELECT event_time,
       user_identity.email AS user_email,
       request_params['notebookId'] AS notebook_id,
       request_params['commandText'] AS command_text,
       response.status_code AS status_code
FROM system.access.audit
WHERE service_name = 'notebook'
  AND action_name = 'runCommand'
  AND request_params['clusterId'] = :cluster_id
  AND event_date >= CAST(:start AS DATE)
  AND event_time BETWEEN :start AND :end
ORDER BY event_time DESC
LIMIT :limit
"""

# Investigate (#12): every Capsule8 event on one instance in a window, oldest first.
CAPSULE8_ON_INSTANCE = f"""
SELECT {AUDIT_COLUMNS}
FROM system.access.audit
WHERE service_name = :service
  AND request_params['instanceId'] = :instance_id
  AND event_date >= CAST(:start AS DATE)
  AND event_time BETWEEN :start AND :end
ORDER BY event_time, event_id
LIMIT :limit
"""

# Investigate (#12): a user's logins and personal access token creations (service `accounts`;
# the action names are the audit log reference's authentication events and generateDbToken).
USER_ACTIVITY_ACTIONS = ("login", "tokenLogin", "samlLogin", "oidcBrowserLogin", "oidcTokenAuthorization",
                         "jwtLogin", "mfaLogin", "aadBrowserLogin", "aadTokenLogin", "generateDbToken")
USER_ACTIVITY = f"""
SELECT event_time, action_name, source_ip_address, user_agent, response.status_code AS status_code
FROM system.access.audit
WHERE service_name = 'accounts'
  AND action_name IN ({", ".join(f":a{i}" for i in range(len(USER_ACTIVITY_ACTIONS)))})
  AND user_identity.email = :user
  AND event_date >= CAST(:start AS DATE)
  AND event_time BETWEEN :start AND :end
ORDER BY event_time
LIMIT :limit
"""
USER_ACTIVITY_PARAMS = {f"a{i}": name for i, name in enumerate(USER_ACTIVITY_ACTIONS)}

# node_timeline has one row per node per minute; the latest row at or before the event wins.
CLUSTER_FOR_INSTANCE = """
SELECT cluster_id, driver
FROM system.compute.node_timeline
WHERE instance_id = :instance_id
  AND start_time <= :at
  AND start_time >= :earliest
ORDER BY start_time DESC
LIMIT 1
"""

# system.compute.clusters keeps one row per configuration change: take the latest.
CLUSTER_RECORD = """
SELECT cluster_id, cluster_name, owned_by, data_security_mode, policy_id, dbr_version, delete_time
FROM system.compute.clusters
WHERE cluster_id = :cluster_id
ORDER BY change_time DESC
LIMIT 1
"""

# /esm recent and the "Recent on this host" button: one row per (detection, host, workspace).
# Optional filters are NULL when unused; a NULL :param leaves its line true. Category, severity
# and cluster are not columns of the audit table: bot/services/recent.py filters them in Python.
RECENT_EVENTS = """
SELECT action_name,
       request_params['instanceId'] AS instance_id,
       workspace_id,
       count(*) AS event_count,
       min(event_time) AS first_time,
       max(event_time) AS last_time
FROM system.access.audit
WHERE service_name = :service
  AND event_date >= CAST(:since AS DATE)
  AND event_time >= :since
  AND (:instance IS NULL OR request_params['instanceId'] = :instance)
  AND (:detection IS NULL OR action_name = :detection)
  AND (:workspace IS NULL OR workspace_id = :workspace)
GROUP BY action_name, request_params['instanceId'], workspace_id
ORDER BY last_time DESC, event_count DESC, action_name, instance_id
LIMIT :limit
"""

# The benign modal's preview: recent rows of one detection (names compare case-insensitively,
# as the catalogue does), newest first, bounded; the suppression's globs are matched in Python.
CAPSULE8_DETECTION_SINCE = f"""
SELECT {AUDIT_COLUMNS}
FROM system.access.audit
WHERE service_name = :service
  AND event_date >= CAST(:since AS DATE)
  AND event_time >= :since
  AND lower(trim(action_name)) = lower(trim(:detection))
ORDER BY event_time DESC, event_id
LIMIT :limit
"""

CAPSULE8_PARAMS = {"service": CAPSULE8_SERVICE}
SYNC_PARAMS = {"service": CAPSULE8_SERVICE, "clamav_service": CLAMAV_SERVICE}


def sql_literal(value: str) -> str:
    """A Databricks SQL string literal for a human to paste.

    Databricks reads `\\` as an escape and joins adjacent literals, so `'It''s'` would mean
    `Its`: quotes are backslash-escaped, not doubled. `$` is escaped because a notebook cell
    would otherwise read `$name` as a widget; `\\$` is just `$` to the SQL parser.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("$", "\\$")
    for char, sequence in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\0", "\\0")):
        escaped = escaped.replace(char, sequence)
    return f"'{escaped}'"
