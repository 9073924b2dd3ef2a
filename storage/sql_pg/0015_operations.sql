-- Operations: storage/sql/0015_operations.sql on PostgreSQL (the comments there say what each column is for): the
-- model link of a request, fixed once made, and alerts that repeat while they hold.

ALTER TABLE requests ADD COLUMN model ctext;
ALTER TABLE requests ADD COLUMN model_version ctext;
ALTER TABLE requests ADD COLUMN model_decision_id ctext;

CREATE INDEX requests_model_created ON requests (model, model_version, created_at) WHERE model IS NOT NULL;

CREATE TRIGGER requests_model_link_fixed BEFORE UPDATE OF model, model_version, model_decision_id ON requests
    FOR EACH ROW EXECUTE FUNCTION signoff_refuse('what a request asked for cannot be changed');

ALTER TABLE alert_state ADD COLUMN notified_at ctext;
ALTER TABLE alert_outbox ADD COLUMN repeat bigint NOT NULL DEFAULT 0;
ALTER TABLE alert_episodes ADD COLUMN repeats bigint NOT NULL DEFAULT 0;
