-- Matroska PgStore, schema version 1.
--
-- Placeholders, substituted by `PgStore::migrate` (never by string pasting of user input):
--   {{schema}}       the quoted schema identifier, e.g. "matroska"
--   {{persistence}}  UNLOGGED (the default) or nothing (LOGGED)
--
-- The protocol (PROTOCOL-store.md, next to this directory), in PostgreSQL terms:
--   * an invalidation appends one stamp row per tag, recording the invalidating transaction
--     (pg_current_xact_id()); no row is ever updated by two writers, so writers invalidating the
--     same tag never wait on each other, even inside long transactions (change-capture triggers);
--   * a miss hands out a fill token carrying the reader's snapshot (pg_current_snapshot());
--   * a stamp written by a transaction that is NOT visible in a fill's snapshot is newer than the
--     fill: `put` rejects the token, and `get` treats an entry whose stored fill snapshot does not
--     see a stamp of one of its tags as a miss. Sequences are not transactional; snapshots are.
--   * clear() stamps the reserved tag '*' (no canonical tag can be '*'), which every entry
--     carries (first in entries.tags): one mechanism for invalidations and clears;
--   * `epoch` (always UNLOGGED) is emptied by crash recovery and is absent on a promoted standby:
--     a new random epoch then rejects every token issued before.
--
-- The reverse index (tag -> keys) is the table `tags`, maintained lazily: a put adds the rows it
-- lacks (usually none: a re-put or a refill finds its rows in place), an invalidation removes
-- entries but not their index rows (the next fill of the key reuses them), and cleanup removes
-- the rows left over (strays). entries.tags is authoritative; a stray row never removes an
-- entry that does not carry its tag. A missing row is not enough for an invalidation to find the
-- entry: its stamps keep it from being served, and (from schema version 2 on, see
-- 002_cleanup_pass.sql) cleanup finds it through entries.tags before it prunes them.
--
-- The statements of the hot paths (get, put, invalidate) are plain SQL sent by the store as
-- prepared statements (see ../sql/); the functions below are the SQL-callable API
-- (invalidate(text[]) for change-capture triggers) and the cold paths.

CREATE TABLE {{schema}}.meta (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    persistence    text NOT NULL CHECK (persistence IN ('unlogged', 'logged')),
    fill_window_ms bigint NOT NULL CHECK (fill_window_ms > 0),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNLOGGED TABLE {{schema}}.epoch (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch          bigint NOT NULL,
    -- A copy of meta.fill_window_ms, read with the epoch by misses and fills.
    fill_window_ms bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Where cleanup's sweep of stray index rows goes on, in (tag, key) order.
    stray_tag      text COLLATE "C" NOT NULL DEFAULT '',
    stray_key      text COLLATE "C" NOT NULL DEFAULT ''
);

-- fillfactor 90: room on each page, so that re-putting a key is a HOT update (no index is
-- written: no index covers a column such a put changes). Keys and tags are identifiers,
-- compared byte by byte (COLLATE "C"): cheaper than the database's collation.
CREATE {{persistence}} TABLE {{schema}}.entries (
    key            text COLLATE "C" PRIMARY KEY,
    value          bytea NOT NULL,
    -- The clear tag '*', then the entry's tags, distinct (authoritative; the table `tags` below
    -- is the index, without '*').
    tags           text[] COLLATE "C" NOT NULL,
    -- The snapshot of the miss that started the fill (or of the put without token).
    snap           pg_snapshot NOT NULL,
    expires_at     timestamptz,
    -- The minute expires_at falls in (Unix epoch minutes): what cleanup finds expired entries
    -- by. An index on expires_at itself would change with every put with a TTL and rule out HOT
    -- updates; this one changes at most once a minute for a key re-put with the same TTL.
    expires_minute bigint
) WITH (fillfactor = 90);
CREATE INDEX entries_expiry ON {{schema}}.entries (expires_minute)
    WHERE expires_minute IS NOT NULL;

-- The reverse index: tag -> keys of the entries that carry it (and strays, see above).
CREATE {{persistence}} TABLE {{schema}}.tags (
    tag text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    PRIMARY KEY (tag, key)
);

