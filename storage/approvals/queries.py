"""Named SQL for the SQLite store (one dialect; a PostgreSQL store would have its own module)."""

from __future__ import annotations

REQUEST_COLUMNS = """
    r.id, r.action, r.summary, r.payload, r.payload_sha256, r.confidence, r.flags, r.agent_id,
    r.idempotency_key, r.status, r.decided_by, r.triggers, r.approvals_required, r.priority,
    r.created_at, r.expires_at, r.decided_at, r.note,
    (SELECT json_group_array(json_object('reviewer', v.reviewer, 'verdict', v.verdict,
                                         'comment', v.comment, 'at', v.at, 'ids', json(v.reviewer_ids)))
       FROM (SELECT * FROM votes WHERE request_id = r.id ORDER BY at, reviewer) AS v) AS votes,
    r.channel, r.approvers, r.consumed_at, r.escalate_at, r.escalate_to, r.escalated_at, r.approved_payload,
    r.claimed_by, r.claimed_at, r.claim_expires_at, r.policy_version, r.model, r.model_version, r.model_decision_id
"""

#: What ``policy replay`` reads (``codec.recorded_from_row``), oldest first, one batch after a (created_at, id).
RECORDED_REQUESTS = """
SELECT id, action, summary, payload, confidence, flags, agent_id, status, decided_by, created_at, policy_version,
       approved_payload
  FROM requests WHERE (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?
"""

SELECT_REQUEST = f"SELECT {REQUEST_COLUMNS} FROM requests AS r WHERE r.id = ?"

SELECT_BY_IDEMPOTENCY_KEY = f"""
SELECT {REQUEST_COLUMNS} FROM requests AS r
 WHERE coalesce(r.agent_id, '') = ? AND r.idempotency_key = ?
"""

#: ``Store.create_request``'s ``refuse_approval_if_asked_before``: the newest request of the agent (``coalesce`` of
#: its id, ``''`` for none) with this ``payload_sha256`` that went to people (``records.went_to_people``): unless it
#: was approved, the approval is refused. Its conditions are those of migration 0022's partial index, word for word,
#: so the lookup is one probe of it in its order, however often the policy approved the same.
ASKED_BEFORE_WHERE = """
coalesce(r.agent_id, '') = ? AND r.payload_sha256 = ? AND (r.decided_by IS NULL OR r.decided_by <> 'policy')
"""
#: newest first; of requests made at the same instant, an approved one (people's yes stands over a tie)
ASKED_BEFORE_ORDER = "ORDER BY r.created_at DESC, r.status = 'approved' DESC, r.id DESC LIMIT 1"
ASKED_BEFORE = f"SELECT {REQUEST_COLUMNS} FROM requests AS r WHERE {ASKED_BEFORE_WHERE} {ASKED_BEFORE_ORDER}"

SELECT_REQUESTS = f"SELECT {REQUEST_COLUMNS} FROM requests AS r"

#: ``RequestQuery.folded_action`` (bound to ``ascii_lower`` of it): SQLite's ``lower`` folds ASCII letters only, as
#: ``records.ascii_lower``; migration 0020 indexes the requests by status and this expression.
FOLDED_ACTION = "lower(r.action) = ?"

#: ``Priority.rank`` in SQL: urgent 3, high 2, normal 1, low 0.
PRIORITY_RANK = "(CASE r.priority WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'normal' THEN 1 ELSE 0 END)"

ORDER_BY_PRIORITY = f"{PRIORITY_RANK} DESC, r.expires_at, r.id"

#: ``RequestQuery.text``: in the action, the summary or the agent id, ASCII letters in any case (as
#: ``records.matches_text``). instr, not LIKE: the words are matched as they are, with no wildcards to escape.
TEXT_MATCHES = (
    "(instr(lower(r.action), lower(?)) > 0 OR instr(lower(r.summary), lower(?)) > 0"
    " OR instr(lower(coalesce(r.agent_id, '')), lower(?)) > 0)"
)

