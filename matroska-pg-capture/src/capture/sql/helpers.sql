CREATE SCHEMA IF NOT EXISTS {{capture}};

-- What is installed: one row per captured table (see matroska-pg-capture/README.md).
CREATE TABLE IF NOT EXISTS {{capture}}.installed (
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    table_oid     oid NOT NULL,
    kind          text NOT NULL,
    channel       text,
    store_schema  text,
    function_name text NOT NULL,
    trigger_names text[] NOT NULL,
    declaration   jsonb NOT NULL,
    format        integer NOT NULL,
    installed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    installed_by  text NOT NULL DEFAULT current_user,
    PRIMARY KEY (table_schema, table_name)
);
-- Format 2: the partitions and inheritance children the triggers also went on
-- ([{"oid", "table"}]) and the columns the trigger function reads ([{"name", "attnum", "type"}]),
-- which `list` compares with the catalog. NULL for tables installed before.
ALTER TABLE {{capture}}.installed ADD COLUMN IF NOT EXISTS members jsonb;
ALTER TABLE {{capture}}.installed ADD COLUMN IF NOT EXISTS columns jsonb;

-- The tag encoding (matroska_core::tag), for computing tags in SQL by hand. The bodies are
-- filled in by matroska-pg-capture from the expressions the triggers use (capture/sqlexpr.rs):
-- one SQL copy of the encoding.
CREATE OR REPLACE FUNCTION {{capture}}.esc(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT {{esc}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT {{val_text}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT {{val_int}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT {{val_bool}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT {{val_timestamptz}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p timestamp) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT {{val_timestamp}}
$$;

CREATE OR REPLACE FUNCTION {{capture}}.fin(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT {{fin}}
$$;

-- Format 2 triggers call this one; format 3 triggers call the five-argument notify below.
-- Sends the tags one statement touched on p_channel, as {"v":1,"tags":[...]} payloads under
-- 8,000 bytes; PostgreSQL delivers them at commit (never after a rollback). Deduplicated across
-- the statements of the transaction: what was sent is recorded in transaction-local settings,
-- which a rolled-back savepoint restores together with its notifications. When the tags would
-- take the transaction past p_max notifications on the channel, p_all (the kind-wide a:<kind>
-- tag) is sent instead, once: coarser, never lost. Returns the notifications sent.
CREATE OR REPLACE FUNCTION {{capture}}.notify(p_channel text, p_all text, p_tags text[],
    p_max integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := left(encode(sha256(convert_to(p_channel, 'UTF8')), 'hex'), 24);
    v_n integer := coalesce(nullif(current_setting('matroska.n' || v_key, true), ''), '0')::integer;
    v_sent text[] := coalesce(nullif(current_setting('matroska.t' || v_key, true), ''), '{}')::text[];
    v_new text[];
    v_payloads text[] := '{}';
    v_cur text := '';
    v_len integer := 0;
    v_tag text;
    v_js text;
    v_payload text;
BEGIN
    IF p_all = ANY (v_sent) THEN
        RETURN 0; -- everything about the kind is invalidated at commit already
    END IF;
    SELECT coalesce(array_agg(x.t ORDER BY x.t), '{}') INTO v_new
    FROM (SELECT unnest(p_tags) EXCEPT SELECT unnest(v_sent)) AS x(t)
    WHERE x.t IS NOT NULL;
    IF cardinality(v_new) = 0 THEN
        RETURN 0;
    END IF;
    -- Greedy packing; 17 bytes of envelope: {"v":1,"tags":[ and ]}.
    FOREACH v_tag IN ARRAY v_new LOOP
        v_js := to_json(v_tag)::text;
        IF v_len > 0 AND 17 + v_len + 1 + octet_length(v_js) > 7999 THEN
            v_payloads := v_payloads || ('{"v":1,"tags":[' || v_cur || ']}');
            v_cur := '';
            v_len := 0;
        END IF;
        IF v_len = 0 THEN
            v_cur := v_js;
            v_len := octet_length(v_js);
        ELSE
            v_cur := v_cur || ',' || v_js;
            v_len := v_len + 1 + octet_length(v_js);
        END IF;
    END LOOP;
    v_payloads := v_payloads || ('{"v":1,"tags":[' || v_cur || ']}');
    IF v_n + cardinality(v_payloads) > p_max THEN
        v_payloads := ARRAY['{"v":1,"tags":[' || to_json(p_all)::text || ']}'];
        v_new := ARRAY[p_all];
    END IF;
    FOREACH v_payload IN ARRAY v_payloads LOOP
        PERFORM pg_notify(p_channel, v_payload);
    END LOOP;
    PERFORM set_config('matroska.n' || v_key, (v_n + cardinality(v_payloads))::text, true);
    PERFORM set_config('matroska.t' || v_key, (v_sent || v_new)::text, true);
    RETURN cardinality(v_payloads);
END
$$;

-- Format 3: sends one statement's event on p_channel: payloads p_head || tags || ']}', where
-- p_head is '{"v":1,"table":...,"op":...,"at":...,"tags":[' (the statement's table, operation
-- and send time), each under 8,000 bytes; PostgreSQL delivers them at commit (never after a
-- rollback). Tags already sent on the channel by an earlier statement of the transaction are
-- left out (what was sent is recorded in transaction-local settings, which a rolled-back
-- savepoint restores together with its notifications), but the statement's event is still sent,
-- with the tags it adds (possibly none). When the event would take the transaction past p_max
-- notifications on the channel, p_all (the kind-wide a:<kind> tag) is sent instead, once:
-- coarser, never lost; after that, the transaction's further events on the channel are not
-- sent. Returns the notifications sent.
CREATE OR REPLACE FUNCTION {{capture}}.notify(p_channel text, p_head text, p_all text,
    p_tags text[], p_max integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := left(encode(sha256(convert_to(p_channel, 'UTF8')), 'hex'), 24);
    v_n integer := coalesce(nullif(current_setting('matroska.n' || v_key, true), ''), '0')::integer;
    v_sent text[] := coalesce(nullif(current_setting('matroska.t' || v_key, true), ''), '{}')::text[];
    v_new text[] := '{}';
    v_payloads text[] := '{}';
    v_cur text := '';
    v_len integer := 0;
    v_room integer := 7999 - octet_length(p_head) - 2;
    v_tag text;
    v_js text;
    v_payload text;
BEGIN
    IF NOT p_all = ANY (v_sent) THEN
        SELECT coalesce(array_agg(x.t ORDER BY x.t), '{}') INTO v_new
        FROM (SELECT unnest(p_tags) EXCEPT SELECT unnest(v_sent)) AS x(t)
        WHERE x.t IS NOT NULL;
    END IF;
    -- Greedy packing, at least one payload (an event without new tags still says what happened).
    FOREACH v_tag IN ARRAY v_new LOOP
        v_js := to_json(v_tag)::text;
        IF v_len > 0 AND v_len + 1 + octet_length(v_js) > v_room THEN
            v_payloads := v_payloads || (p_head || v_cur || ']}');
            v_cur := '';
            v_len := 0;
        END IF;
        IF v_len = 0 THEN
            v_cur := v_js;
            v_len := octet_length(v_js);
        ELSE
            v_cur := v_cur || ',' || v_js;
            v_len := v_len + 1 + octet_length(v_js);
        END IF;
    END LOOP;
    v_payloads := v_payloads || (p_head || v_cur || ']}');
    IF v_n + cardinality(v_payloads) > p_max THEN
        IF p_all = ANY (v_sent) THEN
            RETURN 0; -- past the cap, and everything about the kind is invalidated at commit
        END IF;
        v_payloads := ARRAY[p_head || to_json(p_all)::text || ']}'];
        v_new := ARRAY[p_all];
    END IF;
    FOREACH v_payload IN ARRAY v_payloads LOOP
        PERFORM pg_notify(p_channel, v_payload);
    END LOOP;
    PERFORM set_config('matroska.n' || v_key, (v_n + cardinality(v_payloads))::text, true);
    PERFORM set_config('matroska.t' || v_key, (v_sent || v_new)::text, true);
    RETURN cardinality(v_payloads);
END
$$;
