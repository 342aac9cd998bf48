-- put without a token: the caller vouches the value is fresh. $1 key, $2 value, $3 the clear tag
-- and the tags (distinct), $4 TTL in ms (NULL: none), $5 the tags, $6 the fill window in ms.
-- Like a fill, it ends within the fill window of its snapshot, or token_expired() raises (the
-- store reports a timeout) and it rolls back: stamps are pruned on that assumption (see
-- PROTOCOL-store.md). `expires_minute`: the minute (since the Unix epoch) `expires_at` falls in.
WITH up AS (
    INSERT INTO {{schema}}.entries AS e (key, value, tags, snap, expires_at, expires_minute)
    VALUES ($1, $2, $3, pg_current_snapshot(),
            statement_timestamp() + $4 * interval '1 millisecond',
            (floor(date_part('epoch', statement_timestamp()) * 1000) + $4)::bigint / 60000)
    ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, tags = excluded.tags, snap = excluded.snap,
            expires_at = excluded.expires_at, expires_minute = excluded.expires_minute
    RETURNING e.key,
              CASE WHEN clock_timestamp() - statement_timestamp() < $6 * interval '1 millisecond'
                   THEN true ELSE {{schema}}.token_expired() END AS stored
)
{{index_rows}}
