-- Each request's action as rules compare it (storage/folding.py: `Refunds.Issue` is `refunds.issue`), so the
-- out-of-distribution checks learn from the approved requests of every spelling of an action, as the anomaly history
-- does since 0018 (`RequestQuery.folded_action`). The stores write it with each request; this fills it for the
-- requests written before. SQL cannot spell the fold (Unicode case folding), so migrations.py first fills
-- request_folds with every action whose fold differs, folded by Python; run as a plain script, it is empty and each
-- request's fold is its action as written.
CREATE TEMP TABLE IF NOT EXISTS request_folds (
    raw    TEXT PRIMARY KEY,
    folded TEXT NOT NULL
);

ALTER TABLE requests ADD COLUMN action_folded TEXT NOT NULL DEFAULT '';

UPDATE requests
SET action_folded = coalesce((SELECT f.folded FROM request_folds f WHERE f.raw = requests.action), action);

-- What the profile reads: the newest approved requests of one folded action.
CREATE INDEX requests_status_folded_created ON requests (status, action_folded, created_at DESC, id DESC);

CREATE TRIGGER requests_action_folded_fixed BEFORE UPDATE OF action_folded ON requests
BEGIN
    SELECT RAISE(ABORT, 'what a request asked for cannot be changed');
END;

DROP TABLE request_folds;
