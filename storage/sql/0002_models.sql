-- signoff schema, version 2: the model control plane (versions, serving, history, telemetry).

CREATE TABLE models (
    name       TEXT PRIMARY KEY,
    salt       TEXT NOT NULL,                      -- hex; mixed into routing keys' hashes
    created_at TEXT NOT NULL,
    production TEXT,
    previous   TEXT,
    weights    TEXT NOT NULL,                      -- canonical JSON {version: basis points}, zeros left out
    revision   INTEGER NOT NULL                    -- seq of the last applied change
);

CREATE TABLE model_versions (
    model           TEXT NOT NULL REFERENCES models (name),
    version         TEXT NOT NULL,
    seq             INTEGER NOT NULL,              -- registration order: the routing order of the arms
    endpoint        TEXT NOT NULL,
    metadata        TEXT NOT NULL,                 -- canonical JSON object
    lineage         TEXT NOT NULL,                 -- canonical JSON object
    registered_at   TEXT NOT NULL,
    registered_by   TEXT,
    idempotency_key TEXT,
    PRIMARY KEY (model, version)
) WITHOUT ROWID;

CREATE TABLE model_changes (
    seq          INTEGER PRIMARY KEY,
    model        TEXT NOT NULL REFERENCES models (name),
    kind         TEXT NOT NULL CHECK (kind IN ('register', 'set_traffic', 'promote', 'rollback', 'guard')),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'dropped')),
    requested_at TEXT NOT NULL,
    requested_by TEXT,
    reason       TEXT NOT NULL,
    payload      TEXT NOT NULL,                    -- canonical JSON object: the exact change
    request_id   TEXT UNIQUE,                      -- the approval request, when one was needed
    settled_at   TEXT,
    outcome      TEXT,
    production   TEXT,                             -- what served traffic right after it applied
    previous     TEXT,
    weights      TEXT                              -- NULL unless applied
);
CREATE INDEX model_changes_model ON model_changes (model, seq);
CREATE INDEX model_changes_pending ON model_changes (seq) WHERE status = 'pending';

-- Bumped by every transaction that changes versions, serving or changes, so routing caches stay cheap to check.
CREATE TABLE model_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO model_state (id, version) VALUES (1, 0);

-- Exact sums per version per minute (minute = whole minutes since the Unix epoch).
CREATE TABLE model_minutes (
    model            TEXT NOT NULL,
    version          TEXT NOT NULL,
    minute           INTEGER NOT NULL,
    count            INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    latency_sum      REAL NOT NULL,
    confidence_sum   REAL NOT NULL,
    confidence_count INTEGER NOT NULL,
    PRIMARY KEY (model, version, minute)
) WITHOUT ROWID;

-- A bounded uniform sample of latencies per version per period (Algorithm R); see storage/telemetry.py.
CREATE TABLE model_reservoirs (
    model   TEXT NOT NULL,
    version TEXT NOT NULL,
    period  INTEGER NOT NULL,
    seen    INTEGER NOT NULL,                      -- inferences offered to this reservoir
    PRIMARY KEY (model, version, period)
) WITHOUT ROWID;

CREATE TABLE model_samples (
    model      TEXT NOT NULL,
    version    TEXT NOT NULL,
    period     INTEGER NOT NULL,
    slot       INTEGER NOT NULL,
    minute     INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    PRIMARY KEY (model, version, period, slot)
) WITHOUT ROWID;
