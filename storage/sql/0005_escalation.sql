-- Escalation: a request still pending at escalate_at is shown to escalate_to, once (escalated_at).

ALTER TABLE requests ADD COLUMN escalate_at TEXT;
ALTER TABLE requests ADD COLUMN escalate_to TEXT;
ALTER TABLE requests ADD COLUMN escalated_at TEXT;

CREATE INDEX requests_escalation_due ON requests (escalate_at) WHERE status = 'pending' AND escalated_at IS NULL;

CREATE TRIGGER requests_escalation_fixed BEFORE UPDATE OF escalate_at, escalate_to ON requests
BEGIN
    SELECT RAISE(ABORT, 'what a request asked for cannot be changed');
END;

CREATE TRIGGER requests_escalated_once BEFORE UPDATE OF escalated_at ON requests
WHEN OLD.escalated_at IS NOT NULL OR OLD.status != 'pending'
BEGIN
    SELECT RAISE(ABORT, 'only a pending request is escalated, and only once');
END;
