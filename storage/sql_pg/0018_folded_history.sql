-- The anomaly history under folded names (review R7): storage/sql/0018_folded_history.sql on PostgreSQL (the
-- comments there say why). pg_db.py first fills history_folds with every action and field name in the history whose
-- fold (storage/folding.py, which SQL cannot spell) differs; variants merge, nothing is lost.
CREATE TEMP TABLE IF NOT EXISTS history_folds (
    kind   ctext NOT NULL,                         -- 'action' or 'field'
    raw    ctext NOT NULL,
    folded ctext NOT NULL,
    PRIMARY KEY (kind, raw)
);

-- Renamed in place: each number keeps its seq (the order it was approved in).
UPDATE action_values v SET action = f.folded FROM history_folds f WHERE f.kind = 'action' AND f.raw = v.action;

UPDATE action_values v SET field = f.folded FROM history_folds f WHERE f.kind = 'field' AND f.raw = v.field;

-- An agent known for any variant of an action is known for the action: one row per (agent, folded action).
CREATE TEMP TABLE history_known AS
SELECT DISTINCT a.agent_id, f.folded AS action
FROM agent_actions a JOIN history_folds f ON f.kind = 'action' AND f.raw = a.action;

DELETE FROM agent_actions a USING history_folds f WHERE f.kind = 'action' AND f.raw = a.action;

INSERT INTO agent_actions (agent_id, action) SELECT agent_id, action FROM history_known ON CONFLICT DO NOTHING;

DROP TABLE history_known;

DROP TABLE history_folds;