#: ``RequestQuery.text`` of 3 characters or more, first: the ids of the requests whose fields the trigram index
#: (migration 0016) says may hold the words, as a phrase (``fts_phrase``), up to a bound (``?``). It may offer more
#: than match, never fewer, so ``TEXT_MATCHES`` still decides.
TEXT_CANDIDATES = "SELECT id FROM requests_text WHERE requests_text MATCH ? LIMIT ?"
#: few candidates (a JSON array of ids) as the rows to filter; ``CROSS JOIN`` keeps SQLite from walking every request
CANDIDATE_REQUESTS = "json_each(?) AS t CROSS JOIN requests AS r ON r.id = t.value"


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 phrase: with the trigram tokenizer, "occurs anywhere in a field"."""
    return '"' + text.replace('"', '""') + '"'


#: ``RequestQuery.reviewer``: a request this reviewer voted on.
VOTED_BY = "EXISTS (SELECT 1 FROM votes AS v WHERE v.request_id = r.id AND v.reviewer = ?)"

#: ``Store.human_outcomes``: per version of a model (``?`` model, since, until), what people made of its requests.
HUMAN_OUTCOMES = """
SELECT model_version, count(*),
       count(*) FILTER (WHERE decided_by IS NULL OR decided_by != 'policy'),
       count(*) FILTER (WHERE decided_by = 'human'),
       count(*) FILTER (WHERE decided_by = 'human' AND status = 'rejected'),
       count(*) FILTER (WHERE decided_by = 'human' AND status = 'approved' AND approved_payload IS NOT NULL)
  FROM requests
 WHERE model = ? AND model_version IS NOT NULL AND created_at >= ? AND created_at < ?
 GROUP BY model_version
