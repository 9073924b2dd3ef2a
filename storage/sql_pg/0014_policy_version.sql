-- Which policy decided each request: storage/sql/0014_policy_version.sql on PostgreSQL. NULL for requests recorded
-- before this migration; never changed.

ALTER TABLE requests ADD COLUMN policy_version ctext;

CREATE TRIGGER requests_policy_version_fixed BEFORE UPDATE OF policy_version ON requests
    FOR EACH ROW EXECUTE FUNCTION signoff_refuse('what a request asked for cannot be changed');
