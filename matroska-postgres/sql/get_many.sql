-- get_many: $1 the keys. A row per key, in their order: get's lookup for each, all in one
-- snapshot (see `src/batch.rs`).
SELECT v.value, CASE WHEN v.value IS NULL THEN {{schema}}.miss_token() END
FROM unnest($1::text[]) WITH ORDINALITY AS k(key, ord)
CROSS JOIN LATERAL (
    SELECT (SELECT e.value FROM {{schema}}.entries AS e WHERE e.key = k.key AND {{live}})
           AS value
    OFFSET 0
) AS v
ORDER BY k.ord