"""

IDS_WITH_PREFIX = "SELECT id FROM requests WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"

INSERT_REQUEST = """
INSERT INTO requests (id, action, summary, payload, payload_sha256, confidence, flags, agent_id,
                      idempotency_key, status, decided_by, triggers, approvals_required, priority,
                      created_at, expires_at, decided_at, note, channel, approvers, escalate_at, escalate_to,
                      policy_version, model, model_version, model_decision_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

UPDATE_REQUEST_STATE = """
UPDATE requests SET status = ?, decided_by = ?, decided_at = ?, note = ?, approved_payload = ?
 WHERE id = ? AND status = 'pending'
"""

CLAIM_REQUEST = """
UPDATE requests SET claimed_by = ?, claimed_at = ?, claim_expires_at = ? WHERE id = ? AND status = 'pending'
"""

CONSUME_REQUEST = """
UPDATE requests SET consumed_at = ? WHERE id = ? AND status = 'approved' AND consumed_at IS NULL
"""

ESCALATE_REQUEST = """
UPDATE requests SET escalated_at = ? WHERE id = ? AND status = 'pending' AND escalated_at IS NULL
"""

ESCALATIONS_DUE = """
SELECT id FROM requests WHERE status = 'pending' AND escalated_at IS NULL AND escalate_at <= ?
 ORDER BY escalate_at LIMIT ?
"""

INSERT_VOTE = "INSERT INTO votes (request_id, reviewer, verdict, comment, at, reviewer_ids) VALUES (?, ?, ?, ?, ?, ?)"

LAST_EVENT = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"

INSERT_EVENT = """
INSERT INTO events (seq, kind, request_id, at, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)
"""

SELECT_EVENTS_AFTER = """
SELECT seq, kind, request_id, at, data, prev_hash, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?
"""

SELECT_REQUEST_EVENTS = """
SELECT seq, kind, request_id, at, data, prev_hash, hash FROM events WHERE request_id = ? ORDER BY seq
"""

PENDING_DUE = """
SELECT id FROM requests WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT ?
"""

INSERT_AGENT_ACTION = "INSERT OR IGNORE INTO agent_actions (agent_id, action) VALUES (?, ?)"

SEEN_AGENT_ACTION = "SELECT 1 FROM agent_actions WHERE agent_id = ? AND action = ?"

INSERT_ACTION_VALUE = "INSERT INTO action_values (action, field, value) VALUES (?, ?, ?)"

RECENT_ACTION_VALUES = """
SELECT value FROM action_values WHERE action = ? AND field = ? ORDER BY seq DESC LIMIT ?
"""

INSERT_OUTBOX = "INSERT INTO outbox (request_id, created_at, next_attempt_at) VALUES (?, ?, ?)"

DUE_OUTBOX = """
SELECT o.id, o.request_id, o.attempts, o.created_at,
       (SELECT MAX(m.id) FROM outbox AS m WHERE m.request_id = o.request_id AND m.delivered_at IS NULL)
  FROM outbox AS o
 WHERE o.delivered_at IS NULL AND o.next_attempt_at <= ?
   AND o.id = (SELECT MIN(f.id) FROM outbox AS f WHERE f.request_id = o.request_id AND f.delivered_at IS NULL)
 ORDER BY o.id LIMIT ?
"""

LEASE_OUTBOX = "UPDATE outbox SET next_attempt_at = ?, lease_owner = ? WHERE id = ?"

#: Renew a lease only while the token still holds it (0021)
RENEW_OUTBOX = "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND lease_owner = ? AND delivered_at IS NULL"

OUTBOX_REQUEST = "SELECT request_id FROM outbox WHERE id = ? AND delivered_at IS NULL"

OUTBOX_LEASED = """
SELECT request_id FROM outbox WHERE id = ? AND delivered_at IS NULL AND lease_owner = ?
"""

COMPLETE_OUTBOX = """
UPDATE outbox SET delivered_at = ?, attempts = attempts + 1
 WHERE request_id = ? AND id <= ? AND delivered_at IS NULL
"""

RETRY_OUTBOX = """
UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
 WHERE id = ? AND delivered_at IS NULL
"""

SELECT_MESSAGE_REF = """
SELECT request_id, notifier, channel, ts, votes_posted, reserved_at FROM message_refs
 WHERE request_id = ? AND notifier = ?
"""

UPSERT_MESSAGE_REF = """
INSERT INTO message_refs (request_id, notifier, channel, ts, votes_posted, reserved_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id, notifier) DO UPDATE SET channel = excluded.channel, ts = excluded.ts,
                                                 votes_posted = excluded.votes_posted,
                                                 reserved_at = excluded.reserved_at
"""

INSERT_MESSAGE_REF = """
INSERT INTO message_refs (request_id, notifier, channel, ts, votes_posted, reserved_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id, notifier) DO NOTHING
"""

#: Compare and set: replace a message reference only if it is still the one read
SWAP_MESSAGE_REF = """
UPDATE message_refs SET channel = ?, ts = ?, votes_posted = ?, reserved_at = ?
 WHERE request_id = ? AND notifier = ? AND channel = ? AND ts = ? AND votes_posted = ? AND reserved_at IS ?
"""

# -- keys used once across every process (0019) ------------------------------------------------------------------

FORGET_CLAIMS = "DELETE FROM once_claims WHERE forget_after <= ?"

CLAIM_ONCE = "INSERT INTO once_claims (key, forget_after) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"

# -- each notifier's delivery of each outbox row (0010) -------------------------------------------------------

MARK_COLUMNS = "outbox_id, notifier, state, attempts, next_attempt_at, first_failed_at, last_error, at"

SELECT_MARKS = f"SELECT {MARK_COLUMNS} FROM outbox_deliveries WHERE outbox_id = ? ORDER BY notifier"

UPSERT_MARK = f"""
INSERT INTO outbox_deliveries ({MARK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (outbox_id, notifier) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
    next_attempt_at = excluded.next_attempt_at, first_failed_at = excluded.first_failed_at,
    last_error = excluded.last_error, at = excluded.at
"""

UNSETTLED_UPTO = """
SELECT id FROM outbox WHERE request_id = ? AND id >= ? AND id <= ? AND delivered_at IS NULL ORDER BY id
"""

FINAL_MARKS = "SELECT notifier FROM outbox_deliveries WHERE outbox_id = ? AND state != 'pending'"

SETTLE_OUTBOX = "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ? AND delivered_at IS NULL"

OUTBOX_ENTRIES = """
SELECT o.id, o.request_id, o.created_at, o.next_attempt_at, o.delivered_at IS NOT NULL
  FROM outbox AS o
 WHERE o.delivered_at IS NULL OR o.id IN (SELECT outbox_id FROM outbox_deliveries WHERE state = 'dead')
 ORDER BY o.id LIMIT ?
"""

DEAD_OUTBOX_IDS = "SELECT DISTINCT outbox_id FROM outbox_deliveries WHERE state = 'dead' ORDER BY outbox_id"

DROP_DEAD_MARKS = "DELETE FROM outbox_deliveries WHERE outbox_id = ? AND state = 'dead'"

REQUEUE_OUTBOX = "UPDATE outbox SET delivered_at = NULL, next_attempt_at = ? WHERE id = ?"

LEASE_OUTBOX_IF_UNSETTLED = """
UPDATE outbox SET next_attempt_at = ?, lease_owner = NULL WHERE id = ? AND delivered_at IS NULL
"""


#: ``Store.pending_queue``: what the review queue shows of a request (no payload; approving votes counted); read by
#: ``codec.queue_entry_from_row``
QUEUE_COLUMNS = """
    r.id, r.action, r.summary, r.agent_id, r.confidence, r.triggers, r.approvals_required,
    (SELECT count(*) FROM votes AS v WHERE v.request_id = r.id AND v.verdict = 'approve'),
    r.priority, r.expires_at, r.status, r.claimed_by, r.claimed_at, r.claim_expires_at
"""

SELECT_QUEUE = f"SELECT {QUEUE_COLUMNS} FROM requests AS r WHERE r.status = 'pending'"

#: the pending ones among some requests (their ids as a JSON array)
SELECT_QUEUE_OF = f"{SELECT_QUEUE} AND r.id IN (SELECT value FROM json_each(?))"

#: the requests changed after an event (``?`` seq), up to a bound: every change to a request appends an event
CHANGED_REQUESTS = "SELECT seq, request_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?"

HEAD_SEQ = "SELECT coalesce(max(seq), 0) FROM events"
