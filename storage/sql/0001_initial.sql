-- signoff schema, version 1: requests, votes, the hash-chained audit log, anomaly history, the outbox.

CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    action             TEXT NOT NULL,
    summary            TEXT NOT NULL,
    payload            TEXT NOT NULL,              -- canonical JSON object
    payload_sha256     TEXT NOT NULL,
    confidence         REAL,
    flags              TEXT NOT NULL,              -- JSON array of strings
    agent_id           TEXT,
    idempotency_key    TEXT,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    decided_by         TEXT CHECK (decided_by IN ('policy', 'human')),
    triggers           TEXT NOT NULL,              -- JSON array of {kind, detail}
    approvals_required INTEGER NOT NULL CHECK (approvals_required >= 1),
    priority           TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    decided_at         TEXT,
    note               TEXT
);

CREATE UNIQUE INDEX requests_idempotency ON requests (coalesce(agent_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_created ON requests (created_at DESC, id DESC);
CREATE INDEX requests_status_created ON requests (status, created_at DESC, id DESC);
CREATE INDEX requests_action_created ON requests (action, created_at DESC, id DESC);
CREATE INDEX requests_agent_created ON requests (agent_id, created_at DESC, id DESC);
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE status = 'pending';

CREATE TABLE votes (
    request_id TEXT NOT NULL REFERENCES requests (id),
    reviewer   TEXT NOT NULL,
    verdict    TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
    comment    TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (request_id, reviewer)
) WITHOUT ROWID;

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at         TEXT NOT NULL,
    data       TEXT NOT NULL,                      -- canonical JSON object
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
);
CREATE INDEX events_request ON events (request_id, seq);

CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: events cannot be updated');
END;

CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: events cannot be deleted');
END;

-- What the anomaly trigger compares against: actions seen per agent, recent numeric values per action.
CREATE TABLE agent_actions (
    agent_id TEXT NOT NULL,                        -- '' for requests without an agent_id
    action   TEXT NOT NULL,
    PRIMARY KEY (agent_id, action)
) WITHOUT ROWID;

CREATE TABLE action_values (
    seq    INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    field  TEXT NOT NULL,
    value  REAL NOT NULL
);
CREATE INDEX action_values_recent ON action_values (action, field, seq DESC);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
