-- exists: $1 the key. A row when a live entry is stored.
SELECT true FROM {{schema}}.entries AS e WHERE e.key = $1 AND {{live}}
