"""Named SQL for the PostgreSQL store: ``queries.py``'s statements in PostgreSQL's dialect (``%s`` parameters)."""

from __future__ import annotations

from signoff.storage.records import ascii_lower

REQUEST_COLUMNS = """
    r.id, r.action, r.summary, r.payload, r.payload_sha256, r.confidence, r.flags, r.agent_id,
    r.idempotency_key, r.status, r.decided_by, r.triggers, r.approvals_required, r.priority,
    r.created_at, r.expires_at, r.decided_at, r.note,
    (SELECT json_agg(json_build_object('reviewer', v.reviewer, 'verdict', v.verdict, 'comment', v.comment,
                                       'at', v.at, 'ids', v.reviewer_ids::json) ORDER BY v.at, v.reviewer)::text
       FROM votes AS v WHERE v.request_id = r.id) AS votes,
    r.channel, r.approvers, r.consumed_at, r.escalate_at, r.escalate_to, r.escalated_at, r.approved_payload,
    r.claimed_by, r.claimed_at, r.claim_expires_at, r.policy_version, r.model, r.model_version, r.model_decision_id
"""

#: What ``policy replay`` reads (``codec.recorded_from_row``), oldest first, one batch after a (created_at, id).
RECORDED_REQUESTS = """
SELECT id, action, summary, payload, confidence, flags, agent_id, status, decided_by, created_at, policy_version,
       approved_payload
  FROM requests WHERE (created_at, id) > (%s, %s) ORDER BY created_at, id LIMIT %s
"""

SELECT_REQUEST = f"SELECT {REQUEST_COLUMNS} FROM requests AS r WHERE r.id = %s"

LOCK_REQUEST = "SELECT 1 FROM requests WHERE id = %s FOR UPDATE"

SELECT_BY_IDEMPOTENCY_KEY = f"""
SELECT {REQUEST_COLUMNS} FROM requests AS r
 WHERE coalesce(r.agent_id, '') = %s AND r.idempotency_key = %s
"""

#: ``Store.create_request``'s ``refuse_approval_if_asked_before``: the newest request of the agent (``coalesce`` of
#: its id, ``''`` for none) with this ``payload_sha256`` that went to people (``records.went_to_people``): unless it
#: was approved, the approval is refused. Its conditions are those of migration 0022's partial index, word for word,
#: so the lookup is one probe of it in its order, however often the policy approved the same.
ASKED_BEFORE_WHERE = """
coalesce(r.agent_id, '') = %s AND r.payload_sha256 = %s AND (r.decided_by IS NULL OR r.decided_by <> 'policy')
"""
#: newest first; of requests made at the same instant, an approved one (people's yes stands over a tie)
ASKED_BEFORE_ORDER = "ORDER BY r.created_at DESC, r.status = 'approved' DESC, r.id DESC LIMIT 1"
ASKED_BEFORE = f"SELECT {REQUEST_COLUMNS} FROM requests AS r WHERE {ASKED_BEFORE_WHERE} {ASKED_BEFORE_ORDER}"

SELECT_REQUESTS = f"SELECT {REQUEST_COLUMNS} FROM requests AS r"

#: ``Priority.rank`` in SQL: urgent 3, high 2, normal 1, low 0.
PRIORITY_RANK = "(CASE r.priority WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'normal' THEN 1 ELSE 0 END)"

ORDER_BY_PRIORITY = f"{PRIORITY_RANK} DESC, r.expires_at, r.id"

#: ``RequestQuery.text``: in the action, the summary or the agent id, ASCII letters in any case (as
#: ``records.matches_text``; SQLite's ``lower`` folds ASCII only, so does this ``translate``). A ``LIKE`` on the
#: pattern ``text_pattern`` makes (``%`` and ``_`` escaped: the words are matched as they are), so the trigram indexes
#: of migration 0016 on these very expressions find the candidates instead of a walk of every row.
ASCII_LOWER = "translate({}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
#: ``RequestQuery.folded_action`` (bound to ``ascii_lower`` of it), as migration 0020 indexes the requests.
FOLDED_ACTION = f"{ASCII_LOWER.format('r.action')} = %s"
TEXT_MATCHES = (
    "("
    + " OR ".join(
        f"{ASCII_LOWER.format(column)} LIKE %s ESCAPE '\\'"
        for column in ("r.action", "r.summary", "coalesce(r.agent_id, '')")
    )
    + ")"
)


