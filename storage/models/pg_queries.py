"""Named SQL for the PostgreSQL model store: ``queries.py``'s statements in PostgreSQL's dialect."""

from __future__ import annotations

SELECT_MODEL = "SELECT name, salt, created_at, production, previous, weights, revision FROM models WHERE name = %s"

SELECT_MODELS = "SELECT name, salt, created_at, production, previous, weights, revision FROM models ORDER BY name"

SELECT_VERSIONS = """
SELECT model, version, endpoint, metadata, lineage, registered_at, registered_by, idempotency_key
  FROM model_versions WHERE model = %s ORDER BY seq
"""

INSERT_MODEL = """
INSERT INTO models (name, salt, created_at, production, previous, weights, revision)
VALUES (%s, %s, %s, NULL, NULL, '{}', 0)
"""

INSERT_VERSION = """
INSERT INTO model_versions (model, version, seq, endpoint, metadata, lineage, registered_at, registered_by,
                            idempotency_key)
VALUES (%s, %s, (SELECT count(*) FROM model_versions WHERE model = %s), %s, %s, %s, %s, %s, %s)
"""

UPDATE_SERVING = "UPDATE models SET production = %s, previous = %s, weights = %s, revision = %s WHERE name = %s"

CHANGE_COLUMNS = """
seq, model, kind, status, requested_at, requested_by, reason, payload, request_id, settled_at, outcome,
production, previous, weights
"""

_INSERTED_COLUMNS = CHANGE_COLUMNS.replace("seq, ", "", 1)

INSERT_CHANGE = f"""
INSERT INTO model_changes ({_INSERTED_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING seq
"""

SELECT_CHANGE = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE seq = %s"

SELECT_HISTORY = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE model = %s ORDER BY seq"

SELECT_PENDING = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE status = 'pending' ORDER BY seq"

SELECT_MODEL_PENDING = f"""
SELECT {CHANGE_COLUMNS} FROM model_changes WHERE status = 'pending' AND model = %s ORDER BY seq
"""

SETTLE_CHANGE = """
UPDATE model_changes SET status = %s, settled_at = %s, outcome = %s, production = %s, previous = %s, weights = %s
 WHERE seq = %s AND status = 'pending'
"""

BUMP_STATE = "UPDATE model_state SET version = version + 1 WHERE id = 1"

STATE_VERSION = "SELECT version FROM model_state WHERE id = 1"

LINKED_CHANGE = "SELECT 1 FROM model_changes WHERE request_id = %s"

GUARD_TOTALS = "SELECT model, count(*) FROM model_changes WHERE kind = 'guard' AND status = 'applied' GROUP BY model"

MODEL_COUNTS = """
SELECT metric, a, b, c, value FROM metric_counts
 WHERE metric IN ('model_inferences', 'model_errors', 'model_latency_ms_sum')
"""

UPSERT_MINUTE = """
INSERT INTO model_minutes (model, version, minute, count, errors, latency_sum, confidence_sum, confidence_count)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (model, version, minute) DO UPDATE SET
    count = model_minutes.count + excluded.count,
    errors = model_minutes.errors + excluded.errors,
    latency_sum = model_minutes.latency_sum + excluded.latency_sum,
    confidence_sum = model_minutes.confidence_sum + excluded.confidence_sum,
    confidence_count = model_minutes.confidence_count + excluded.confidence_count
"""

SELECT_SEEN = "SELECT seen FROM model_reservoirs WHERE model = %s AND version = %s AND period = %s"

UPSERT_SEEN = """
INSERT INTO model_reservoirs (model, version, period, seen) VALUES (%s, %s, %s, %s)
ON CONFLICT (model, version, period) DO UPDATE SET seen = excluded.seen
"""

UPSERT_SAMPLE = """
INSERT INTO model_samples (model, version, period, slot, minute, latency_ms) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (model, version, period, slot) DO UPDATE SET minute = excluded.minute, latency_ms = excluded.latency_ms
"""

PRUNE_SAMPLES = "DELETE FROM model_samples WHERE model = %s AND version = %s AND period < %s"

PRUNE_RESERVOIRS = "DELETE FROM model_reservoirs WHERE model = %s AND version = %s AND period < %s"

TELEMETRY_VERSIONS = "SELECT version FROM model_versions WHERE model = %s ORDER BY version"

SUM_MINUTES = """
SELECT count(*), sum(count)::bigint, sum(errors)::bigint, sum(latency_sum), sum(confidence_sum),
       sum(confidence_count)::bigint
  FROM model_minutes WHERE model = %s AND version = %s AND minute >= %s AND minute < %s
"""

COUNT_SAMPLES = """
SELECT count(*) FROM model_samples
 WHERE model = %s AND version = %s AND period BETWEEN %s AND %s AND minute >= %s AND minute < %s
"""

# The hash is storage.telemetry.sample_hash, written out in SQL: keep both the same.
SELECT_SAMPLES = """
SELECT s.latency_ms, r.seen
  FROM model_samples AS s
  JOIN model_reservoirs AS r ON r.model = s.model AND r.version = s.version AND r.period = s.period
 WHERE s.model = %s AND s.version = %s AND s.period BETWEEN %s AND %s AND s.minute >= %s AND s.minute < %s
   AND (s.period * 2654435761 + s.slot * 40503 + 12345) %% 10007 < %s
"""
