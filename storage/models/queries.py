"""Named SQL for the SQLite model store."""

from __future__ import annotations

SELECT_MODEL = "SELECT name, salt, created_at, production, previous, weights, revision FROM models WHERE name = ?"

SELECT_MODELS = "SELECT name, salt, created_at, production, previous, weights, revision FROM models ORDER BY name"

SELECT_VERSIONS = """
SELECT model, version, endpoint, metadata, lineage, registered_at, registered_by, idempotency_key
  FROM model_versions WHERE model = ? ORDER BY seq
"""

INSERT_MODEL = """
INSERT INTO models (name, salt, created_at, production, previous, weights, revision)
VALUES (?, ?, ?, NULL, NULL, '{}', 0)
"""

INSERT_VERSION = """
INSERT INTO model_versions (model, version, seq, endpoint, metadata, lineage, registered_at, registered_by,
                            idempotency_key)
VALUES (?, ?, (SELECT count(*) FROM model_versions WHERE model = ?), ?, ?, ?, ?, ?, ?)
"""

UPDATE_SERVING = "UPDATE models SET production = ?, previous = ?, weights = ?, revision = ? WHERE name = ?"

CHANGE_COLUMNS = """
seq, model, kind, status, requested_at, requested_by, reason, payload, request_id, settled_at, outcome,
production, previous, weights
"""

INSERT_CHANGE = f"INSERT INTO model_changes ({CHANGE_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

SELECT_CHANGE = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE seq = ?"

SELECT_HISTORY = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE model = ? ORDER BY seq"

#: the canary guard's applied changes, per model (``signoff_canary_guard_actions_total``)
GUARD_TOTALS = "SELECT model, count(*) FROM model_changes WHERE kind = 'guard' AND status = 'applied' GROUP BY model"

SELECT_PENDING = f"SELECT {CHANGE_COLUMNS} FROM model_changes WHERE status = 'pending' ORDER BY seq"

SELECT_MODEL_PENDING = f"""
SELECT {CHANGE_COLUMNS} FROM model_changes WHERE status = 'pending' AND model = ? ORDER BY seq
"""

SETTLE_CHANGE = """
UPDATE model_changes SET status = ?, settled_at = ?, outcome = ?, production = ?, previous = ?, weights = ?
 WHERE seq = ? AND status = 'pending'
"""

BUMP_STATE = "UPDATE model_state SET version = version + 1 WHERE id = 1"

STATE_VERSION = "SELECT version FROM model_state WHERE id = 1"

UPSERT_MINUTE = """
INSERT INTO model_minutes (model, version, minute, count, errors, latency_sum, confidence_sum, confidence_count)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (model, version, minute) DO UPDATE SET
    count = count + excluded.count,
    errors = errors + excluded.errors,
    latency_sum = latency_sum + excluded.latency_sum,
    confidence_sum = confidence_sum + excluded.confidence_sum,
    confidence_count = confidence_count + excluded.confidence_count
"""

SELECT_SEEN = "SELECT seen FROM model_reservoirs WHERE model = ? AND version = ? AND period = ?"

UPSERT_SEEN = """
INSERT INTO model_reservoirs (model, version, period, seen) VALUES (?, ?, ?, ?)
ON CONFLICT (model, version, period) DO UPDATE SET seen = excluded.seen
"""

UPSERT_SAMPLE = """
INSERT OR REPLACE INTO model_samples (model, version, period, slot, minute, latency_ms) VALUES (?, ?, ?, ?, ?, ?)
"""

PRUNE_SAMPLES = "DELETE FROM model_samples WHERE model = ? AND version = ? AND period < ?"

PRUNE_RESERVOIRS = "DELETE FROM model_reservoirs WHERE model = ? AND version = ? AND period < ?"

TELEMETRY_VERSIONS = "SELECT version FROM model_versions WHERE model = ? ORDER BY version"

SUM_MINUTES = """
SELECT count(*), sum(count), sum(errors), sum(latency_sum), sum(confidence_sum), sum(confidence_count)
  FROM model_minutes WHERE model = ? AND version = ? AND minute >= ? AND minute < ?
"""

COUNT_SAMPLES = """
SELECT count(*) FROM model_samples
 WHERE model = ? AND version = ? AND period BETWEEN ? AND ? AND minute >= ? AND minute < ?
"""

# The hash is storage.telemetry.sample_hash, written out in SQL: keep both the same.
SELECT_SAMPLES = """
SELECT s.latency_ms, r.seen
  FROM model_samples AS s
  JOIN model_reservoirs AS r ON r.model = s.model AND r.version = s.version AND r.period = s.period
 WHERE s.model = ? AND s.version = ? AND s.period BETWEEN ? AND ? AND s.minute >= ? AND s.minute < ?
   AND (s.period * 2654435761 + s.slot * 40503 + 12345) % 10007 < ?
"""