def text_pattern(text: str) -> str:
    """The ``LIKE`` pattern of ``TEXT_MATCHES`` for ``text``: ASCII-lowered, wildcards escaped, anywhere."""
    return "%" + ascii_lower(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


#: ``RequestQuery.reviewer``: a request this reviewer voted on.
VOTED_BY = "EXISTS (SELECT 1 FROM votes AS v WHERE v.request_id = r.id AND v.reviewer = %s)"

#: ``Store.human_outcomes``: per version of a model (model, since, until), what people made of its requests.
HUMAN_OUTCOMES = """
SELECT model_version, count(*),
       count(*) FILTER (WHERE decided_by IS NULL OR decided_by != 'policy'),
       count(*) FILTER (WHERE decided_by = 'human'),
       count(*) FILTER (WHERE decided_by = 'human' AND status = 'rejected'),
       count(*) FILTER (WHERE decided_by = 'human' AND status = 'approved' AND approved_payload IS NOT NULL)
  FROM requests
 WHERE model = %s AND model_version IS NOT NULL AND created_at >= %s AND created_at < %s
 GROUP BY model_version
"""

IDS_WITH_PREFIX = "SELECT id FROM requests WHERE id >= %s AND id < %s ORDER BY id LIMIT %s"

INSERT_REQUEST = """
INSERT INTO requests (id, action, summary, payload, payload_sha256, confidence, flags, agent_id,
                      idempotency_key, status, decided_by, triggers, approvals_required, priority,
                      created_at, expires_at, decided_at, note, channel, approvers, escalate_at, escalate_to,
                      policy_version, model, model_version, model_decision_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

UPDATE_REQUEST_STATE = """
UPDATE requests SET status = %s, decided_by = %s, decided_at = %s, note = %s, approved_payload = %s
 WHERE id = %s AND status = 'pending'
"""

CLAIM_REQUEST = """
UPDATE requests SET claimed_by = %s, claimed_at = %s, claim_expires_at = %s WHERE id = %s AND status = 'pending'
"""

CONSUME_REQUEST = """
UPDATE requests SET consumed_at = %s WHERE id = %s AND status = 'approved' AND consumed_at IS NULL
"""

ESCALATE_REQUEST = """
UPDATE requests SET escalated_at = %s WHERE id = %s AND status = 'pending' AND escalated_at IS NULL
"""

ESCALATIONS_DUE = """
SELECT id FROM requests WHERE status = 'pending' AND escalated_at IS NULL AND escalate_at <= %s
 ORDER BY escalate_at LIMIT %s
"""

INSERT_VOTE = """
INSERT INTO votes (request_id, reviewer, verdict, comment, at, reviewer_ids) VALUES (%s, %s, %s, %s, %s, %s)
"""

LAST_EVENT = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"

HEAD_SEQ = "SELECT coalesce(max(seq), 0) FROM events"

INSERT_EVENT = """
INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s)
"""

SELECT_EVENTS_AFTER = """
SELECT seq, kind, request_id, at, data, prev_hash, hash FROM events WHERE seq > %s ORDER BY seq LIMIT %s
"""

SELECT_REQUEST_EVENTS = """
SELECT seq, kind, request_id, at, data, prev_hash, hash FROM events WHERE request_id = %s ORDER BY seq
"""

PENDING_DUE = """
SELECT id FROM requests WHERE status = 'pending' AND expires_at <= %s ORDER BY expires_at LIMIT %s
"""

INSERT_AGENT_ACTION = "INSERT INTO agent_actions (agent_id, action) VALUES (%s, %s) ON CONFLICT DO NOTHING"

SEEN_AGENT_ACTION = "SELECT 1 FROM agent_actions WHERE agent_id = %s AND action = %s"

INSERT_ACTION_VALUE = "INSERT INTO action_values (action, field, value) VALUES (%s, %s, %s)"

RECENT_ACTION_VALUES = """
SELECT value FROM action_values WHERE action = %s AND field = %s ORDER BY seq DESC LIMIT %s
"""

INSERT_OUTBOX = "INSERT INTO outbox (request_id, created_at, next_attempt_at) VALUES (%s, %s, %s)"

_DUE = """
SELECT o.id, o.request_id, o.attempts, o.created_at,
       (SELECT max(m.id) FROM outbox AS m WHERE m.request_id = o.request_id AND m.delivered_at IS NULL)
  FROM outbox AS o
 WHERE o.delivered_at IS NULL AND o.next_attempt_at <= %s
   AND o.id = (SELECT min(f.id) FROM outbox AS f WHERE f.request_id = o.request_id AND f.delivered_at IS NULL)
 ORDER BY o.id LIMIT %s
