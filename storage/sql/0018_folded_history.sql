-- The anomaly history under folded names (review R7). Rules match `Refunds.Issue` as `refunds.issue` and read
-- `Amount` as `amount`; the history the anomaly check reads (the numbers per action and field, and the actions known
-- per agent for novelty) was kept under the exact strings, so a change of case started from an empty history. The
-- stores now keep and read it under the rules' folds (storage/folding.py); this folds the rows written before.
-- SQL cannot spell those folds (Unicode case folding, NFKC), so migrations.py first fills history_folds with every
-- action and field name in the history whose fold differs, folded by Python; run as a plain script, it is empty
-- and nothing changes. Nothing is lost: variants merge.
CREATE TEMP TABLE IF NOT EXISTS history_folds (
    kind   TEXT NOT NULL,                          -- 'action' or 'field'
    raw    TEXT NOT NULL,
    folded TEXT NOT NULL,
    PRIMARY KEY (kind, raw)
);

-- The numbers are renamed in place: each keeps its seq, so merged variants stay in the order they were approved
-- and the newest 200 of the merged history are the newest of all its variants.
UPDATE action_values
SET action = (SELECT f.folded FROM history_folds f WHERE f.kind = 'action' AND f.raw = action_values.action)
WHERE action IN (SELECT raw FROM history_folds WHERE kind = 'action');

UPDATE action_values
SET field = (SELECT f.folded FROM history_folds f WHERE f.kind = 'field' AND f.raw = action_values.field)
WHERE field IN (SELECT raw FROM history_folds WHERE kind = 'field');

-- An agent known for any variant of an action is known for the action: one row per (agent, folded action).
CREATE TEMP TABLE history_known AS
SELECT a.agent_id, f.folded AS action
FROM agent_actions a JOIN history_folds f ON f.kind = 'action' AND f.raw = a.action;

DELETE FROM agent_actions WHERE action IN (SELECT raw FROM history_folds WHERE kind = 'action');

INSERT OR IGNORE INTO agent_actions (agent_id, action) SELECT agent_id, action FROM history_known;

DROP TABLE history_known;

DROP TABLE history_folds;
