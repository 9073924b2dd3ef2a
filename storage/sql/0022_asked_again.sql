-- An agent's requests that went to people and were not approved by them (still pending; rejected, expired or
-- cancelled other than by the policy), by agent ('' for none) and payload digest: a request the policy would
-- approve at once is approved only if its agent never asked for the same action and payload with such an outcome
-- (Store.create_request's refuse_approval_if_asked_before; storage/approvals/queries.py ASKED_BEFORE, whose
-- conditions are these, word for word). Partial, so it holds only those requests: however often an agent asks for
-- what the policy approves, the lookup is one probe.
CREATE INDEX requests_asked_unapproved ON requests (coalesce(agent_id, ''), payload_sha256)
    WHERE status <> 'approved' AND (decided_by IS NULL OR decided_by <> 'policy');
