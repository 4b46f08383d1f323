-- Tables of one namespace. Every table lives in the namespace's schema
-- (__SCHEMA__), so namespaces share a database without sharing a row.
-- Times are server Unix ms (clock_timestamp()), never a client's clock.

-- The namespace's ring settings: written once, then only compared.
CREATE TABLE __SCHEMA__.config (
    field text PRIMARY KEY,
    value text NOT NULL
);

-- Live members: a row per node id, alive while deadline_ms is ahead of
-- server time; expired rows are removed by the next member listing.
CREATE TABLE __SCHEMA__.members (
    node_id text COLLATE "C" PRIMARY KEY,
    info text NOT NULL,
    deadline_ms bigint NOT NULL
);

-- Shard leases. A row per shard that was ever acquired, never deleted:
-- `fence` is the last fencing token handed out for the shard and is never
-- reset (release clears the holder only). The lease is held while holder
-- is set and deadline_ms is ahead of server time.
CREATE TABLE __SCHEMA__.leases (
    shard integer PRIMARY KEY,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    deadline_ms bigint NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0
);

-- Per-shard job version counter: moves on every job write, trigger and
-- hand-back of the shard; a job's version is the counter after its write,
-- so versions are never reused.
CREATE TABLE __SCHEMA__.shard_versions (
    shard integer PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0
);

-- Jobs. `record` is the stored job as JSON text (version, updated_ms,
-- active_since_ms, spec), exactly what a reader decodes; it is text, not
-- jsonb, so a record a reader cannot decode stays a per-job problem.
-- last_fired_ms is the claim watermark of scheduled fires; last_trigger_ms
-- keeps two triggers of a job from sharing a millisecond.
CREATE TABLE __SCHEMA__.jobs (
    job_id text COLLATE "C" PRIMARY KEY,
    shard integer NOT NULL,
    version bigint NOT NULL,
    record text NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    updated_ms bigint NOT NULL DEFAULT 0,
    active_since_ms bigint NOT NULL DEFAULT 0,
    weight bigint NOT NULL DEFAULT 0,
    last_fired_ms bigint,
    last_trigger_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_shard ON __SCHEMA__.jobs (shard);

-- Queued manual triggers, in queue order (seq). A trigger leaves the
-- queue only inside the claim of its fire.
CREATE TABLE __SCHEMA__.triggers (
    seq bigserial PRIMARY KEY,
    shard integer NOT NULL,
    job_id text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL
);
CREATE INDEX triggers_by_shard ON __SCHEMA__.triggers (shard, seq);

-- One row per claimed fire (the claim key): who claimed it, under which
-- token, by which attempt ('h' once handed back, '0' once recovered), and
-- until when the row counts (a row past expires_ms is as absent). status
-- follows the fire: claimed, then the outcome its run record reports.
CREATE TABLE __SCHEMA__.fires (
    job_id text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    shard integer NOT NULL,
    kind "char" NOT NULL CHECK (kind IN ('s', 't')),
    holder text NOT NULL,
    token bigint NOT NULL,
    attempt text NOT NULL,
    expires_ms bigint NOT NULL,
    status text NOT NULL DEFAULT 'claimed' CHECK (status IN (
        'claimed', 'running', 'succeeded', 'failed', 'timed_out', 'panicked',
        'cancelled', 'skipped_overlap', 'misfired', 'unknown_handler')),
    PRIMARY KEY (job_id, at_ms)
);
CREATE INDEX fires_by_expiry ON __SCHEMA__.fires (expires_ms);

-- Open entries of at_least_once fires: from the claim until a terminal
-- record closes them; recovery rewrites them to the recoverer.
CREATE TABLE __SCHEMA__.open_fires (
    shard integer NOT NULL,
    job_id text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    holder text NOT NULL,
    token bigint NOT NULL,
    delivery integer NOT NULL,
    kind "char" NOT NULL CHECK (kind IN ('s', 't')),
    abandoned boolean NOT NULL DEFAULT false,
    PRIMARY KEY (shard, job_id, at_ms)
);

-- Namespace-wide singletons: the live weights' version, the weights
-- snapshot's version and refresh time, and the stored placement.
CREATE TABLE __SCHEMA__.state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    live_weights_version bigint NOT NULL DEFAULT 0,
    snapshot_version bigint NOT NULL DEFAULT 0,
    snapshot_at_ms bigint NOT NULL DEFAULT 0,
    placement_version bigint NOT NULL DEFAULT 0,
    placement text NOT NULL DEFAULT ''
);
INSERT INTO __SCHEMA__.state DEFAULT VALUES;

-- The weights snapshot placement balances (shard -> load units).
CREATE TABLE __SCHEMA__.weights_snapshot (
    shard integer PRIMARY KEY,
    units bigint NOT NULL
);

-- Run history: one row per run record, in write order (seq). The
-- namespace list is the newest rows, a job's history its newest visible
-- rows; job_visible is cleared when a deleted job's history expires.
CREATE TABLE __SCHEMA__.runs (
    seq bigserial PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    record text NOT NULL,
    job_visible boolean NOT NULL DEFAULT true
);
CREATE INDEX runs_by_job ON __SCHEMA__.runs (job_id, seq);
CREATE INDEX runs_hidden ON __SCHEMA__.runs (seq) WHERE NOT job_visible;

-- Per job with history: the record hour of its last write, for the
-- retention of deleted jobs' history.
CREATE TABLE __SCHEMA__.job_history (
    job_id text COLLATE "C" PRIMARY KEY,
    last_hour bigint NOT NULL
);
CREATE INDEX job_history_by_hour ON __SCHEMA__.job_history (last_hour);
