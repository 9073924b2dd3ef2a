-- Each request's action as rules compare it: storage/sql/0021_folded_requests.sql on PostgreSQL (the comments there
-- say why). pg_db.py first fills request_folds with every action whose fold (storage/folding.py, which SQL cannot
-- spell) differs.
CREATE TEMP TABLE IF NOT EXISTS request_folds (
    raw    ctext PRIMARY KEY,
    folded ctext NOT NULL
);

ALTER TABLE requests ADD COLUMN action_folded ctext NOT NULL DEFAULT '';

UPDATE requests
SET action_folded = coalesce((SELECT f.folded FROM request_folds f WHERE f.raw = requests.action), action);

-- What the profile reads: the newest approved requests of one folded action.
CREATE INDEX requests_status_folded_created ON requests (status, action_folded, created_at DESC, id DESC);

CREATE TRIGGER requests_action_folded_fixed BEFORE UPDATE OF action_folded ON requests
    FOR EACH ROW EXECUTE FUNCTION signoff_refuse('what a request asked for cannot be changed');

DROP TABLE request_folds;
