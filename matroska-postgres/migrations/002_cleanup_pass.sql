-- Matroska PgStore, schema version 2: cleanup finds the entries a stamp hides through the
-- authoritative entries.tags, never through the lazy index alone.
--
-- Version 1 swept a tag's dependents through the index `tags` before pruning its stamps; an entry
-- whose index row was missing was not swept, and pruning the stamp made it readable again with
-- its pre-invalidation value. From this version on, stamps are pruned by passes over every entry
-- (see cleanup() below and PROTOCOL-store.md, "Cleanup and stamp pruning").

-- The state of the pruning pass (in the unlogged epoch row: losing it restarts the pass, which is
-- always safe).
ALTER TABLE {{schema}}.epoch
    -- NULL: no pass. Otherwise the pass prunes the stamps confirmed before this time.
    ADD COLUMN pass_cut timestamptz,
    -- The last key the pass has swept ('' at its start); NULL once the sweep is complete and the
    -- pass prunes its stamps.
    ADD COLUMN pass_key text COLLATE "C",
    -- When the last pass started: at most one pass starts per two fill windows.
    ADD COLUMN pass_started_at timestamptz;

-- The per-tag sweep cursor of version 1 is gone: the pass's cursor is in the epoch row.
ALTER TABLE {{schema}}.stamps DROP COLUMN sweep_key;

