-- get: $1 the key. One row: the value on a hit; on a miss, NULL and the fill token
-- (miss_token() is only called on a miss; OFFSET 0 keeps the lookup from being evaluated twice).
SELECT v.value, CASE WHEN v.value IS NULL THEN {{schema}}.miss_token() END
FROM (
    SELECT (SELECT e.value FROM {{schema}}.entries AS e WHERE e.key = $1 AND {{live}})
           AS value
    OFFSET 0
) AS v
