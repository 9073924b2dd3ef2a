-- Built-in alerts (server/alerts.py). Several processes may share this database and each evaluates the rules, so
-- an alert's state lives here: a process that sees the condition change sets the state with a compare-and-set in
-- a write transaction, and in that same transaction queues one delivery per target. Only the process whose
-- compare-and-set succeeded queues anything, so an episode sends one "firing" and one "resolved" message.

-- The state of each rule: firing or not, since when, and the value last seen when it changed.
CREATE TABLE alert_state (
    rule       TEXT PRIMARY KEY,
    firing     INTEGER NOT NULL CHECK (firing IN (0, 1)),
    since      TEXT NOT NULL,
    value      REAL NOT NULL,
    episode    INTEGER NOT NULL               -- alert_episodes.id of the current (or last) episode
) WITHOUT ROWID;

-- Every episode of every rule: when it started and ended, and what was seen then (`signoff alerts` lists them).
CREATE TABLE alert_episodes (
    id          INTEGER PRIMARY KEY,
    rule        TEXT NOT NULL,
    fired_at    TEXT NOT NULL,
    fired_value REAL NOT NULL,
    message     TEXT NOT NULL,
    resolved_at TEXT,
    resolved_value REAL
);
CREATE INDEX alert_episodes_recent ON alert_episodes (id DESC);

-- The alert outbox: one row per message (firing or resolved) and target, written with the state change.
-- A worker claims a due row by moving next_attempt_at past a lease, so two processes never send it at once;
-- a process that dies mid-send leaves the row to be claimed again when the lease ends (at least once).
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    episode         INTEGER NOT NULL REFERENCES alert_episodes (id),
    rule            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('firing', 'resolved')),
    target          TEXT NOT NULL,             -- 'slack', 'webhook', 'email'
    message         TEXT NOT NULL,
    value           REAL NOT NULL,
    at              TEXT NOT NULL,             -- when the condition changed
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE state = 'pending';

-- People's decisions in the last hour, read every evaluation: a range over this index, not a scan of history.
CREATE INDEX requests_human_decided ON requests (decided_at) WHERE decided_by = 'human';