"""

#: Is anything due? (no lock: the common case is nothing)
DUE_OUTBOX = _DUE

#: Claim what is due: rows another worker is claiming right now are skipped, not waited for.
CLAIM_OUTBOX = _DUE + " FOR UPDATE OF o SKIP LOCKED"

LEASE_OUTBOX = "UPDATE outbox SET next_attempt_at = %s, lease_owner = %s WHERE id = %s"

#: Renew a lease only while the token still holds it (0021)
RENEW_OUTBOX = "UPDATE outbox SET next_attempt_at = %s WHERE id = %s AND lease_owner = %s AND delivered_at IS NULL"

OUTBOX_REQUEST = "SELECT request_id FROM outbox WHERE id = %s AND delivered_at IS NULL FOR UPDATE"

OUTBOX_LEASED = """
SELECT request_id FROM outbox WHERE id = %s AND delivered_at IS NULL AND lease_owner = %s FOR UPDATE
"""

COMPLETE_OUTBOX = """
UPDATE outbox SET delivered_at = %s, attempts = attempts + 1
 WHERE request_id = %s AND id <= %s AND delivered_at IS NULL
"""

RETRY_OUTBOX = """
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = %s, last_error = %s
 WHERE id = %s AND delivered_at IS NULL
"""

SELECT_MESSAGE_REF = """
SELECT request_id, notifier, channel, ts, votes_posted, reserved_at FROM message_refs
 WHERE request_id = %s AND notifier = %s
