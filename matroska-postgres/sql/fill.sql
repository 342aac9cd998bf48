-- put with a fill token: stored (one row returned) only when the token is of this epoch and
-- fill window, younger than the window (and not from the future), and no stamp of one of the
-- tags (or of the clear tag) was written by a transaction its snapshot does not see; no row:
-- stale. Should the token outlive the window while the statement runs (waiting for a row lock),
-- token_expired() raises and the put rolls back.
-- $1 key, $2 value, $3 the clear tag and the tags (distinct), $4 TTL in ms (NULL: none), $5 the
-- tags, $6 snapshot, $7 epoch, $8 fill window in ms, $9 token time in ms (Unix epoch).
WITH up AS (
    INSERT INTO {{schema}}.entries AS e (key, value, tags, snap, expires_at, expires_minute)
    SELECT $1, $2, $3, $6::text::pg_snapshot,
           statement_timestamp() + $4 * interval '1 millisecond',
           (floor(date_part('epoch', statement_timestamp()) * 1000) + $4)::bigint / 60000
    FROM {{schema}}.epoch AS ep
    WHERE ep.epoch = $7 AND ep.fill_window_ms = $8
      AND floor(date_part('epoch', clock_timestamp()) * 1000)::bigint - $9 < $8
      AND $9 <= floor(date_part('epoch', clock_timestamp()) * 1000)::bigint + 1000
      AND NOT EXISTS (
          SELECT FROM {{schema}}.stamps AS x
          WHERE x.tag = ANY ($3)
            AND x.xid >= pg_snapshot_xmin($6::text::pg_snapshot)
            AND NOT pg_visible_in_snapshot(x.xid, $6::text::pg_snapshot))
    ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, tags = excluded.tags, snap = excluded.snap,
            expires_at = excluded.expires_at, expires_minute = excluded.expires_minute
    RETURNING e.key,
              CASE WHEN floor(date_part('epoch', clock_timestamp()) * 1000)::bigint - $9 < $8
                   THEN true ELSE {{schema}}.token_expired() END AS stored
), indexed AS (
    {{index_rows}}
)
SELECT up.stored FROM up
