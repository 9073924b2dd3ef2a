-- History text search (RequestQuery.text) without reading every row: trigram GIN indexes (pg_trgm) on the three
-- fields as the search folds them (ASCII letters only), used by its `LIKE '%words%'`. pg_trgm ships with
-- PostgreSQL and is a trusted extension: a database owner may create it. Where it cannot be created, the search
-- still works, reading every row, and a NOTICE says so; `CREATE EXTENSION pg_trgm` and `signoff db upgrade` after
-- a later migration do not add the indexes by themselves (create them as below).
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
    RAISE NOTICE 'pg_trgm is not available (%): history text search reads every row', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX requests_text_action ON requests USING gin '
                '(translate(action, ''ABCDEFGHIJKLMNOPQRSTUVWXYZ'', ''abcdefghijklmnopqrstuvwxyz'') gin_trgm_ops)';
        EXECUTE 'CREATE INDEX requests_text_summary ON requests USING gin '
                '(translate(summary, ''ABCDEFGHIJKLMNOPQRSTUVWXYZ'', ''abcdefghijklmnopqrstuvwxyz'') gin_trgm_ops)';
        EXECUTE 'CREATE INDEX requests_text_agent ON requests USING gin '
                '(translate(coalesce(agent_id, ''''), ''ABCDEFGHIJKLMNOPQRSTUVWXYZ'', ''abcdefghijklmnopqrstuvwxyz'')'
                ' gin_trgm_ops)';
    END IF;
END
$$;