CREATE {{persistence}} TABLE {{schema}}.stamps (
    tag          text COLLATE "C" NOT NULL,
    -- The invalidating transaction.
    xid          xid8 NOT NULL,
    stamped_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When cleanup first saw the stamp committed; it is pruned two fill windows later.
    confirmed_at timestamptz,
    -- Set when the stamp joins the sweep of its tag's dependents that precedes pruning (for the
    -- clear tag '*', the cursor of that sweep over all entries, in key order).
    sweep_key    text COLLATE "C",
    PRIMARY KEY (tag, xid)
);
CREATE INDEX stamps_confirmed ON {{schema}}.stamps (confirmed_at) WHERE confirmed_at IS NOT NULL;

-- A random, non-zero identifier (epochs).
CREATE FUNCTION {{schema}}.random_id() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT (floor(random() * 9007199254740990) + 1)::bigint
$$;

-- Creates the epoch row when it is missing (first use, or after crash recovery emptied the
-- unlogged tables).
CREATE FUNCTION {{schema}}.ensure_state() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{schema}}.epoch (epoch, fill_window_ms)
    SELECT {{schema}}.random_id(), m.fill_window_ms FROM {{schema}}.meta m
    ON CONFLICT (id) DO NOTHING;
END
$$;

-- Records the namespace's settings; called by every migrate().
CREATE FUNCTION {{schema}}.configure(p_persistence text, p_fill_window_ms bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_persistence text;
BEGIN
    INSERT INTO {{schema}}.meta (persistence, fill_window_ms)
    VALUES (p_persistence, p_fill_window_ms)
    ON CONFLICT (id) DO NOTHING;
    SELECT m.persistence INTO v_persistence FROM {{schema}}.meta m;
    IF v_persistence <> p_persistence THEN
        RAISE EXCEPTION 'the schema holds % tables but the store is configured as %',
            v_persistence, p_persistence
            USING ERRCODE = 'MKP01';
    END IF;
    UPDATE {{schema}}.meta SET fill_window_ms = p_fill_window_ms
    WHERE fill_window_ms <> p_fill_window_ms;
    PERFORM {{schema}}.ensure_state();
    UPDATE {{schema}}.epoch SET fill_window_ms = p_fill_window_ms
    WHERE fill_window_ms <> p_fill_window_ms;
END
$$;

-- The fill token of a miss, as text: 'epoch:fill_window_ms:now_ms:snapshot'; NULL when the
-- epoch row is missing (crash recovery emptied it; the next fill recreates it). Called by the
-- store's get statement on a miss only; a function so that a hit plans and runs none of it.
CREATE FUNCTION {{schema}}.miss_token() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_epoch bigint;
    v_window bigint;
BEGIN
    SELECT ep.epoch, ep.fill_window_ms INTO v_epoch, v_window FROM {{schema}}.epoch ep;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN v_epoch::text || ':' || v_window::text || ':'
        || floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint::text || ':'
        || pg_current_snapshot()::text;
END
$$;

-- Raised by a put whose fill token outlived the fill window while it ran (it rolls back): stamps
-- are pruned on the assumption that no put with an older token can commit afterwards.
CREATE FUNCTION {{schema}}.token_expired() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the fill token expired during the put' USING ERRCODE = 'MKS01';
END
$$;

-- Stamps tags as invalidated by the current transaction; returns the transaction's id (NULL for
-- no tags).
--
-- This is the function change-capture triggers call inside the writer's transaction: it only
-- appends rows (no row another writer could hold), and removes nothing, so writers of the same
-- tags never wait on each other and a rollback has nothing to restore. Once the transaction
-- commits, no entry filled from a snapshot that does not see it is served, and no such fill is
-- stored. The dependents are removed by cleanup() (or replaced by the next fill).
CREATE FUNCTION {{schema}}.invalidate(p_tags text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(p_tags), 0) = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO {{schema}}.stamps AS s (tag, xid)
    SELECT DISTINCT t.tag, pg_current_xact_id()
    FROM unnest(p_tags) AS t(tag)
    WHERE t.tag IS NOT NULL
    ON CONFLICT (tag, xid) DO UPDATE SET stamped_at = clock_timestamp();
    RETURN pg_current_xact_id()::text::bigint;
END
$$;

