-- The requests that went to people and were not approved by them: storage/sql/0022_asked_again.sql on PostgreSQL
-- (the comments there say what it is for).
CREATE INDEX requests_asked_unapproved ON requests (coalesce(agent_id, ''), payload_sha256)
    WHERE status <> 'approved' AND (decided_by IS NULL OR decided_by <> 'policy');
