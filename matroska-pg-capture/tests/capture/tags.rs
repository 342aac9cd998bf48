//! SQL == Rust: the tags the triggers send equal what `Scopes` and `Dep` compute.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use matroska_core::{Dep, Scopes, Value};
use matroska_pg_capture::capture::{ScopeSet, TableCapture, TableRef};

use super::capture_support::{Env, RawListener, connect, url};
use super::{install, tag_set};

/// A row of the awkward-values table.
#[derive(Debug, Clone, PartialEq)]
struct Thing {
    id: String,
    n: Option<i64>,
    i: Option<i32>,
    s: Option<i16>,
    b: Option<bool>,
    t: Option<String>,
    v: Option<String>,
    ts: Option<SystemTime>,
    tn: Option<SystemTime>,
    u: Option<String>,
    title: String,
}

fn thing_scopes() -> Scopes<Thing> {
    Scopes::new("th:ing&=")
        .id(|r: &Thing| r.id.clone())
        .describe(["t", "b"], |r: &Thing| (r.t.clone(), r.b))
        .describe(["n"], |r: &Thing| r.n)
        .describe(["s", "i"], |r: &Thing| (r.s, r.i))
        .describe(["ts"], |r: &Thing| r.ts.map(Value::from))
        .describe(["tn", "u"], |r: &Thing| {
            (r.tn.map(Value::from), r.u.clone())
        })
        .describe_watching(["v"], &["title"], |r: &Thing| r.v.clone())
        .describe([], |_: &Thing| ())
}

/// Which columns differ between two rows (what an application would pass as `modified`).
fn modified(old: &Thing, new: &Thing) -> Vec<&'static str> {
    let mut m = Vec::new();
    let mut check = |name, differs| {
        if differs {
            m.push(name);
        }
    };
    check("n", old.n != new.n);
    check("i", old.i != new.i);
    check("s", old.s != new.s);
    check("b", old.b != new.b);
    check("t", old.t != new.t);
    check("v", old.v != new.v);
    check("ts", old.ts != new.ts);
    check("tn", old.tn != new.tn);
    check("u", old.u != new.u);
    check("title", old.title != new.title);
    m
}

fn texts() -> Vec<String> {
    vec![
        String::new(),
        "plain".into(),
        "a:b".into(),
        "x&y=z".into(),
        "%25".into(),
        "(1,2)".into(),
        "#".into(),
        "é日本🔑".into(),
        "line\nbreak\ttab".into(),
        "'quote'".into(),
        "\"dq\" \\back\\slash".into(),
        "~".into(),
        "NULL".into(),
        "semi;colon".into(),
        "x".repeat(300),
        "é".repeat(150),
        format!("{}:{}", "k".repeat(100), "v".repeat(100)),
        "\u{1}control".into(),
    ]
}

