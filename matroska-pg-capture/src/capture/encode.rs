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
const HELPERS: &str = include_str!("sql/helpers.sql");

/// The SQL that creates (or refreshes) the helper functions and the registry in `capture`.
pub(crate) fn helpers_sql(capture: &SchemaName) -> String {
    super::sqlexpr::fill_helpers(HELPERS).replace("{{capture}}", &capture.quoted())
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

/// A name or text value escaped as in [`matroska_core::tag`] (core's own function: one Rust copy
/// of the encoding).
pub(crate) fn escape(name: &str) -> String {
    matroska_core::tag::escape(name)
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
