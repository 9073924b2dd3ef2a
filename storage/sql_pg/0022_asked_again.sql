-- The requests that went to people, by agent and payload digest: storage/sql/0022_asked_again.sql on PostgreSQL
-- (the comments there say what it is for).
CREATE INDEX requests_asked_of_people ON requests (coalesce(agent_id, ''), payload_sha256, created_at DESC, id DESC)
    WHERE decided_by IS NULL OR decided_by <> 'policy';
