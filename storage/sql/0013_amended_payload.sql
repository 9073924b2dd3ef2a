-- Approve with changes, and claims (below).
-- Approve with changes: a reviewer may approve a request with an amended payload (approved_payload, canonical
-- JSON). The payload as asked stays in payload; the receipt binds the approved one. Set once, by the decision.

ALTER TABLE requests ADD COLUMN approved_payload TEXT;

CREATE TRIGGER requests_approved_payload_once BEFORE UPDATE OF approved_payload ON requests
WHEN OLD.status != 'pending' OR OLD.approved_payload IS NOT NULL
     OR (NEW.approved_payload IS NOT NULL AND NEW.status != 'approved')
BEGIN
    SELECT RAISE(ABORT, 'an approved payload is set once, by the decision that approves the request');
END;

-- Claims: a reviewer says "I am looking at this" (claimed_by, claimed_at) until claim_expires_at, when it lapses by
-- itself. The request stays pending and anyone may still vote; claims are audit events (claimed, released).
ALTER TABLE requests ADD COLUMN claimed_by TEXT;
ALTER TABLE requests ADD COLUMN claimed_at TEXT;
ALTER TABLE requests ADD COLUMN claim_expires_at TEXT;

CREATE TRIGGER requests_claims_while_pending BEFORE UPDATE OF claimed_by, claimed_at, claim_expires_at ON requests
WHEN OLD.status != 'pending'
BEGIN
    SELECT RAISE(ABORT, 'only a pending request is claimed or released');
END;
