-- delete: $1 the key. Removes the entry and its index rows; says whether it was live (no row:
-- there was no entry).
WITH gone AS (
    DELETE FROM {{schema}}.entries AS e WHERE e.key = $1
    RETURNING e.key, e.tags, {{live}} AS live
), unindexed AS (
    DELETE FROM {{schema}}.tags AS t USING gone
    WHERE t.key = gone.key AND t.tag = ANY (gone.tags)
)
SELECT gone.live FROM gone
