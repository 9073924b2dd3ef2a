-- Deliveries for one request are made one at a time: only its oldest undelivered row can be claimed.
CREATE INDEX outbox_pending_by_request ON outbox (request_id, id) WHERE delivered_at IS NULL;

-- A voter's other names (a Slack user id), so one person cannot fill two seats of a quorum.
ALTER TABLE votes ADD COLUMN reviewer_ids TEXT NOT NULL DEFAULT '[]';
