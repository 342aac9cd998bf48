//! The tag encoding in SQL, and the quoting every generated statement goes through.
//!
//! The helper functions below (installed in the capture schema, for computing tags in SQL by
//! hand; the triggers write the same expressions out instead of calling them, since a call site
//! re-parses an SQL function's body on every execution) reproduce [`matroska_core::tag`] byte for
//! byte (the capture test `the_sql_helpers_encode_like_rust` checks them):
//!
//! | SQL | core |
//! | --- | --- |
//! | `esc(text)` | a name or text value with `% : & = , ( ) #` written `%XX` |
//! | `val(NULL)` | `~` ([`Value::Null`](matroska_core::Value::Null)) |
//! | `val(bigint)` | decimal ([`Value::Int`](matroska_core::Value::Int)); `smallint` and `integer` are cast |
//! | `val(text)` | `'` + escaped text ([`Value::Text`](matroska_core::Value::Text)); `varchar`, enums (their label) and `uuid` (canonical lower-case form) are cast (install refuses `char(n)`, `citext` and nondeterministic collations, see [`SUPPORTED_TYPES`](super::SUPPORTED_TYPES)) |
//! | `val(boolean)` | `true` / `false` |
//! | `val(timestamptz)`, `val(timestamp)` | `@` + microseconds since the Unix epoch ([`Value::Timestamp`](matroska_core::Value::Timestamp)); a `timestamp` without time zone is read as UTC; `infinity` and `-infinity` are `i64::MAX` and `i64::MIN` |
//! | `fin(text)` | a tag longer than 200 bytes becomes its first 64 characters, `#`, and the hex SHA-256 of the whole |
//!
//! Composite ids are tuples, `(v1,v2)`, as [`Value::Tuple`](matroska_core::Value::Tuple).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use matroska_postgres::schema::{SchemaName, quote_ident};

/// PostgreSQL truncates identifiers longer than this (`NAMEDATALEN - 1`).
pub(crate) const MAX_IDENT: usize = 63;

/// The helper functions and the registry, `{{capture}}` standing for the quoted capture schema.
/// Every statement is idempotent (`IF NOT EXISTS`, `CREATE OR REPLACE`).
const HELPERS: &str = r#"CREATE SCHEMA IF NOT EXISTS {{capture}};

-- What is installed: one row per captured table (see matroska-postgres/README.md).
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

