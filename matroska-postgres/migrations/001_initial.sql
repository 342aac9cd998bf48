-- Matroska PgStore, schema version 1.
--
-- Placeholders, substituted by `PgStore::migrate` (never by string pasting of user input):
--   {{schema}}       the quoted schema identifier, e.g. "matroska"
--   {{persistence}}  UNLOGGED (the default) or nothing (LOGGED)
--
-- The protocol (DESIGN.md section 5), in PostgreSQL terms:
--   * an invalidation appends one stamp row per tag, recording the invalidating transaction
--     (pg_current_xact_id()); no row is ever updated by two writers, so writers invalidating the
--     same tag never wait on each other, even inside long transactions (change-capture triggers);
--   * a miss hands out a fill token carrying the reader's snapshot (pg_current_snapshot());
--   * a stamp written by a transaction that is NOT visible in a fill's snapshot is newer than the
--     fill: `put` rejects the token, and `get` treats an entry whose stored fill snapshot does not
--     see a stamp of one of its tags as a miss. Sequences are not transactional; snapshots are.
--   * `epoch` (always UNLOGGED) is emptied by crash recovery and is absent on a promoted standby:
--     a new random epoch then rejects every token issued before; `state.gen` changes on clear().

CREATE TABLE {{schema}}.meta (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    persistence    text NOT NULL CHECK (persistence IN ('unlogged', 'logged')),
    fill_window_ms bigint NOT NULL CHECK (fill_window_ms > 0),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE {{persistence}} TABLE {{schema}}.state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Entries of another generation are dead (clear() moves to a new one).
    gen         bigint NOT NULL,
    -- Cursor of the bounded sweep of entries left behind by clear(); NULL when there is none.
    reclaim_key text
);

CREATE UNLOGGED TABLE {{schema}}.epoch (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch          bigint NOT NULL,
    fill_window_ms bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Orders invalidations for diagnostics and for the fill tokens' `seq` (the Cache front end uses it
-- to decide whether a waiter may share a leader's load). Correctness never depends on it.
CREATE SEQUENCE {{schema}}.seq AS bigint;

CREATE {{persistence}} TABLE {{schema}}.entries (
    key        text PRIMARY KEY,
    value      bytea NOT NULL,
    -- The entry's tags, distinct. Authoritative: the tag index below may hold stray rows.
    tags       text[] NOT NULL,
    gen        bigint NOT NULL,
    -- The seq of the fill token (or the current seq for a put without token).
    seq        bigint NOT NULL,
    -- The snapshot of the miss that started the fill (or of the put without token).
    snap       pg_snapshot NOT NULL,
    expires_at timestamptz
);
CREATE INDEX entries_expiry ON {{schema}}.entries (expires_at) WHERE expires_at IS NOT NULL;

-- The reverse index: tag -> keys of the entries that carry it.
CREATE {{persistence}} TABLE {{schema}}.tags (
    tag text NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (tag, key)
);

CREATE {{persistence}} TABLE {{schema}}.stamps (
    tag          text NOT NULL,
    xid          xid8 NOT NULL,
    seq          bigint NOT NULL,
    stamped_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When cleanup first saw the stamp committed; it is pruned two fill windows later.
    confirmed_at timestamptz,
    -- Cursor of the sweep of the tag's dependents that precedes pruning.
    sweep_key    text,
    PRIMARY KEY (tag, xid)
);
CREATE INDEX stamps_unconfirmed ON {{schema}}.stamps (stamped_at) WHERE confirmed_at IS NULL;
CREATE INDEX stamps_confirmed ON {{schema}}.stamps (confirmed_at) WHERE confirmed_at IS NOT NULL;

-- A random, non-zero identifier (epochs and generations).
CREATE FUNCTION {{schema}}.random_id() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT (floor(random() * 9007199254740990) + 1)::bigint
$$;

-- Creates the state and epoch rows when they are missing (first use, or after crash recovery
-- emptied the unlogged tables).
CREATE FUNCTION {{schema}}.ensure_state() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{schema}}.state (gen) VALUES ({{schema}}.random_id())
    ON CONFLICT (id) DO NOTHING;
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