fn things() -> Vec<Thing> {
    let texts = texts();
    let micros = |m: i64| {
        if m >= 0 {
            UNIX_EPOCH + Duration::from_micros(m.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(m.unsigned_abs())
        }
    };
    let times = [
        Some(micros(0)),
        Some(micros(1_709_210_096_789_012)),
        Some(micros(-1)),
        Some(micros(-2_208_988_800_000_000)),
        Some(micros(9_214_646_400_000_001)),
        None,
    ];
    let ints = [
        Some(0),
        Some(1),
        Some(-1),
        Some(i64::MAX),
        Some(i64::MIN),
        None,
    ];
    let uuids = [
        Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".to_owned()),
        Some("00000000-0000-0000-0000-000000000000".to_owned()),
        None,
    ];
    texts
        .iter()
        .enumerate()
        .map(|(k, id)| Thing {
            id: id.clone(),
            n: ints[k % ints.len()],
            i: [Some(i32::MAX), Some(i32::MIN), Some(7), None][k % 4],
            s: [Some(i16::MAX), Some(i16::MIN), None][k % 3],
            b: [Some(true), Some(false), None][k % 3],
            t: if k % 5 == 4 {
                None
            } else {
                Some(texts[(k * 7) % texts.len()].clone())
            },
            v: if k % 6 == 5 {
                None
            } else {
                Some(texts[(k * 3) % texts.len()].chars().take(50).collect())
            },
            ts: times[k % times.len()],
            tn: times[(k + 2) % times.len()],
            u: uuids[k % uuids.len()].clone(),
            title: format!("title {k}"),
        })
        .collect()
}

/// The row as Rust sees it once stored: uuids in canonical lower case.
fn canonical(row: &Thing) -> Thing {
    Thing {
        u: row.u.as_ref().map(|u| u.to_lowercase()),
        ..row.clone()
    }
}

/// For every row of a table with awkward values (separators, unicode, long values that get
/// hashed, integer limits, timestamps with and without zone, before 1970, NULLs, booleans,
/// uuids, multi-field scopes, an empty field set, a watched column): the tags the triggers send
/// for its INSERT, several UPDATEs and its DELETE equal the tags `Scopes::invalidate_for`
/// computes for the same values.
#[tokio::test]
async fn sql_tags_equal_rust_tags_over_awkward_values() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_eq").await;
    let table = env.table("things");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, n bigint, i integer, s smallint,
                 b boolean, t text, v varchar(60), ts timestamptz, tn timestamp, u uuid,
                 title text NOT NULL)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(TableRef::new(Some(&env.app), "things").unwrap(), "th:ing&=")
        .id(["id"])
        .scope(ScopeSet::new(["t", "b"]))
        .scope(ScopeSet::new(["n"]))
        .scope(ScopeSet::new(["s", "i"]))
        .scope(ScopeSet::new(["ts"]))
        .scope(ScopeSet::new(["tn", "u"]))
        .scope(ScopeSet::new(["v"]).watch(["title"]))
        .scope(ScopeSet::new(Vec::<String>::new()))
        .channel(env.channel.clone());
    install(&env, &[capture]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let scopes = thing_scopes();
    let insert = format!(
        "INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::uuid, $11)"
    );
    let update = format!(
        "UPDATE {table} SET n = $2, i = $3, s = $4, b = $5, t = $6, v = $7, ts = $8, tn = $9,
             u = $10::text::uuid, title = $11 WHERE id = $1"
    );
    let params = |r: &Thing| {
        (
            r.id.clone(),
            r.n,
            r.i,
            r.s,
            r.b,
            r.t.clone(),
            r.v.clone(),
            r.ts,
            r.tn,
            r.u.clone(),
            r.title.clone(),
        )
    };
    let mut checked = 0;
    let rows = things();
    for row in &rows {
        let p = params(row);
        writer
            .execute(
                &insert,
                &[
                    &p.0, &p.1, &p.2, &p.3, &p.4, &p.5, &p.6, &p.7, &p.8, &p.9, &p.10,
                ],
            )
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let expected = tag_set(&scopes.invalidate_for(None, Some(&canonical(row)), None));
        assert_eq!(sent, expected, "insert of {:?}", row.id);
        checked += 1;
    }
    // Updates: each row takes the values of another one (many fields change), then only its
    // title (the watched column), then nothing at all.
    for (k, row) in rows.iter().enumerate() {
        let other = &rows[(k + 1) % rows.len()];
        let new = Thing {
            id: row.id.clone(),
            title: format!("{} moved", row.title),
            ..other.clone()
        };
        for (old, new) in [
            (row.clone(), new.clone()),
            (
                new.clone(),
                Thing {
                    title: "retitled".into(),
                    ..new.clone()
                },
            ),
        ] {
            let p = params(&new);
            writer
                .execute(
                    &update,
                    &[
                        &p.0, &p.1, &p.2, &p.3, &p.4, &p.5, &p.6, &p.7, &p.8, &p.9, &p.10,
                    ],
                )
                .await
                .unwrap();
            let sent = listener.tags(&writer, &env.channel).await;
            let (old, new) = (canonical(&old), canonical(&new));
            let expected = tag_set(&scopes.invalidate_for(
                Some(&old),
                Some(&new),
                Some(&modified(&old, &new)),
            ));
            assert_eq!(sent, expected, "update of {:?}", row.id);
            checked += 1;
        }
        // An update that changes nothing sends nothing.
        writer
            .execute(
                &format!("UPDATE {table} SET title = title WHERE id = $1"),
                &[&row.id],
            )
            .await
            .unwrap();
        assert!(listener.tags(&writer, &env.channel).await.is_empty());
    }
    let current: Vec<Thing> = rows
        .iter()
        .enumerate()
        .map(|(k, row)| Thing {
            id: row.id.clone(),
            title: "retitled".into(),
            ..rows[(k + 1) % rows.len()].clone()
        })
        .collect();
    for row in &current {
        writer
            .execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&row.id])
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let expected = tag_set(&scopes.invalidate_for(Some(&canonical(row)), None, None));
        assert_eq!(sent, expected, "delete of {:?}", row.id);
        checked += 1;
    }
    assert!(checked >= 4 * rows.len(), "{checked}");
    // Hashed tags did occur (long ids).
    assert!(
        tag_set(&scopes.invalidate_for(None, Some(&rows[14]), None))
            .iter()
            .any(|t| t.contains('#'))
    );
    env.finish().await;
}

