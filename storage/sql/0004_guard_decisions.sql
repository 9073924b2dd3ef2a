-- Decided requests and votes are final; an approved request may be used once (consumed_at).

ALTER TABLE requests ADD COLUMN consumed_at TEXT;

-- What a request asked for never changes.
CREATE TRIGGER requests_fixed_fields BEFORE UPDATE OF
    id, action, summary, payload, payload_sha256, confidence, flags, agent_id, idempotency_key,
    triggers, approvals_required, priority, created_at, expires_at, channel, approvers ON requests
BEGIN
    SELECT RAISE(ABORT, 'what a request asked for cannot be changed');
END;

-- Only a pending request changes state; a decision is final.
CREATE TRIGGER requests_decisions_final BEFORE UPDATE OF status, decided_by, decided_at, note ON requests
WHEN OLD.status != 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a decided request cannot change');
END;

-- Only an approved request is consumed, and only once.
CREATE TRIGGER requests_consumed_once BEFORE UPDATE OF consumed_at ON requests
WHEN OLD.consumed_at IS NOT NULL OR OLD.status != 'approved'
BEGIN
    SELECT RAISE(ABORT, 'only an approved request can be used, and only once');
END;

CREATE TRIGGER requests_never_deleted BEFORE DELETE ON requests
BEGIN
    SELECT RAISE(ABORT, 'requests cannot be deleted');
END;

CREATE TRIGGER votes_append_only_update BEFORE UPDATE ON votes
BEGIN
    SELECT RAISE(ABORT, 'votes cannot be changed');
END;

CREATE TRIGGER votes_append_only_delete BEFORE DELETE ON votes
BEGIN
    SELECT RAISE(ABORT, 'votes cannot be deleted');
END;

CREATE TRIGGER events_seq_positive BEFORE INSERT ON events
WHEN NEW.seq < 1
BEGIN
    SELECT RAISE(ABORT, 'event numbers start at 1');
END;