-- A name or a text value: each of % : & = , ( ) # as %XX (NUL cannot occur in PostgreSQL text).
CREATE OR REPLACE FUNCTION {{capture}}.esc(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT replace(replace(replace(replace(replace(replace(replace(replace(p,
        '%', '%25'), ':', '%3A'), '&', '%26'), '=', '%3D'), ',', '%2C'), '(', '%28'), ')', '%29'),
        '#', '%23')
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p IS NULL THEN '~' ELSE '''' || {{capture}}.esc(p) END
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p::text, '~')
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p IS NULL THEN '~' WHEN p THEN 'true' ELSE 'false' END
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p IS NULL THEN '~'
        WHEN p = 'infinity'::timestamptz THEN '@9223372036854775807'
        WHEN p = '-infinity'::timestamptz THEN '@-9223372036854775808'
        ELSE '@' || (extract(epoch FROM p) * 1000000)::bigint::text
    END
$$;

CREATE OR REPLACE FUNCTION {{capture}}.val(p timestamp) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p IS NULL THEN '~'
        WHEN p = 'infinity'::timestamp THEN '@9223372036854775807'
        WHEN p = '-infinity'::timestamp THEN '@-9223372036854775808'
        ELSE '@' || (extract(epoch FROM p) * 1000000)::bigint::text
    END
$$;

-- Finishes a tag: longer than 200 bytes, it becomes its first 64 characters, '#', and the hex
-- SHA-256 of the whole (the database encoding is UTF8, checked at install).
CREATE OR REPLACE FUNCTION {{capture}}.fin(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(p) > 200
        THEN left(p, 64) || '#' || encode(sha256(convert_to(p, 'UTF8')), 'hex')
        ELSE p END
$$;

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
"#;

/// The SQL that creates (or refreshes) the helper functions and the registry in `capture`.
pub(crate) fn helpers_sql(capture: &SchemaName) -> String {
    HELPERS.replace("{{capture}}", &capture.quoted())
}

/// The key of `channel` in the transaction-local settings where the helper `notify` records
/// what a transaction sent (`matroska.n<key>`, `matroska.t<key>`): the first 24 hex digits of
/// the SHA-256 of the channel's name, as the helper computes it.
pub(crate) fn channel_key(channel: &str) -> String {
    let mut key = String::with_capacity(24);
    for byte in &Sha256::digest(channel.as_bytes())[..12] {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// A name or text value escaped as in [`matroska_core::tag`].
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | ':' | '&' | '=' | ',' | '(' | ')' | '#' | '\0') {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A SQL string literal holding `text` exactly, whatever `standard_conforming_strings` says:
/// `E'...'` (quotes and backslashes doubled) when it holds a backslash, `'...'` otherwise.
pub(crate) fn literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// An identifier, quoted.
pub(crate) fn ident(name: &str) -> String {
    quote_ident(name)
}

/// A name derived from `readable` and `key` that PostgreSQL keeps whole (at most 63 bytes):
/// `readable` cut at a character boundary, `_`, and 8 hex digits of the SHA-256 of `key`, so that
/// different keys give different names however long or alike their readable parts.
pub(crate) fn derive_name(readable: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut suffix = String::from("_");
    for byte in &digest[..4] {
        let _ = write!(suffix, "{byte:02x}");
    }
    let room = MAX_IDENT - suffix.len();
    let mut cut = readable.len().min(room);
    while !readable.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &readable[..cut])
}

/// A dollar-quote tag that does not occur in `body`.
pub(crate) fn dollar_tag(body: &str) -> String {
    let mut n = 0_u32;
    loop {
        let tag = if n == 0 {
            "$mt$".to_owned()
        } else {
            format!("$mt{n}$")
        };
        if !body.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use matroska_core::Dep;

    use super::*;

    #[test]
    fn escape_matches_core() {
        for name in [
            "plain", "a:b", "%25", "x&y=z", "(1,2)", "#", "é日本", "a\0b", "",
        ] {
            if name.is_empty() {
                assert_eq!(escape(name), "");
                continue;
            }
            let core = Dep::tag(name).to_tag().unwrap();
            assert_eq!(format!("g:{}", escape(name)), core.as_str(), "{name:?}");
        }
    }

    #[test]
    fn literals_survive_quotes_and_backslashes() {
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal(r"a\'b"), r"E'a\\''b'");
    }

    #[test]
    fn channel_keys_are_the_helpers() {
        // left(encode(sha256(convert_to('matroska', 'UTF8')), 'hex'), 24)
        assert_eq!(channel_key("matroska"), "e705b4c84eb1e8451121585b");
        assert!(HELPERS.contains(
            "v_key text := left(encode(sha256(convert_to(p_channel, 'UTF8')), 'hex'), 24);"
        ));
    }

    #[test]
    fn derived_names_fit_and_differ() {
        let long = "é".repeat(40);
        let a = derive_name(&long, "a");
        let b = derive_name(&long, "b");
        assert!(a.len() <= MAX_IDENT, "{}", a.len());
        assert_ne!(a, b);
        assert_eq!(derive_name("t", "k"), derive_name("t", "k"));
        assert!(derive_name("t", "k").starts_with("t_"));
    }

    #[test]
    fn dollar_tags_avoid_the_body() {
        assert_eq!(dollar_tag("x"), "$mt$");
        assert_eq!(dollar_tag("x $mt$ y"), "$mt1$");
    }
}
