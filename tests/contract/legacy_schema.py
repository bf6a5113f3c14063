"""The schema of the last release whose two stores kept their own migrations (SQLite's
`PRAGMA user_version` 4, PostgreSQL's `schema_version` 4), as that release created it: a store
made by it must be upgraded in place by today's shared migrations."""
from __future__ import annotations

SQLITE_V4: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        event_time TEXT NOT NULL,
        detection TEXT NOT NULL,
        disposition TEXT NOT NULL,
        finding_key TEXT,
        workspace_id TEXT,
        instance_id TEXT,
        cluster_id TEXT,
        stored_at TEXT NOT NULL
    );
    CREATE INDEX events_time ON events (event_time);
    CREATE TABLE findings (
        key TEXT PRIMARY KEY,
        grp TEXT NOT NULL,
        detection TEXT NOT NULL,
        first_event TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        count INTEGER NOT NULL,
        hosts TEXT NOT NULL,
        context TEXT NOT NULL,
        cluster_id TEXT,
        status TEXT NOT NULL,
        status_by TEXT,
        status_note TEXT,
        suppressed_count INTEGER NOT NULL DEFAULT 0,
        channel TEXT,
        ts TEXT
    );
    CREATE INDEX findings_group ON findings (grp, first_seen);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox (state, id);
    """,
    """
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        finding_key TEXT NOT NULL,
        action TEXT NOT NULL,
        user_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        at TEXT NOT NULL
    );
    CREATE INDEX actions_finding ON actions (finding_key, id);
    CREATE TABLE action_claims (
        finding_key TEXT NOT NULL,
        action TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (finding_key, action)
    );
    """,
    """
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        detection TEXT NOT NULL,
        scope TEXT NOT NULL,
        match TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        finding_key TEXT,
        removed_by TEXT,
        removed_at TEXT
    );
    CREATE TABLE suppression_hits (
        suppression_id TEXT PRIMARY KEY,
        matched INTEGER NOT NULL DEFAULT 0,
        last_matched_at TEXT
    );
    """,
    """
    CREATE INDEX outbox_thread ON outbox (finding_key, state, id);
    CREATE INDEX events_instance ON events (instance_id);
    """,
]

POSTGRES_V4: list[str] = [
    """
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE events (
        event_id text PRIMARY KEY,
        event_time timestamptz NOT NULL,
        detection text NOT NULL,
        disposition text NOT NULL,
        finding_key text,
        workspace_id text,
        instance_id text,
        cluster_id text,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_time ON events (event_time);
    CREATE TABLE findings (
        key text PRIMARY KEY,
        grp text NOT NULL,
        detection jsonb NOT NULL,
        first_event json NOT NULL,
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        count integer NOT NULL,
        hosts jsonb NOT NULL,
        context jsonb NOT NULL,
        cluster_id text,
        status text NOT NULL,
        status_by text,
        status_note text,
        suppressed_count integer NOT NULL DEFAULT 0,
        channel text,
        ts text
    );
    CREATE INDEX findings_group ON findings (grp, first_seen);
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        finding_key text NOT NULL,
        kind text NOT NULL,
        payload json NOT NULL,
        state text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        not_before double precision NOT NULL DEFAULT 0,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
    );
    CREATE INDEX outbox_pending ON outbox (state, id);
    """,
    """
    CREATE TABLE actions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        finding_key text NOT NULL,
        action text NOT NULL,
        user_id text NOT NULL,
        outcome text NOT NULL,
        message text NOT NULL,
        dry_run boolean NOT NULL DEFAULT false,
        at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX actions_finding ON actions (finding_key, id);
    CREATE TABLE action_claims (
        finding_key text NOT NULL,
        action text NOT NULL,
        user_id text NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (finding_key, action)
    );
    """,
    """
    CREATE TABLE suppressions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        detection text NOT NULL,
        scope jsonb NOT NULL,
        match jsonb NOT NULL,
        reason text NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz,
        finding_key text,
        removed_by text,
        removed_at timestamptz
    );
    CREATE TABLE suppression_hits (
        suppression_id text PRIMARY KEY,
        matched integer NOT NULL DEFAULT 0,
        last_matched_at timestamptz
    );
    """,
    """
    CREATE TABLE outbox_leases (
        finding_key text PRIMARY KEY,
        replica text NOT NULL,
        lease_until timestamptz NOT NULL
    );
    CREATE INDEX outbox_leases_replica ON outbox_leases (replica);
    CREATE INDEX outbox_thread ON outbox (finding_key, state);
    CREATE INDEX events_instance ON events (instance_id);
    """,
]
