-- Which policy decided each request: the version (the first 16 hex digits of the SHA-256 of the policy file's text,
-- or "defaults" without a file). Also in the request's created event, so `signoff audit verify` catches an edit.
-- NULL for requests recorded before this migration.

ALTER TABLE requests ADD COLUMN policy_version TEXT;

CREATE TRIGGER requests_policy_version_fixed BEFORE UPDATE OF policy_version ON requests
BEGIN
    SELECT RAISE(ABORT, 'what a request asked for cannot be changed');
END;