-- One bounded round of housekeeping; `PgStore::cleanup` calls it until `more` is false.
-- (Replaced by schema version 2, 002_cleanup_pass.sql: this version's sweep found a tag's
-- dependents through the index only, so pruning could revive an entry whose index row was lost.)
--   expired: expired entries removed (at most p_budget), with their index rows;
--   swept:   entries removed by the sweeps that precede pruning a stamp;
--   pruned:  stamps removed. A stamp is confirmed when cleanup first sees it committed and pruned
--            two fill windows later (every token that could predate it has expired by then),
--            after a sweep removed the entries that carry its tag and are older than it (fills
--            that raced with the invalidation, and the dependents of invalidations made inside
--            writers' transactions), so that pruning it can never bring a stale entry back. For
--            the clear tag '*', the sweep walks every entry, in key order;
--   strays:  index rows removed whose entry is gone or no longer carries the tag (at most
--            p_budget rows looked at, from a cursor that goes round the index over time).
--
-- Index rows are only ever deleted together with their entry (in the same statement, which
-- holds the entry's row lock) or, for strays, after being locked and found stray again in a
-- later statement: a put locks the rows it finds in place (ON CONFLICT DO UPDATE .. WHERE
-- false), so a stray that a put is reusing is never deleted under it.
CREATE FUNCTION {{schema}}.cleanup(p_budget integer,
    OUT expired bigint, OUT swept bigint, OUT pruned bigint, OUT strays bigint,
    OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_budget integer := greatest(coalesce(p_budget, 1), 1);
    v_window bigint;
    v_cut timestamptz;
    v_tag text;
    v_after text;
    v_rows bigint;
    v_last text;
    v_n bigint;
    v_dead bigint;
    v_stray_tag text;
    v_stray_key text;
    v_tags text[];
    v_keys text[];
BEGIN
    swept := 0;
    pruned := 0;
    strays := 0;
    more := false;

    -- 1. Expired entries (the entries of past minutes, and the expired ones of this minute), and
    --    their index rows.
    WITH x AS (
        SELECT e.key FROM {{schema}}.entries e
        WHERE e.expires_minute <= floor(extract(epoch FROM clock_timestamp()) / 60)::bigint
          AND e.expires_at <= clock_timestamp()
        LIMIT v_budget
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        DELETE FROM {{schema}}.entries e
        WHERE e.key = ANY (ARRAY(SELECT x.key FROM x))
          AND e.expires_at <= clock_timestamp()
        RETURNING e.key, e.tags
    ), dead_index AS (
        DELETE FROM {{schema}}.tags t USING dead d
        WHERE t.key = d.key AND t.tag = ANY (d.tags)
    )
    SELECT count(*) INTO expired FROM dead;
    more := more OR expired >= v_budget;

    -- 2. Confirm the stamps of committed invalidations.
    UPDATE {{schema}}.stamps s SET confirmed_at = clock_timestamp()
    FROM (SELECT u.tag, u.xid FROM {{schema}}.stamps u
          WHERE u.confirmed_at IS NULL
          LIMIT v_budget
          FOR UPDATE SKIP LOCKED) AS u
    WHERE s.tag = u.tag AND s.xid = u.xid;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    more := more OR v_n >= v_budget;

    -- 3. Sweep, then prune, the stamps confirmed more than two fill windows ago; one tag at a
    --    time, within the budget, in key order from the cursor the stamps keep.
    SELECT m.fill_window_ms INTO v_window FROM {{schema}}.meta m;
    v_cut := clock_timestamp() - 2 * coalesce(v_window, 60000) * interval '1 millisecond';
    WHILE v_budget > 0 LOOP
        SELECT s.tag INTO v_tag FROM {{schema}}.stamps s
        WHERE s.confirmed_at < v_cut
        ORDER BY s.confirmed_at
        LIMIT 1;
        EXIT WHEN NOT FOUND;
        -- Stamps that join the sweep of their tag restart it from the first key.
        UPDATE {{schema}}.stamps s SET sweep_key = ''
        WHERE s.tag = v_tag AND s.confirmed_at < v_cut AND s.sweep_key IS NULL;
        SELECT min(s.sweep_key) INTO v_after FROM {{schema}}.stamps s
        WHERE s.tag = v_tag AND s.sweep_key IS NOT NULL;
        -- The keys to look at: those of the tag's index rows, or every key for the clear tag.
        IF v_tag = '*' THEN
            SELECT array_agg(i.key ORDER BY i.key) INTO v_keys FROM (
                SELECT e.key FROM {{schema}}.entries e
                WHERE e.key > v_after ORDER BY e.key LIMIT v_budget) AS i;
        ELSE
            SELECT array_agg(i.key ORDER BY i.key) INTO v_keys FROM (
                SELECT t.key FROM {{schema}}.tags t
                WHERE t.tag = v_tag AND t.key > v_after ORDER BY t.key LIMIT v_budget) AS i;
        END IF;
        v_rows := coalesce(cardinality(v_keys), 0);
        v_last := v_keys[v_rows];
        WITH dead AS (
            DELETE FROM {{schema}}.entries e
            WHERE e.key = ANY (v_keys)
              AND v_tag = ANY (e.tags)
              AND EXISTS (
                  SELECT 1 FROM {{schema}}.stamps s
                  WHERE s.tag = v_tag AND s.sweep_key IS NOT NULL
                    AND NOT pg_visible_in_snapshot(s.xid, e.snap))
            RETURNING e.key, e.tags
        ), dead_index AS (
            DELETE FROM {{schema}}.tags t USING dead d
            WHERE t.key = d.key AND t.tag = ANY (d.tags)
        )
        SELECT count(*) INTO v_dead FROM dead;
        swept := swept + v_dead;
        v_budget := v_budget - greatest(v_rows, 1)::integer;
        IF v_rows < v_budget + greatest(v_rows, 1) THEN
            -- The sweep of the tag is complete: the swept stamps can go.
            DELETE FROM {{schema}}.stamps s WHERE s.tag = v_tag AND s.sweep_key IS NOT NULL;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            pruned := pruned + v_n;
        ELSE
            UPDATE {{schema}}.stamps s SET sweep_key = v_last
            WHERE s.tag = v_tag AND s.sweep_key IS NOT NULL;
            more := true;
            EXIT;
        END IF;
    END LOOP;
    IF v_budget <= 0 THEN
        more := true;
    END IF;

    -- 4. Stray index rows: look at the next p_budget rows after the cursor; lock the ones
    --    without an entry that carries their tag (skipping rows a put in flight holds), then,
    --    in a new statement (a new snapshot), delete those that are still stray.
    SELECT ep.stray_tag, ep.stray_key INTO v_stray_tag, v_stray_key FROM {{schema}}.epoch ep;
    IF FOUND THEN
        SELECT array_agg(b.tag ORDER BY b.tag, b.key), array_agg(b.key ORDER BY b.tag, b.key)
        INTO v_tags, v_keys
        FROM (SELECT t.tag, t.key FROM {{schema}}.tags t
              WHERE (t.tag, t.key) > (v_stray_tag, v_stray_key)
              ORDER BY t.tag, t.key
              LIMIT greatest(coalesce(p_budget, 1), 1)) AS b;
        v_rows := coalesce(cardinality(v_keys), 0);
        IF v_rows < greatest(coalesce(p_budget, 1), 1) THEN
            -- The end of the index: start again from the beginning next time.
            UPDATE {{schema}}.epoch SET stray_tag = '', stray_key = '';
        ELSE
            UPDATE {{schema}}.epoch SET stray_tag = v_tags[v_rows], stray_key = v_keys[v_rows];
        END IF;
        SELECT array_agg(l.tag), array_agg(l.key) INTO v_tags, v_keys
        FROM (SELECT t.tag, t.key
              FROM {{schema}}.tags t
              JOIN unnest(v_tags, v_keys) AS c(tag, key) ON t.tag = c.tag AND t.key = c.key
              WHERE NOT EXISTS (
                  SELECT 1 FROM {{schema}}.entries e
                  WHERE e.key = c.key AND c.tag = ANY (e.tags))
              FOR UPDATE OF t SKIP LOCKED) AS l;
        IF v_tags IS NOT NULL THEN
            DELETE FROM {{schema}}.tags t
            USING unnest(v_tags, v_keys) AS c(tag, key)
            WHERE t.tag = c.tag AND t.key = c.key
              AND NOT EXISTS (
                  SELECT 1 FROM {{schema}}.entries e
                  WHERE e.key = c.key AND c.tag = ANY (e.tags));
            GET DIAGNOSTICS strays = ROW_COUNT;
            -- Keep going while strays are dense.
            more := more OR strays * 10 >= greatest(coalesce(p_budget, 1), 1);
        END IF;
    END IF;
END
$$;
