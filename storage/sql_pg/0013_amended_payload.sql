-- Approve with changes and claims: storage/sql/0013_amended_payload.sql on PostgreSQL.

ALTER TABLE requests ADD COLUMN approved_payload ctext;   -- canonical JSON; set once, by the approving decision

CREATE TRIGGER requests_approved_payload_once BEFORE UPDATE OF approved_payload ON requests
    FOR EACH ROW WHEN (OLD.status <> 'pending' OR OLD.approved_payload IS NOT NULL
                       OR (NEW.approved_payload IS NOT NULL AND NEW.status <> 'approved'))
    EXECUTE FUNCTION signoff_refuse('an approved payload is set once, by the decision that approves the request');

ALTER TABLE requests ADD COLUMN claimed_by ctext;
ALTER TABLE requests ADD COLUMN claimed_at ctext;
ALTER TABLE requests ADD COLUMN claim_expires_at ctext;

CREATE TRIGGER requests_claims_while_pending BEFORE UPDATE OF claimed_by, claimed_at, claim_expires_at ON requests
    FOR EACH ROW WHEN (OLD.status <> 'pending')
    EXECUTE FUNCTION signoff_refuse('only a pending request is claimed or released');
