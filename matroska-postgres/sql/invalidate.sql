-- invalidate: stamps the tags ($1, distinct) and removes the dependents found through at most $2
-- index rows, in one statement (and transaction): every entry this statement sees is older than
-- the invalidation. The index rows stay (the next fill of the key reuses them). Returns the
-- transaction (for the next batches), how many entries were removed and how many index rows
-- were looked at.
WITH k AS MATERIALIZED (
    SELECT t.key FROM {{schema}}.tags AS t WHERE t.tag = ANY ($1) LIMIT $2
), stamped AS (
    INSERT INTO {{schema}}.stamps (tag, xid) SELECT unnest($1::text[]), pg_current_xact_id()
), dead AS (
    DELETE FROM {{schema}}.entries AS e
    WHERE e.key = ANY (ARRAY(SELECT k.key FROM k)) AND e.tags && $1
    RETURNING 1
)
SELECT pg_current_xact_id()::text, (SELECT count(*) FROM dead), count(*) FROM k
