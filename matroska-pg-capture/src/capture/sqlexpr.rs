//! The tag encoding in SQL, once: the expressions that reproduce [`matroska_core::tag`] byte for
//! byte. The generated triggers write them out inline (a call to an SQL function is re-parsed
//! at every call site on every execution); the helper functions of `sql/helpers.sql` (`esc`,
//! `val`, `fin`, for computing tags in SQL by hand) get the same expressions as their bodies.
//! The capture tests check both against Rust (`sql_tags_equal_rust_tags_over_awkward_values`,
//! `the_sql_helpers_encode_like_rust`).

use super::catalog::Encoder;

/// `expr` (text) with each of `% : & = , ( ) #` written `%XX`, as names and text values are
/// (NUL cannot occur in PostgreSQL text).
pub(crate) fn escape(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (from, to) in [
        ("%", "%25"),
        (":", "%3A"),
        ("&", "%26"),
        ("=", "%3D"),
        (",", "%2C"),
        ("(", "%28"),
        (")", "%29"),
        ("#", "%23"),
    ] {
        out = format!("replace({out}, '{from}', '{to}')");
    }
    out
}

/// The encoded value of `expr` (a parenthesised expression or a name) of the type `encoder`
/// reads: `~` for NULL, decimal integers, `'` + escaped text, `true`/`false`, `@` + microseconds
/// since the Unix epoch (infinities as the extreme i64 values).
pub(crate) fn value(expr: &str, encoder: Encoder) -> String {
    let c = expr;
    match encoder {
        Encoder::Int => format!("coalesce({c}::bigint::text, '~')"),
        Encoder::Text => format!(
            "CASE WHEN {c} IS NULL THEN '~' ELSE '''' || {} END",
            escape(&format!("{c}::text"))
        ),
        Encoder::Bool => {
            format!("CASE WHEN {c} IS NULL THEN '~' WHEN {c} THEN 'true' ELSE 'false' END")
        }
        Encoder::Timestamptz | Encoder::Timestamp => {
            let t = encoder.cast();
            format!(
                "CASE WHEN {c} IS NULL THEN '~' \
                 WHEN {c}::{t} = 'infinity'::{t} THEN '@9223372036854775807' \
                 WHEN {c}::{t} = '-infinity'::{t} THEN '@-9223372036854775808' \
                 ELSE '@' || (extract(epoch FROM {c}::{t}) * 1000000)::bigint::text END"
            )
        }
    }
}

/// Finishes the tag `expr`: longer than 200 bytes, its first 64 characters, `#`, and the hex
/// SHA-256 of the whole (the database encoding is UTF8, checked at install).
pub(crate) fn finish(expr: &str) -> String {
    format!(
        "CASE WHEN octet_length({expr}) > 200 THEN left({expr}, 64) || '#' || \
         encode(sha256(convert_to({expr}, 'UTF8')), 'hex') ELSE {expr} END"
    )
}

/// `sql/helpers.sql` with the bodies of `esc`, `val` and `fin` filled in from the expressions
/// above (placeholders `{{esc}}`, `{{val_text}}`, `{{val_int}}`, `{{val_bool}}`,
/// `{{val_timestamptz}}`, `{{val_timestamp}}`, `{{fin}}`, each over the parameter `p`).
pub(crate) fn fill_helpers(template: &str) -> String {
    template
        .replace("{{esc}}", &escape("p"))
        .replace("{{val_text}}", &value("p", Encoder::Text))
        .replace("{{val_int}}", &value("p", Encoder::Int))
        .replace("{{val_bool}}", &value("p", Encoder::Bool))
        .replace("{{val_timestamptz}}", &value("p", Encoder::Timestamptz))
        .replace("{{val_timestamp}}", &value("p", Encoder::Timestamp))
        .replace("{{fin}}", &finish("p"))
}
