-- Operations (issue 16): the model link of a request, and alerts that repeat while they hold.

-- The model behind a request: request_approval may name the model, the version and the decision_id resolve_model
-- returned (model, model_version, model_decision_id; all NULL when the agent named none). Checked when the request
-- is made, recorded in its created event, and fixed afterwards. The index serves model_stats' human outcomes.

ALTER TABLE requests ADD COLUMN model TEXT;
ALTER TABLE requests ADD COLUMN model_version TEXT;
ALTER TABLE requests ADD COLUMN model_decision_id TEXT;

CREATE INDEX requests_model_created ON requests (model, model_version, created_at) WHERE model IS NOT NULL;

CREATE TRIGGER requests_model_link_fixed BEFORE UPDATE OF model, model_version, model_decision_id ON requests
BEGIN
    SELECT RAISE(ABORT, 'what a request asked for cannot be changed');
END;

-- Alerts that repeat while they hold: when the rule's messages were last queued (the firing, or the last repeat),
-- and which repeat a queued message is (0: the firing or the resolved message itself).
ALTER TABLE alert_state ADD COLUMN notified_at TEXT;
ALTER TABLE alert_outbox ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alert_episodes ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