"""

UPSERT_MESSAGE_REF = """
INSERT INTO message_refs (request_id, notifier, channel, ts, votes_posted, reserved_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (request_id, notifier) DO UPDATE SET channel = excluded.channel, ts = excluded.ts,
                                                 votes_posted = excluded.votes_posted,
                                                 reserved_at = excluded.reserved_at
"""

INSERT_MESSAGE_REF = """
INSERT INTO message_refs (request_id, notifier, channel, ts, votes_posted, reserved_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (request_id, notifier) DO NOTHING
"""

#: Compare and set: replace a message reference only if it is still the one read
SWAP_MESSAGE_REF = """
UPDATE message_refs SET channel = %s, ts = %s, votes_posted = %s, reserved_at = %s
 WHERE request_id = %s AND notifier = %s AND channel = %s AND ts = %s AND votes_posted = %s
   AND reserved_at IS NOT DISTINCT FROM %s
"""

#: SKIP LOCKED: a claim never waits on (or deadlocks with) another one pruning the same rows
FORGET_CLAIMS = """
DELETE FROM once_claims WHERE key IN (SELECT key FROM once_claims WHERE forget_after <= %s FOR UPDATE SKIP LOCKED)
"""

CLAIM_ONCE = "INSERT INTO once_claims (key, forget_after) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"

MARK_COLUMNS = "outbox_id, notifier, state, attempts, next_attempt_at, first_failed_at, last_error, at"

SELECT_MARKS = f"SELECT {MARK_COLUMNS} FROM outbox_deliveries WHERE outbox_id = %s ORDER BY notifier"

UPSERT_MARK = f"""
INSERT INTO outbox_deliveries ({MARK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (outbox_id, notifier) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
    next_attempt_at = excluded.next_attempt_at, first_failed_at = excluded.first_failed_at,
    last_error = excluded.last_error, at = excluded.at
"""

UNSETTLED_UPTO = """
SELECT id FROM outbox WHERE request_id = %s AND id >= %s AND id <= %s AND delivered_at IS NULL ORDER BY id
"""

SETTLE_OUTBOX = """
UPDATE outbox SET delivered_at = %s, attempts = attempts + 1 WHERE id = %s AND delivered_at IS NULL
"""

OUTBOX_ENTRIES = """
SELECT o.id, o.request_id, o.created_at, o.next_attempt_at, o.delivered_at IS NOT NULL
  FROM outbox AS o
 WHERE o.delivered_at IS NULL OR o.id IN (SELECT outbox_id FROM outbox_deliveries WHERE state = 'dead')
 ORDER BY o.id LIMIT %s
"""

DEAD_OUTBOX_IDS = "SELECT DISTINCT outbox_id FROM outbox_deliveries WHERE state = 'dead' ORDER BY outbox_id"

DROP_DEAD_MARKS = "DELETE FROM outbox_deliveries WHERE outbox_id = %s AND state = 'dead'"

REQUEUE_OUTBOX = "UPDATE outbox SET delivered_at = NULL, next_attempt_at = %s WHERE id = %s"

LEASE_OUTBOX_IF_UNSETTLED = """
UPDATE outbox SET next_attempt_at = %s, lease_owner = NULL WHERE id = %s AND delivered_at IS NULL
"""

# -- metrics (storage/metrics_queries.py has SQLite's; these read the same counters) -----------------------------

APPROVAL_COUNTS = """
SELECT metric, a, b, c, value FROM metric_counts
 WHERE metric IN ('requests', 'triggers', 'decision_seconds_bucket', 'decision_seconds_sum', 'escalations', 'votes',
                  'notifications')
"""
PENDING_BY_PRIORITY = "SELECT priority, count(*) FROM requests WHERE status = 'pending' GROUP BY priority"
OLDEST_PENDING = "SELECT min(created_at) FROM requests WHERE status = 'pending'"
DELIVERIES_STUCK = """
SELECT d.notifier, d.state, count(*) FROM outbox AS o JOIN outbox_deliveries AS d ON d.outbox_id = o.id
 WHERE o.delivered_at IS NULL AND d.state = 'pending' AND d.attempts > 0 GROUP BY 1, 2
UNION ALL
SELECT notifier, state, count(*) FROM outbox_deliveries WHERE state = 'dead' GROUP BY 1, 2
"""


#: ``Store.pending_queue``: what the review queue shows of a request (no payload; approving votes counted); read by
#: ``codec.queue_entry_from_row``
QUEUE_COLUMNS = """
    r.id, r.action, r.summary, r.agent_id, r.confidence, r.triggers, r.approvals_required,
    (SELECT count(*) FROM votes AS v WHERE v.request_id = r.id AND v.verdict = 'approve'),
    r.priority, r.expires_at, r.status, r.claimed_by, r.claimed_at, r.claim_expires_at
"""

SELECT_QUEUE = f"SELECT {QUEUE_COLUMNS} FROM requests AS r WHERE r.status = 'pending'"

#: the pending ones among some requests (their ids, an array)
SELECT_QUEUE_OF = f"{SELECT_QUEUE} AND r.id = ANY(%s)"

#: the requests changed after an event (``?`` seq), up to a bound: every change to a request appends an event
CHANGED_REQUESTS = "SELECT seq, request_id FROM events WHERE seq > %s ORDER BY seq LIMIT %s"
