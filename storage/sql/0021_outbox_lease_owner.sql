-- Who holds an outbox row's lease: a token drawn for each claim (Store.claim_outbox). A worker renews the lease
-- with its token just before each delivery, and its result is recorded only while the token still holds, so a
-- worker whose batch outlived the lease neither sends a row another server has taken over nor overwrites what that
-- server recorded. NULL: nobody holds it (never claimed, or its last result recorded).
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
