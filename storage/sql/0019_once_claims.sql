-- Keys that may be used once across every process on the database (Store.claim_once): today the signatures of
-- Slack's signed interactivity requests, so a captured request replayed within Slack's five-minute signature
-- window is refused by whichever replica it reaches, not only by the one that saw it first. A key is kept until
-- forget_after (after its signature can no longer be valid); a claim deletes the claims already past it.
-- Transient: `signoff db copy` leaves them out.
CREATE TABLE once_claims (
    key TEXT PRIMARY KEY,
    forget_after TEXT NOT NULL
);

CREATE INDEX once_claims_forget_after ON once_claims (forget_after);