/// Composite ids and the other id types: the id tag of a tuple `(v1,v2)`, uuid, timestamp and
/// boolean ids, NULL inside a tuple, against `Dep::id`.
#[tokio::test]
async fn composite_and_typed_ids_equal_rust() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_ids").await;
    let table = env.table("lines");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (order_id uuid, n smallint, at timestamptz, flag boolean,
                 note text)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(TableRef::new(Some(&env.app), "lines").unwrap(), "line")
        .id(["order_id", "n", "at", "flag"])
        .channel(env.channel.clone());
    install(&env, &[capture]).await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    for (uuid, n, at, flag) in [
        (
            Some("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            Some(1_i16),
            Some(at),
            Some(true),
        ),
        (None, None, None, None),
        (
            Some("00000000-0000-0000-0000-000000000001"),
            Some(-5),
            Some(UNIX_EPOCH),
            Some(false),
        ),
    ] {
        writer
            .execute(
                &format!("INSERT INTO {table} VALUES ($1::text::uuid, $2, $3, $4, 'x')"),
                &[&uuid, &n, &at, &flag],
            )
            .await
            .unwrap();
        let sent = listener.tags(&writer, &env.channel).await;
        let id = Value::Tuple(vec![
            uuid.map(str::to_lowercase).into(),
            n.into(),
            at.map_or(Value::Null, Value::from),
            flag.into(),
        ]);
        let scopes: Scopes<()> = Scopes::new("line");
        let expected = tag_set(&[Dep::id("line", id), scopes.any()]);
        assert_eq!(sent, expected);
    }
    env.finish().await;
}

/// The helper functions install puts in the capture schema (`esc`, `val(...)`, `fin`: for
/// computing tags in SQL by hand; the triggers write the same expressions out) encode like
/// `matroska_core::tag`: names, text (awkward and long, hashed), integers, booleans,
/// timestamps with and without zone, NULL.
#[tokio::test]
async fn the_sql_helpers_encode_like_rust() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_help").await;
    let capture = matroska_postgres::SchemaName::new(env.capture.as_str()).unwrap();
    env.admin
        .batch_execute(&matroska_pg_capture::capture::helpers_sql(&capture))
        .await
        .unwrap();
    let cap = capture.quoted();
    let one = |sql: String| {
        let admin = &env.admin;
        async move {
            let row = admin.query_one(&sql, &[]).await.unwrap();
            row.get::<_, String>(0)
        }
    };
    for text in texts().iter().filter(|t| !t.is_empty()) {
        let sql_name = one(format!(
            "SELECT {cap}.fin('g:' || {cap}.esc({}))",
            sql_literal(text)
        ))
        .await;
        assert_eq!(sql_name, Dep::tag(text.as_str()).to_tag().unwrap().as_str());
        let sql_value = one(format!(
            "SELECT {cap}.fin('i:k:' || {cap}.val({}::text))",
            sql_literal(text)
        ))
        .await;
        let rust = Dep::id("k", text.as_str()).to_tag().unwrap();
        assert_eq!(sql_value, rust.as_str(), "{text:?}");
    }
    for n in [0_i64, -1, i64::MAX, i64::MIN] {
        let sql = one(format!("SELECT 'i:k:' || {cap}.val(({n})::bigint)")).await;
        assert_eq!(sql, Dep::id("k", n).to_tag().unwrap().as_str());
    }
    for b in [true, false] {
        let sql = one(format!("SELECT 'i:k:' || {cap}.val({b})")).await;
        assert_eq!(sql, Dep::id("k", b).to_tag().unwrap().as_str());
    }
    let null = one(format!("SELECT 'i:k:' || {cap}.val(NULL::text)")).await;
    assert_eq!(null, Dep::id("k", Value::Null).to_tag().unwrap().as_str());
    let micros = 1_709_210_096_789_012_u64;
    let at = UNIX_EPOCH + Duration::from_micros(micros);
    for sql_type in ["timestamptz", "timestamp"] {
        let sql = one(format!(
            "SELECT 'i:k:' || {cap}.val(to_timestamp({micros} / 1e6)::{sql_type})"
        ))
        .await;
        assert_eq!(
            sql,
            Dep::id("k", Value::from(at)).to_tag().unwrap().as_str()
        );
    }
    env.finish().await;
}

/// A SQL string literal (E'' with doubled backslashes when needed).
fn sql_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}
