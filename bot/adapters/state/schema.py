"""The state store's tables, as the queries see them (the migrations in ./migrations make them).

One definition for SQLite and PostgreSQL; where the two differ only in how a value is stored,
the column type says so (bot.adapters.state.types).
"""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Identity, Index, Integer, MetaData, Table

from bot.adapters.state.types import Doc, Id, RawJson, Str, UtcTime

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", Str, primary_key=True),
    Column("value", Str, nullable=False),
)

events = Table(
    "events", metadata,
    Column("event_id", Str, primary_key=True),
    Column("event_time", UtcTime, nullable=False),
    Column("detection", Str, nullable=False),
    Column("disposition", Str, nullable=False),
    Column("finding_key", Str),
    Column("workspace_id", Str),
    Column("instance_id", Str),
    Column("cluster_id", Str),
    Column("stored_at", UtcTime, nullable=False),
    Index("events_time", "event_time"),
    Index("events_instance", "instance_id"),
    Index("events_detection_time", "detection", "event_time"),
)

findings = Table(
    "findings", metadata,
    Column("key", Str, primary_key=True),
    Column("grp", Str, nullable=False),
    Column("detection", Doc, nullable=False),
    Column("first_event", RawJson, nullable=False),
    Column("first_seen", UtcTime, nullable=False),
    Column("last_seen", UtcTime, nullable=False),
    Column("count", Integer, nullable=False),
    Column("hosts", Doc, nullable=False),
    Column("context", Doc, nullable=False),
    Column("cluster_id", Str),
    Column("status", Str, nullable=False),
    Column("status_by", Str),
    Column("status_note", Str),
    Column("suppressed_count", Integer, nullable=False, default=0),
    Column("channel", Str),
    Column("ts", Str),
)

# storm incidents (#14): one message per detection and channel while the channel storms
incidents = Table(
    "incidents", metadata,
    Column("key", Str, primary_key=True),
    Column("channel", Str, nullable=False),
    Column("detection", Doc, nullable=False),
    Column("opened_at", UtcTime, nullable=False),
    Column("last_joined_at", UtcTime, nullable=False),
    Column("closed_at", UtcTime),
    Column("ts", Str),
    Column("listed", Integer, nullable=False, default=0),
    Index("incidents_open", "channel", "closed_at"),
)

# the findings rolled up into an incident (never posted alone), in the order they joined
incident_members = Table(
    "incident_members", metadata,
    Column("id", Id, Identity(always=True), primary_key=True),
    Column("incident_key", Str, nullable=False),
    Column("finding_key", Str, nullable=False),
    Index("incident_members_finding", "finding_key", unique=True),
    Index("incident_members_incident", "incident_key", "id"),
    sqlite_autoincrement=True,
)

outbox = Table(
    "outbox", metadata,
    Column("id", Id, Identity(always=True), primary_key=True),
    Column("finding_key", Str, nullable=False),
    Column("kind", Str, nullable=False),
    Column("payload", RawJson, nullable=False),
    Column("state", Str, nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("last_error", Str),
    Column("created_at", UtcTime, nullable=False),
    Column("sent_at", UtcTime),
    Column("priority", Integer, nullable=False, default=0),  # parent posts 10 + severity (#14)
    # indexes (migration 0008): outbox_due (state, priority DESC, id), read in order by the
    # next-due query; outbox_held (state, not_before), the threads waiting for a retry
    sqlite_autoincrement=True,
)

actions = Table(
    "actions", metadata,
    Column("id", Id, Identity(always=True), primary_key=True),
    Column("finding_key", Str, nullable=False),
    Column("action", Str, nullable=False),
    Column("user_id", Str, nullable=False),
    Column("outcome", Str, nullable=False),
    Column("message", Str, nullable=False),
    Column("dry_run", Boolean(create_constraint=False), nullable=False, default=False),
    Column("at", UtcTime, nullable=False),
    sqlite_autoincrement=True,
)

action_claims = Table(
    "action_claims", metadata,
    Column("finding_key", Str, primary_key=True),
    Column("action", Str, primary_key=True),
    Column("user_id", Str, nullable=False),
    Column("at", UtcTime, nullable=False),
)

suppressions = Table(
    "suppressions", metadata,
    Column("id", Id, Identity(always=True), primary_key=True),
    Column("detection", Str, nullable=False),
    Column("scope", Doc, nullable=False),
    Column("match", Doc, nullable=False),
    Column("reason", Str, nullable=False),
    Column("created_by", Str, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime),
    Column("finding_key", Str),
    Column("removed_by", Str),
    Column("removed_at", UtcTime),
    # what it hides while active, NULL once removed or expired: one active suppression per key (#11)
    Column("active_key", Str),
    Index("suppressions_active_key", "active_key", unique=True),
    sqlite_autoincrement=True,
)

suppression_hits = Table(
    "suppression_hits", metadata,
    Column("suppression_id", Str, primary_key=True),
    Column("matched", Integer, nullable=False, default=0),
    Column("last_matched_at", UtcTime),
)

# replicas (PostgreSQL): which replica sends each thread's outbox items, until when
outbox_leases = Table(
    "outbox_leases", metadata,
    Column("finding_key", Str, primary_key=True),
    Column("replica", Str, nullable=False),
    Column("lease_until", UtcTime, nullable=False),
)

# Slack-side hardening (#11): the signed Slack requests let through, shared by restarts and
# replicas, so a replay is never run again; rows past expires_at are pruned
replay_keys = Table(
    "replay_keys", metadata,
    Column("key", Str, primary_key=True),
    Column("expires_at", UtcTime, nullable=False),
    Index("replay_keys_expires", "expires_at"),
)

# The daily digest (#16): a day's digest is claimed here before it is posted, once across replicas
digests = Table(
    "digests", metadata,
    Column("day", Str, primary_key=True),
    Column("claimed_by", Str, nullable=False),
    Column("claimed_at", UtcTime, nullable=False),
    Column("posted_ts", Str),
)
