-- Each notifier's delivery of each outbox row, tracked on its own: a Slack retry (with its own Retry-After and
-- backoff) does not run the console or the webhook again, and a notifier that fails for good is dead-lettered
-- (state 'dead', a notify_failed event) without holding up the others. An outbox row is settled (delivered_at set)
-- once every notifier of the worker that claims it has delivered or given up.
CREATE TABLE outbox_deliveries (
    outbox_id       INTEGER NOT NULL REFERENCES outbox (id),
    notifier        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    first_failed_at TEXT,
    last_error      TEXT,
    at              TEXT,                           -- when delivered or given up on
    PRIMARY KEY (outbox_id, notifier)
) WITHOUT ROWID;
CREATE INDEX outbox_deliveries_dead ON outbox_deliveries (outbox_id) WHERE state = 'dead';

-- A Slack post is reserved (ts '') before it is sent, so a retry after a crash looks for it before posting again.
ALTER TABLE message_refs ADD COLUMN reserved_at TEXT;
