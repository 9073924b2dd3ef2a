-- Long waits that survive a dropped connection (MCP resumability, issue 15). A waiting tool call made over streamable
-- HTTP (get_status or request_approval with wait_seconds) gets a stream: a random key the client sees as the SSE
-- event id it reconnects with (Last-Event-ID), the JSON-RPC request it was, who made it (the bearer token's identity,
-- NULL without auth), which process serves it and when that process last said it still did (alive_at, refreshed
-- every second or so), and its final JSON-RPC response once there is one. A reconnect to any server on the database
-- sends the stored response, waits for it while the owner lives, or runs a get_status again when the owner is gone.
-- Transient: every server deletes streams an hour old (a delete is idempotent); `signoff db copy` leaves them out.
CREATE TABLE resume_streams (
    key TEXT PRIMARY KEY,
    principal TEXT,
    tool TEXT NOT NULL,
    request TEXT NOT NULL,
    owner TEXT NOT NULL,
    alive_at TEXT,
    created_at TEXT NOT NULL,
    response TEXT
);

CREATE INDEX resume_streams_created ON resume_streams (created_at);
