-- An agent's requests that went to people (not decided by the policy at once: pending, decided by people, expired
-- or cancelled), by agent ('' for none) and payload digest, newest first: a request the policy would approve at once
-- is approved only if the newest such request of its agent for the same action and payload, if any, was approved by
-- people (Store.create_request's refuse_approval_if_asked_before; storage/approvals/queries.py ASKED_BEFORE, whose
-- conditions are these, word for word). Partial, so it holds only those requests: however often the policy approved
-- the same, the lookup is one probe.
CREATE INDEX requests_asked_of_people ON requests (coalesce(agent_id, ''), payload_sha256, created_at DESC, id DESC)
    WHERE decided_by IS NULL OR decided_by <> 'policy';
