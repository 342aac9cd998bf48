-- put_many: a batch of entries with distinct keys in one statement, each stored or refused as
-- `put.sql` (no token) or `fill.sql` (a token) would store or refuse it on its own. Arrays of
-- one element per entry: $1 keys, $2 values, $3 the clear tag and the tags (distinct) as array
-- literals, $4 TTL in ms (NULL: none), $5 the tags as array literals, $6 the token's snapshot
-- (NULL: a put without token), $7 epoch, $8 fill window in ms, $9 token time in ms (Unix
-- epoch); $10 the store's fill window in ms. Returns the keys stored. Every entry must end
-- within its window (the token's, or the statement's for a put without token), checked once
-- every row (and index row) is written: otherwise token_expired() raises and the whole batch
-- rolls back (the store then runs the entries one by one, as it does when a stored entry is
-- locked by another transaction, below, or the statement is chosen as a deadlock's victim).
WITH b AS MATERIALIZED (
    SELECT b.key, b.value, b.carried::text[] AS carried, b.ttl_ms, b.tags::text[] AS tags,
           b.snap::pg_snapshot AS snap, b.epoch, b.window_ms, b.issued_ms
    FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                $7::bigint[], $8::bigint[], $9::bigint[])
        AS b(key, value, carried, ttl_ms, tags, snap, epoch, window_ms, issued_ms)
), locked AS MATERIALIZED (
    -- The entries already stored, locked first, in key order, without waiting: should another
    -- transaction hold one (a writer whose trigger invalidated it, cleanup, a put), the
    -- statement fails at once (55P03) and the store runs the entries one by one. So the batch
    -- never waits for a row while it holds others, and cannot close a deadlock cycle with a
    -- writer's transaction.
    SELECT e.key FROM {{schema}}.entries AS e
    WHERE e.key = ANY ($1::text[])
    ORDER BY e.key
    FOR UPDATE NOWAIT
), up AS (
    INSERT INTO {{schema}}.entries AS e (key, value, tags, snap, expires_at, expires_minute)
    SELECT b.key, b.value, b.carried, coalesce(b.snap, pg_current_snapshot()),
           statement_timestamp() + b.ttl_ms * interval '1 millisecond',
           (floor(date_part('epoch', statement_timestamp()) * 1000) + b.ttl_ms)::bigint / 60000
    FROM b
    WHERE (SELECT count(*) FROM locked) >= 0
      AND (b.snap IS NULL
       OR (EXISTS (
               SELECT FROM {{schema}}.epoch AS ep
               WHERE ep.epoch = b.epoch AND ep.fill_window_ms = b.window_ms)
           AND floor(date_part('epoch', clock_timestamp()) * 1000)::bigint - b.issued_ms
               < b.window_ms
           AND b.issued_ms <= floor(date_part('epoch', clock_timestamp()) * 1000)::bigint + 1000
           AND NOT EXISTS (
               SELECT FROM {{schema}}.stamps AS x
               WHERE x.tag = ANY (b.carried)
                 AND x.xid >= pg_snapshot_xmin(b.snap)
                 AND NOT pg_visible_in_snapshot(x.xid, b.snap))))
    -- In key order, the order of the index scans of invalidations and other batches: rows are
    -- locked in one order, so these statements cannot deadlock on each other.
    ORDER BY b.key COLLATE "C"
    ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, tags = excluded.tags, snap = excluded.snap,
            expires_at = excluded.expires_at, expires_minute = excluded.expires_minute
    RETURNING e.key
), indexed AS (
    INSERT INTO {{schema}}.tags AS t (tag, key)
    SELECT unnest(b.tags), up.key FROM up JOIN b ON b.key = up.key
    ON CONFLICT (tag, key) DO UPDATE SET key = excluded.key WHERE false
    RETURNING 1
), written AS MATERIALIZED (
    -- Read first by every row's check below: every row is written before any window is checked.
    SELECT (SELECT count(*) FROM up) + (SELECT count(*) FROM indexed) AS n
)
SELECT up.key,
       CASE WHEN (SELECT w.n FROM written AS w) >= 0
             AND CASE WHEN b.snap IS NULL
                      THEN clock_timestamp() - statement_timestamp() < $10 * interval '1 millisecond'
                      ELSE floor(date_part('epoch', clock_timestamp()) * 1000)::bigint - b.issued_ms
                           < b.window_ms END
            THEN true ELSE {{schema}}.token_expired() END AS stored
FROM up JOIN b ON b.key = up.key