-- One bounded round of housekeeping; `PgStore::cleanup` calls it until `more` is false.
--   expired: expired entries removed (at most p_budget), with their index rows;
--   swept:   entries removed by the pruning pass: entries that a committed stamp hides (their fill
--            snapshot does not see the stamp's transaction), with their index rows;
--   pruned:  stamps removed;
--   strays:  index rows removed whose entry is gone or no longer carries the tag (at most
--            p_budget rows looked at, from a cursor that goes round the index over time).
--
-- Stamp pruning (the argument is in PROTOCOL-store.md):
--   * a stamp is confirmed (confirmed_at) when cleanup first sees it committed;
--   * no put whose token's snapshot does not see a stamp can commit later than one fill window
--     after the stamp committed (a put checks, at its end, that its token is younger than the
--     window; the token is issued on this server's clock at the miss), so two fill windows after
--     confirmation the set of entries the stamp hides can only shrink;
--   * a pass starts (at most once per two fill windows) with pass_cut = now - 2 fill windows,
--     walks every entry in key order, p_budget entries per round, and deletes those that a
--     committed stamp hides, whichever tag and whether or not the index lists them: it reads
--     entries.tags, the authoritative list;
--   * once the walk is complete, the stamps confirmed before pass_cut hide nothing any more and
--     are deleted, p_budget per round.
-- Entries are only ever deleted with their index rows (same statement).
CREATE OR REPLACE FUNCTION {{schema}}.cleanup(p_budget integer,
    OUT expired bigint, OUT swept bigint, OUT pruned bigint, OUT strays bigint,
    OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_budget integer := greatest(coalesce(p_budget, 1), 1);
    v_window bigint;
    v_cut timestamptz;
    v_pass_cut timestamptz;
    v_pass_key text;
    v_pass_started timestamptz;
    v_rows bigint;
    v_n bigint;
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

    -- The rest needs the epoch row (missing after crash recovery until the next miss or fill);
    -- locking it serialises concurrent cleanups from here on, so that one pass runs at a time.
    PERFORM {{schema}}.ensure_state();
    SELECT ep.pass_cut, ep.pass_key, ep.pass_started_at,
           ep.stray_tag, ep.stray_key
    INTO v_pass_cut, v_pass_key, v_pass_started, v_stray_tag, v_stray_key
    FROM {{schema}}.epoch ep
    FOR UPDATE;

    -- 2. Confirm the stamps of committed invalidations (at most p_budget).
    UPDATE {{schema}}.stamps s SET confirmed_at = clock_timestamp()
    FROM (SELECT u.tag, u.xid FROM {{schema}}.stamps u
          WHERE u.confirmed_at IS NULL
          LIMIT v_budget
          FOR UPDATE SKIP LOCKED) AS u
    WHERE s.tag = u.tag AND s.xid = u.xid;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    more := more OR v_n >= v_budget;

    -- 3. The pruning pass.
    SELECT m.fill_window_ms INTO v_window FROM {{schema}}.meta m;
    v_cut := clock_timestamp() - 2 * coalesce(v_window, 60000) * interval '1 millisecond';
    IF v_pass_cut IS NULL
       AND (v_pass_started IS NULL OR v_pass_started <= v_cut)
       AND EXISTS (SELECT FROM {{schema}}.stamps s WHERE s.confirmed_at < v_cut) THEN
        -- Start a pass for the stamps confirmed more than two fill windows ago.
        v_pass_cut := v_cut;
        v_pass_key := '';
        v_pass_started := clock_timestamp();
    END IF;
    IF v_pass_cut IS NOT NULL AND v_pass_key IS NOT NULL THEN
        -- Sweep the next p_budget entries: delete those a committed stamp hides.
        SELECT array_agg(i.key ORDER BY i.key) INTO v_keys FROM (
            SELECT e.key FROM {{schema}}.entries e
            WHERE e.key > v_pass_key ORDER BY e.key LIMIT v_budget) AS i;
        v_rows := coalesce(cardinality(v_keys), 0);
        WITH dead AS (
            DELETE FROM {{schema}}.entries e
            WHERE e.key = ANY (v_keys)
              AND EXISTS (
                  SELECT FROM {{schema}}.stamps x
                  WHERE x.tag = ANY (e.tags)
                    AND x.xid >= pg_snapshot_xmin(e.snap)
                    AND NOT pg_visible_in_snapshot(x.xid, e.snap))
            RETURNING e.key, e.tags
        ), dead_index AS (
            DELETE FROM {{schema}}.tags t USING dead d
            WHERE t.key = d.key AND t.tag = ANY (d.tags)
        )
        SELECT count(*) INTO swept FROM dead;
        IF v_rows >= v_budget THEN
            v_pass_key := v_keys[v_rows];
            more := true;
        ELSE
            -- Every entry has been looked at: the pass's stamps hide nothing any more.
            v_pass_key := NULL;
        END IF;
        v_budget := greatest(v_budget - v_rows::integer, 1);
    END IF;
    IF v_pass_cut IS NOT NULL AND v_pass_key IS NULL THEN
        WITH gone AS (
            DELETE FROM {{schema}}.stamps s
            WHERE (s.tag, s.xid) IN (
                SELECT p.tag, p.xid FROM {{schema}}.stamps p
                WHERE p.confirmed_at < v_pass_cut
                LIMIT v_budget)
            RETURNING 1
        )
        SELECT count(*) INTO pruned FROM gone;
        IF pruned >= v_budget THEN
            more := true;
        ELSE
            v_pass_cut := NULL;
        END IF;
    END IF;

    -- 4. Stray index rows: look at the next p_budget rows after the cursor; lock the ones
    --    without an entry that carries their tag (skipping rows a put in flight holds), then,
    --    in a new statement (a new snapshot), delete those that are still stray.
    v_budget := greatest(coalesce(p_budget, 1), 1);
    SELECT array_agg(b.tag ORDER BY b.tag, b.key), array_agg(b.key ORDER BY b.tag, b.key)
    INTO v_tags, v_keys
    FROM (SELECT t.tag, t.key FROM {{schema}}.tags t
          WHERE (t.tag, t.key) > (v_stray_tag, v_stray_key)
          ORDER BY t.tag, t.key
          LIMIT v_budget) AS b;
    v_rows := coalesce(cardinality(v_keys), 0);
    IF v_rows < v_budget THEN
        -- The end of the index: start again from the beginning next time.
        v_stray_tag := '';
        v_stray_key := '';
    ELSE
        v_stray_tag := v_tags[v_rows];
        v_stray_key := v_keys[v_rows];
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
        more := more OR strays * 10 >= v_budget;
    END IF;

    UPDATE {{schema}}.epoch
    SET pass_cut = v_pass_cut, pass_key = v_pass_key, pass_started_at = v_pass_started,
        stray_tag = v_stray_tag, stray_key = v_stray_key;
END
$$;
