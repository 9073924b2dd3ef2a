-- What the out-of-distribution profile reads: storage/sql/0020_folded_requests.sql on PostgreSQL (the comments there
-- say why). `lower()` would fold more than ASCII under some collations; this `translate` is `pg_queries.ASCII_LOWER`,
-- the expression the store compares, so it folds exactly as SQLite's `lower()` and `records.ascii_lower`.
CREATE INDEX requests_status_folded_created
    ON requests (status, translate(action, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'),
                 created_at DESC, id DESC);
