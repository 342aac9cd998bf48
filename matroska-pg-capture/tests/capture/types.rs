//! Column types whose SQL equality is not byte equality (defect 8): `char(n)` (clients receive
//! the padding, the trigger's `::text` strips it), `citext` and nondeterministic collations
//! (`'News' = 'news'`). The tag Rust computes from a value the application holds and the tag the
//! trigger computes from the row would differ, so install refuses them as ids and scope fields.

use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};

use super::capture_support::{Env, connect, quote, url};

/// The quoted schema of the `citext` extension: the database's, or created in the test's schema
/// (dropped with it).
async fn citext_schema(env: &Env) -> String {
    let row = env
        .admin
        .query_opt(
            "SELECT format('%I', n.nspname) FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'citext'",
            &[],
        )
        .await
        .unwrap();
    if let Some(row) = row {
        return row.get(0);
    }
    env.admin
        .batch_execute(&format!(
            "CREATE EXTENSION citext SCHEMA {}",
            quote(&env.app)
        ))
        .await
        .unwrap();
    quote(&env.app)
}

/// `char(n)`, a domain over it, `citext` and a column with a nondeterministic collation are each
/// refused, as an id and as a scope field, with an error that names the column and the reason;
/// as watched columns (compared by their binary image, never encoded) they are accepted, and so
/// is a deterministic collation.
#[tokio::test]
async fn char_n_citext_and_nondeterministic_collations_are_refused_at_install() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_types").await;
    let ext = citext_schema(&env).await;
    let citext = format!("{ext}.citext");
    let app = quote(&env.app);
    env.admin
        .batch_execute(&format!(
            "CREATE COLLATION {app}.ci (provider = icu, locale = 'und-u-ks-level2',
                 deterministic = false);
             CREATE DOMAIN {app}.code AS char(3);
             CREATE TABLE {app}.t (id bigint, fixed char(4), ci {citext}, nd text COLLATE {app}.ci,
                 code {app}.code, ok text, c text COLLATE \"C\")"
        ))
        .await
        .unwrap();
    // Why: the padding reaches the client, and citext equality ignores case.
    let row = env
        .admin
        .query_one(
            &format!(
                "SELECT 'ab'::char(4), 'ab'::char(4)::text,
                        'News'::{citext} OPERATOR({ext}.=) 'news'::{citext}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ab  ");
    assert_eq!(row.get::<_, String>(1), "ab");
    assert!(row.get::<_, bool>(2));

    let capture = Capture::new(&env.capture).unwrap();
    let mut client = connect(&url).await;
    let table = || TableCapture::new(TableRef::new(Some(&env.app), "t").unwrap(), "t");
    for (column, why) in [
        ("fixed", "pad"),
        ("code", "pad"),
        ("ci", "citext"),
        ("nd", "nondeterministic"),
    ] {
        for (role, decl) in [
            ("an id", table().id([column])),
            (
                "a scope field",
                table().id(["id"]).scope(ScopeSet::new([column])),
            ),
        ] {
            let Err(err) = capture.install(&mut client, &[decl]).await else {
                panic!(
                    "{column} was accepted as {role}, but its SQL equality is not byte equality \
                     ({why}): Rust and SQL tags would disagree"
                )
            };
            let text = err.to_string();
            assert!(
                text.contains(&format!("{column:?}")) && text.contains(why),
                "{role} {column}: {text}"
            );
        }
    }
    assert!(
        capture.list(&client).await.unwrap().is_empty(),
        "nothing was installed"
    );
    // Watched columns are compared, not encoded; a deterministic collation is byte equality.
    capture
        .install(
            &mut client,
            &[table()
                .id(["id"])
                .scope(ScopeSet::new(["ok"]).watch(["fixed", "ci", "nd", "code"]))
                .scope(ScopeSet::new(["c"]))],
        )
        .await
        .unwrap();
    assert_eq!(capture.list(&client).await.unwrap().len(), 1);
    env.finish().await;
}
