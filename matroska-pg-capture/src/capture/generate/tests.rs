//! Unit tests of the generated SQL (no server).

use super::*;
use crate::capture::catalog::{Column, Encoding, Member};
use crate::capture::{ScopeSet, TableRef};

fn table() -> Resolved {
    let col = |name: &str, attnum, encoding| Column {
        name: name.to_owned(),
        attnum,
        type_name: "x".to_owned(),
        encoding,
    };
    Resolved {
        schema: "public".to_owned(),
        name: "Art\"icles".to_owned(),
        oid: 42,
        columns: vec![
            col("id", 1, Encoding::Encoded(Encoder::Int)),
            col("category", 2, Encoding::Encoded(Encoder::Text)),
            col("published", 3, Encoding::Encoded(Encoder::Bool)),
            col("body", 4, Encoding::Unsupported),
        ],
        members: Vec::new(),
        member_columns: Vec::new(),
    }
}

fn decl() -> TableCapture {
    TableCapture::new(TableRef::parse("articles").unwrap(), "art'icle")
        .id(["id"])
        .scope(ScopeSet::new(["published", "category"]).watch(["body"]))
}

#[test]
fn generated_sql_quotes_and_sorts() {
    let capture = SchemaName::new("cap").unwrap();
    let generated = generate(&capture, &decl(), &table()).unwrap();
    let sql = &generated.sql;
    assert!(sql.contains(r#""public"."Art""icles""#), "{sql}");
    // Fields in byte order, the kind's quote doubled in the literal.
    assert!(
        sql.contains("'s:art''icle:category=' || CASE WHEN (o.\"category\") IS NULL"),
        "{sql}"
    );
    assert!(
        sql.contains("ROW(o.\"body\", o.\"category\", o.\"published\")"),
        "{sql}"
    );
    assert!(sql.contains("'a:art''icle'"), "{sql}");
    assert!(
        sql.contains("SET jit = off"),
        "JIT compiling the tag query costs ~1 s"
    );
    assert!(!sql.contains(".invalidate("), "no store declared");
    assert_eq!(generated.names.triggers[0], "cap_ins");
}

#[test]
fn unsupported_encoded_columns_are_refused_with_the_list() {
    let capture = SchemaName::new("cap").unwrap();
    let bad = decl().scope(ScopeSet::new(["body"]));
    let err = generate(&capture, &bad, &table()).unwrap_err();
    assert!(matches!(err, CaptureError::UnsupportedType { .. }), "{err}");
    assert!(err.to_string().contains("timestamptz"), "{err}");
    let missing = decl().id(["nope"]);
    assert!(matches!(
        generate(&capture, &missing, &table()),
        Err(CaptureError::ColumnNotFound { .. })
    ));
}

#[test]
fn the_side_marker_is_named_apart_from_the_columns() {
    let mut t = table();
    assert_eq!(t.marker(), "mt_side");
    for name in ["mt_side", "mt_side_1"] {
        t.columns.push(Column {
            name: name.to_owned(),
            attnum: 9,
            type_name: "boolean".to_owned(),
            encoding: Encoding::Encoded(Encoder::Bool),
        });
    }
    assert_eq!(t.marker(), "mt_side_2");
    // A column only an inheritance child has counts too.
    t.member_columns.push("mt_side_2".to_owned());
    assert_eq!(t.marker(), "mt_side_3");
    t.member_columns.clear();
    let capture = SchemaName::new("cap").unwrap();
    let sql = generate(&capture, &decl(), &t).unwrap().sql;
    assert!(
        sql.contains("SELECT true AS \"mt_side_2\", r.* FROM mt_old"),
        "{sql}"
    );
}

#[test]
fn triggers_go_on_every_partition_and_child_and_are_recorded() {
    let capture = SchemaName::new("cap").unwrap();
    let mut t = table();
    t.members = vec![
        Member {
            oid: 43,
            table: r#""public"."p_eu""#.to_owned(),
        },
        Member {
            oid: 44,
            table: r#""other"."p_us""#.to_owned(),
        },
    ];
    let sql = generate(&capture, &decl(), &t).unwrap().sql;
    for target in [
        r#""public"."Art""icles""#,
        r#""public"."p_eu""#,
        r#""other"."p_us""#,
    ] {
        for op in ["INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
            let trigger = format!("AFTER {op} ON {target}");
            assert_eq!(sql.matches(&trigger).count(), 1, "{trigger}: {sql}");
        }
    }
    assert!(
        sql.contains(r#"[{"oid":43,"table":"#) && sql.contains(r#"{"oid":44,"table":"#),
        "{sql}"
    );
    assert!(
        sql.contains(r#"[{"attnum":1,"name":"id","type":"x"},{"attnum":2,"name":"category""#),
        "{sql}"
    );
    assert!(sql.contains("format, members, columns)"), "{sql}");
}

#[test]
fn names_fit_in_63_bytes() {
    let capture = SchemaName::new("c".repeat(63)).unwrap();
    let n = names(&capture, &"s".repeat(63), &"t".repeat(63));
    assert!(n.function.len() <= 63);
    assert!(n.triggers.iter().all(|t| t.len() <= 63));
    assert_ne!(n.triggers[0], n.triggers[1]);
    let other = names(&capture, &"s".repeat(63), &format!("{}u", "t".repeat(62)));
    assert_ne!(n.function, other.function);
}
