-- One batch of the sweep after a clear by transaction $1: the entries after key $2 (at most $3,
-- in key order) that are older than it, with their index rows. Returns how many were removed,
-- how many were looked at, and the last key looked at.
WITH k AS MATERIALIZED (
    SELECT i.key FROM {{schema}}.entries AS i WHERE i.key > $2 ORDER BY i.key LIMIT $3
), dead AS (
    DELETE FROM {{schema}}.entries AS e
    WHERE e.key = ANY (ARRAY(SELECT k.key FROM k))
      AND NOT pg_visible_in_snapshot($1::text::xid8, e.snap)
    RETURNING e.key, e.tags
), unindexed AS (
    DELETE FROM {{schema}}.tags AS t USING dead
    WHERE t.key = dead.key AND t.tag = ANY (dead.tags)
)
SELECT (SELECT count(*) FROM dead), count(*), max(k.key) FROM k
