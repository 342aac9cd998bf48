-- The next batch of an invalidation by transaction $2 (committed), for one tag $1: the
-- dependents older than it among the keys of at most $4 index rows after key $3. Returns how many
-- entries were removed, how many index rows were looked at, and the last key.
WITH k AS MATERIALIZED (
    SELECT t.key FROM {{schema}}.tags AS t
    WHERE t.tag = $1 AND t.key > $3 ORDER BY t.key LIMIT $4
), dead AS (
    DELETE FROM {{schema}}.entries AS e
    WHERE e.key = ANY (ARRAY(SELECT k.key FROM k))
      AND $1 = ANY (e.tags)
      AND NOT pg_visible_in_snapshot($2::text::xid8, e.snap)
    RETURNING 1
)
SELECT (SELECT count(*) FROM dead), count(*), max(k.key) FROM k
