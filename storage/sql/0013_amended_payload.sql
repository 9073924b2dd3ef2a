-- Approve with changes: a reviewer may approve a request with an amended payload (approved_payload, canonical
-- JSON). The payload as asked stays in payload; the receipt binds the approved one. Set once, by the decision.

ALTER TABLE requests ADD COLUMN approved_payload TEXT;

CREATE TRIGGER requests_approved_payload_once BEFORE UPDATE OF approved_payload ON requests
WHEN OLD.status != 'pending' OR OLD.approved_payload IS NOT NULL
     OR (NEW.approved_payload IS NOT NULL AND NEW.status != 'approved')
BEGIN
    SELECT RAISE(ABORT, 'an approved payload is set once, by the decision that approves the request');
END;
