-- ttl: $1 the key. The remaining life in ms (rounded up, at least 1), or -1 when persistent;
-- no row: missing.
SELECT CASE WHEN e.expires_at IS NULL THEN -1::bigint
            ELSE greatest(1, ceil(extract(epoch FROM e.expires_at - clock_timestamp())
                                  * 1000))::bigint END
FROM {{schema}}.entries AS e WHERE e.key = $1 AND {{live}}
