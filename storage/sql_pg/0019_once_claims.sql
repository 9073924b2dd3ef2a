-- Keys that may be used once across every server on the database (replayed Slack requests):
-- storage/sql/0019_once_claims.sql on PostgreSQL (the comments there say what it is for).
CREATE TABLE once_claims (
    key ctext PRIMARY KEY,
    forget_after ctext NOT NULL
);

CREATE INDEX once_claims_forget_after ON once_claims (forget_after);