-- Stamps tags as invalidated by the current transaction; returns the invalidation's seq.
--
-- This is the function change-capture triggers call inside the writer's transaction: it only
-- appends rows (no row another writer could hold), and removes nothing. Once the transaction
-- commits, no entry filled from a snapshot that does not see it is served, and no such fill is
-- stored. The dependents are removed later by reclaim() or cleanup().
CREATE FUNCTION {{schema}}.invalidate(p_tags text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF coalesce(cardinality(p_tags), 0) = 0 THEN
        RETURN NULL;
    END IF;
    v_seq := nextval('{{schema}}.seq');
    INSERT INTO {{schema}}.stamps AS s (tag, xid, seq)
    SELECT DISTINCT t.tag, pg_current_xact_id(), v_seq
    FROM unnest(p_tags) AS t(tag)
    WHERE t.tag IS NOT NULL
    ON CONFLICT (tag, xid) DO UPDATE SET seq = excluded.seq, stamped_at = clock_timestamp();
    RETURN v_seq;
END
$$;

-- Removes the entries that carry p_tags and are older than the invalidation by transaction
-- p_xid, walking the tag index in key order from (p_pos, p_after) and reading at most p_budget
-- index rows. Returns how many entries it removed (each once, whatever the number of its tags
-- among p_tags) and where to continue (next_pos NULL: done). Stray index rows are dropped too.
CREATE FUNCTION {{schema}}.reclaim(
    p_tags text[], p_xid xid8, p_pos integer, p_after text, p_budget integer,
    OUT removed bigint, OUT next_pos integer, OUT next_after text)
LANGUAGE plpgsql AS $$
DECLARE
    v_budget integer := greatest(coalesce(p_budget, 1), 1);
    v_tag text;
    v_rows bigint;
    v_dead bigint;
    v_last text;
BEGIN
    removed := 0;
    next_pos := greatest(coalesce(p_pos, 1), 1);
    next_after := p_after;
    WHILE next_pos <= coalesce(cardinality(p_tags), 0) LOOP
        v_tag := p_tags[next_pos];
        WITH idx AS (
            SELECT t.key FROM {{schema}}.tags t
            WHERE t.tag = v_tag AND (next_after IS NULL OR t.key > next_after)
            ORDER BY t.key
            LIMIT v_budget
        ), dead AS (
            DELETE FROM {{schema}}.entries e USING idx
            WHERE e.key = idx.key
              AND v_tag = ANY (e.tags)
              AND NOT pg_visible_in_snapshot(p_xid, e.snap)
            RETURNING e.key, e.tags
        ), dead_index AS (
            DELETE FROM {{schema}}.tags t USING dead d
            WHERE t.key = d.key AND t.tag = ANY (d.tags)
        ), stray AS (
            DELETE FROM {{schema}}.tags t USING idx
            WHERE t.tag = v_tag AND t.key = idx.key
              AND NOT EXISTS (
                  SELECT 1 FROM {{schema}}.entries e
                  WHERE e.key = idx.key AND v_tag = ANY (e.tags))
        )
        SELECT (SELECT count(*) FROM dead), count(*), max(idx.key)
        INTO v_dead, v_rows, v_last
        FROM idx;
        removed := removed + v_dead;
        IF v_rows < v_budget THEN
            -- This tag is done; go on with the next one while budget remains.
            v_budget := v_budget - v_rows::integer;
            next_pos := next_pos + 1;
            next_after := NULL;
            IF v_budget <= 0 THEN
                EXIT;
            END IF;
        ELSE
            next_after := v_last;
            EXIT;
        END IF;
    END LOOP;
    IF next_pos > coalesce(cardinality(p_tags), 0) THEN
        next_pos := NULL;
        next_after := NULL;
    END IF;
END
$$;

-- invalidate() and the first bounded batch of reclaim(), in one call: what `PgStore::invalidate`
-- runs (in autocommit). It then calls reclaim() with the returned cursor until it is done.
CREATE FUNCTION {{schema}}.invalidate_and_reclaim(
    p_tags text[], p_budget integer,
    OUT seq bigint, OUT xid text, OUT removed bigint, OUT next_pos integer, OUT next_after text)
LANGUAGE plpgsql AS $$
BEGIN
    seq := {{schema}}.invalidate(p_tags);
    xid := pg_current_xact_id()::text;
    SELECT r.removed, r.next_pos, r.next_after INTO removed, next_pos, next_after
    FROM {{schema}}.reclaim(p_tags, xid::xid8, 1, NULL, p_budget) AS r;
END
$$;

-- Stores an entry. With a fill token (p_token_ms not NULL) the put is refused (false) when the
-- token is from another epoch or generation, older than the fill window, or when a stamp of one
-- of p_tags was written by a transaction its snapshot does not see. p_tags must be distinct.
CREATE FUNCTION {{schema}}.put(
    p_key text, p_value bytea, p_tags text[], p_ttl_ms bigint,
    p_token_seq bigint, p_token_ms bigint, p_epoch bigint, p_gen bigint, p_snap text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_now_ms bigint := floor(extract(epoch FROM v_now) * 1000)::bigint;
    v_tokened boolean := p_token_ms IS NOT NULL;
    v_gen bigint;
    v_epoch bigint;
    v_window bigint;
    v_snap pg_snapshot;
    v_seq bigint;
    v_expires timestamptz;
    v_old text[];
BEGIN
    SELECT s.gen, e.epoch, e.fill_window_ms INTO v_gen, v_epoch, v_window
    FROM {{schema}}.state s CROSS JOIN {{schema}}.epoch e;
    IF NOT FOUND THEN
        -- Crash recovery emptied the unlogged state: start a new epoch. Tokens are older.
        PERFORM {{schema}}.ensure_state();
        IF v_tokened THEN
            RETURN false;
        END IF;
        SELECT s.gen, e.epoch, e.fill_window_ms INTO v_gen, v_epoch, v_window
        FROM {{schema}}.state s CROSS JOIN {{schema}}.epoch e;
    END IF;
    IF v_tokened THEN
        IF p_snap IS NULL
           OR p_epoch IS DISTINCT FROM v_epoch
           OR p_gen IS DISTINCT FROM v_gen
           OR v_now_ms - p_token_ms >= v_window
           OR p_token_ms > v_now_ms + 1000 THEN
            RETURN false;
        END IF;
        v_snap := p_snap::pg_snapshot;
        IF EXISTS (
            SELECT 1 FROM {{schema}}.stamps s
            WHERE s.tag = ANY (p_tags)
              AND s.xid >= pg_snapshot_xmin(v_snap)
              AND NOT pg_visible_in_snapshot(s.xid, v_snap)) THEN
            RETURN false;
        END IF;
        v_seq := coalesce(p_token_seq, 0);
    ELSE
        v_snap := pg_current_snapshot();
        SELECT q.last_value INTO v_seq FROM {{schema}}.seq q;
    END IF;
    IF p_ttl_ms IS NOT NULL THEN
        v_expires := v_now + p_ttl_ms * interval '1 millisecond';
    END IF;

    -- Replace the entry, learning its old tags (the row is locked by the subquery).
    UPDATE {{schema}}.entries e
    SET value = p_value, tags = p_tags, gen = v_gen, seq = v_seq, snap = v_snap,
        expires_at = v_expires
    FROM (SELECT o.key, o.tags FROM {{schema}}.entries o WHERE o.key = p_key FOR UPDATE) AS old
    WHERE e.key = old.key
    RETURNING old.tags INTO v_old;
    IF NOT FOUND THEN
        INSERT INTO {{schema}}.entries AS e (key, value, tags, gen, seq, snap, expires_at)
        VALUES (p_key, p_value, p_tags, v_gen, v_seq, v_snap, v_expires)
        ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, tags = excluded.tags, gen = excluded.gen, seq = excluded.seq,
            snap = excluded.snap, expires_at = excluded.expires_at;
        -- (After a conflict the old tags are unknown: their index rows stay as strays, which
        -- never remove an entry that does not carry the tag.)
        v_old := NULL;
    ELSIF v_old IS DISTINCT FROM p_tags AND cardinality(v_old) > 0 THEN
        DELETE FROM {{schema}}.tags t
        WHERE t.tag = ANY (v_old) AND t.key = p_key AND NOT (t.tag = ANY (p_tags));
    END IF;
    -- Index the new tags (a re-put with the same tags writes nothing here).
    IF NOT (p_tags <@ coalesce(v_old, '{}')) THEN
        INSERT INTO {{schema}}.tags (tag, key)
        SELECT t.tag, p_key FROM unnest(p_tags) AS t(tag)
        ON CONFLICT DO NOTHING;
    END IF;

    -- A token that outlived the fill window while this ran must not store: stamps are pruned on
    -- the assumption that no put with an older token can commit afterwards.
    IF v_tokened AND floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - p_token_ms
                     >= v_window THEN
        RAISE EXCEPTION 'the fill token expired during the put' USING ERRCODE = 'MKS01';
    END IF;
    RETURN true;
END
$$;

-- Removes every entry (by moving to a new generation, which takes effect at once) and rejects
-- every fill token issued before. The old generation's rows are swept by reclaim_cleared().
CREATE FUNCTION {{schema}}.clear() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_gen bigint;
BEGIN
    PERFORM {{schema}}.ensure_state();
    UPDATE {{schema}}.state SET gen = gen + 1, reclaim_key = '' RETURNING gen INTO v_gen;
    PERFORM nextval('{{schema}}.seq');
    RETURN v_gen;
END
$$;

-- Sweeps at most p_budget entries (in key order) of the generations before the last clear().
CREATE FUNCTION {{schema}}.reclaim_cleared(p_budget integer, OUT removed bigint, OUT done boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_budget integer := greatest(coalesce(p_budget, 1), 1);
    v_gen bigint;
    v_after text;
    v_rows bigint;
    v_last text;
BEGIN
    removed := 0;
    done := true;
    SELECT s.gen, s.reclaim_key INTO v_gen, v_after
    FROM {{schema}}.state s FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR v_after IS NULL THEN
        RETURN;
    END IF;
    WITH idx AS (
        SELECT e.key FROM {{schema}}.entries e WHERE e.key > v_after ORDER BY e.key LIMIT v_budget
    ), dead AS (
        DELETE FROM {{schema}}.entries e USING idx
        WHERE e.key = idx.key AND e.gen <> v_gen
        RETURNING e.key, e.tags
    ), dead_index AS (
        DELETE FROM {{schema}}.tags t USING dead d
        WHERE t.key = d.key AND t.tag = ANY (d.tags)
    )
    SELECT (SELECT count(*) FROM dead), count(*), max(idx.key) INTO removed, v_rows, v_last
    FROM idx;
    done := v_rows < v_budget;
    UPDATE {{schema}}.state SET reclaim_key = CASE WHEN done THEN NULL ELSE v_last END;
END
$$;

-- One bounded round of housekeeping; `PgStore::cleanup` calls it until `more` is false.
--   expired: expired entries removed (at most p_budget);
--   cleared: entries of old generations removed (at most p_budget);
--   pruned:  stamps removed. A stamp is confirmed when cleanup first sees it committed and pruned
--            two fill windows later (every token that could predate it has expired by then),
--            after a sweep removed the dependents that are older than it (fills that raced with
--            the invalidation), so that pruning it can never bring a stale entry back.
CREATE FUNCTION {{schema}}.cleanup(p_budget integer,
    OUT expired bigint, OUT cleared bigint, OUT pruned bigint, OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_budget integer := greatest(coalesce(p_budget, 1), 1);
    v_window bigint;
    v_cut timestamptz;
    v_done boolean;
    v_tag text;
    v_after text;
    v_rows bigint;
    v_last text;
    v_n bigint;
BEGIN
    pruned := 0;
    more := false;

    -- 1. Expired entries.
    WITH x AS (
        SELECT e.key FROM {{schema}}.entries e
        WHERE e.expires_at <= clock_timestamp()
        ORDER BY e.expires_at
        LIMIT v_budget
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        DELETE FROM {{schema}}.entries e USING x WHERE e.key = x.key RETURNING e.key, e.tags
    ), dead_index AS (
        DELETE FROM {{schema}}.tags t USING dead d
        WHERE t.key = d.key AND t.tag = ANY (d.tags)
    )
    SELECT count(*) INTO expired FROM dead;
    more := more OR expired >= v_budget;

    -- 2. Entries left behind by clear().
    SELECT r.removed, r.done INTO cleared, v_done FROM {{schema}}.reclaim_cleared(v_budget) AS r;
    more := more OR NOT v_done;

    -- 3. Confirm the stamps of committed invalidations.
    UPDATE {{schema}}.stamps s SET confirmed_at = clock_timestamp()
    FROM (SELECT u.tag, u.xid FROM {{schema}}.stamps u
          WHERE u.confirmed_at IS NULL
          ORDER BY u.stamped_at
          LIMIT v_budget
          FOR UPDATE SKIP LOCKED) AS u
    WHERE s.tag = u.tag AND s.xid = u.xid;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    more := more OR v_n >= v_budget;

    -- 4. Sweep, then prune, the stamps confirmed more than two fill windows ago; one tag at a
    --    time, within the budget.
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
        WITH idx AS (
            SELECT t.key FROM {{schema}}.tags t
            WHERE t.tag = v_tag AND t.key > v_after
            ORDER BY t.key
            LIMIT v_budget
        ), dead AS (
            DELETE FROM {{schema}}.entries e USING idx
            WHERE e.key = idx.key
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
        SELECT count(*), max(idx.key) INTO v_rows, v_last FROM idx;
        v_budget := v_budget - greatest(v_rows, 1)::integer;
        IF v_rows < v_budget + greatest(v_rows, 1) THEN
            -- The whole index of the tag was swept: the swept stamps can go.
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
END
$$;
