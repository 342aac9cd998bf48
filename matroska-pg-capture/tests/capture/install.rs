//! Install, uninstall, names.

use matroska_core::Scopes;
use matroska_pg_capture::capture::{Capture, CaptureError, ScopeSet, TableCapture, TableRef};

use super::capture_support::{Env, RawListener, connect, quote, url};
use super::{article, articles_capture, create_articles, tag_set, trigger_count};

/// Installing twice is installing once; uninstalling twice removes once and then does nothing;
/// the dry-run script changes nothing; a re-install after uninstall works.
#[tokio::test]
async fn install_and_uninstall_are_idempotent() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_idem").await;
    create_articles(&env, &[article(1, "news", true)]).await;
    let capture = Capture::new(&env.capture).unwrap();
    let mut client = connect(&url).await;
    let decl = articles_capture(&env);
    let table = env.table("articles");

    let script = capture
        .script(&client, std::slice::from_ref(&decl))
        .await
        .unwrap();
    assert!(script.starts_with("BEGIN;") && script.ends_with("COMMIT;\n"));
    assert!(capture.list(&client).await.unwrap().is_empty());
    assert_eq!(
        trigger_count(&env, &table).await,
        0,
        "the script changed nothing"
    );

    for _ in 0..2 {
        capture
            .install(&mut client, std::slice::from_ref(&decl))
            .await
            .unwrap();
        assert_eq!(trigger_count(&env, &table).await, 4);
        let listed = capture.list(&client).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].triggers_present, 4);
        assert_eq!(listed[0].kind, "article");
        assert_eq!(listed[0].channel.as_deref(), Some(env.channel.as_str()));
    }
    assert_eq!(
        capture
            .installed_kinds(&client, &env.channel)
            .await
            .unwrap(),
        ["article"]
    );
    // The script of an installed table is the same (it would re-run idempotently).
    client.batch_execute(&script).await.unwrap();
    assert_eq!(trigger_count(&env, &table).await, 4);

    let by_name = TableRef::parse("articles").unwrap(); // not in the search_path: by name
    assert!(capture.uninstall(&mut client, &by_name).await.unwrap());
    assert_eq!(trigger_count(&env, &table).await, 0);
    assert!(!capture.uninstall(&mut client, &by_name).await.unwrap());
    assert!(capture.list(&client).await.unwrap().is_empty());
    let functions: i64 = env
        .admin
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = to_regnamespace($1)
               AND prorettype = 'trigger'::regtype",
            &[&quote(&env.capture)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(functions, 0, "the trigger function is gone");

    // Re-install, then uninstall everything and purge the schema.
    capture.install(&mut client, &[decl]).await.unwrap();
    assert_eq!(capture.uninstall_all(&mut client, true).await.unwrap(), 1);
    assert_eq!(trigger_count(&env, &table).await, 0);
    let schema: Option<String> = env
        .admin
        .query_one("SELECT to_regnamespace($1)::text", &[&quote(&env.capture)])
        .await
        .unwrap()
        .get(0);
    assert!(schema.is_none(), "purged");
    env.finish().await;
}

/// Hostile identifiers are quoted correctly (a schema and table with quotes, semicolons, spaces,
/// unicode, `$mt$`, exactly 63 bytes; mixed-case columns; a kind with separators) and the
/// captured writes still produce the right tags, then uninstall removes everything. The ones
/// that cannot be used safely are rejected with a clear error: over 63 bytes, empty, unknown
/// columns (with a case hint), unsupported types, a store schema that is not migrated.
#[tokio::test]
async fn hostile_identifiers_are_quoted_or_rejected() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_host").await;
    let schema = format!("Sch\"ema; DROP TABLE x; -- é {}", &env.app[9..]);
    env.drop_schema(&schema);
    let long_name = format!("{}{}", "T".repeat(60), "$mt");
    assert_eq!(long_name.len(), 63);
    let names = [
        "Bobby\"); DROP TABLE students;--".to_owned(),
        "日本語 テーブル $mt$ ".to_owned(),
        long_name,
    ];
    env.admin
        .batch_execute(&format!("CREATE SCHEMA {}", quote(&schema)))
        .await
        .unwrap();
    let mut client = connect(&url).await;
    let capture = Capture::new(&env.capture).unwrap();
    for name in &names {
        let table = format!("{}.{}", quote(&schema), quote(name));
        env.admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (\"I\"\"d\" integer, \"Cat egory;\" text, \"é\" boolean)"
            ))
            .await
            .unwrap();
        let decl = TableCapture::new(TableRef::new(Some(&schema), name).unwrap(), "k:in'd\\")
            .id(["I\"d"])
            .scope(
                ScopeSet::new(["cat", "pub"])
                    .column("cat", "Cat egory;")
                    .column("pub", "é"),
            )
            .channel(format!("{} \"ch\";", env.channel));
        capture
            .install(&mut client, std::slice::from_ref(&decl))
            .await
            .unwrap();
        capture.install(&mut client, &[decl]).await.unwrap();
        let channel = format!("{} \"ch\";", env.channel);
        let mut listener = RawListener::start(&url, &channel).await;
        client
            .execute(&format!("INSERT INTO {table} VALUES (7, 'a&b', true)"), &[])
            .await
            .unwrap();
        let sent = listener.tags(&client, &channel).await;
        let scopes: Scopes<(i32, String, bool)> = Scopes::new("k:in'd\\")
            .id(|r: &(i32, String, bool)| r.0)
            .describe(["cat", "pub"], |r: &(i32, String, bool)| (r.1.clone(), r.2));
        let row = (7, "a&b".to_owned(), true);
        assert_eq!(
            sent,
            tag_set(&scopes.invalidate_for(None, Some(&row), None))
        );
        assert_eq!(trigger_count(&env, &table).await, 4);
        let listed = capture.list(&client).await.unwrap();
        assert!(listed.iter().any(|i| i.table.name() == name.as_str()));
    }
    // Uninstall by the schema-qualified name, through the CLI syntax.
    for name in &names {
        let table = TableRef::parse(&format!("{}.{}", quote(&schema), quote(name))).unwrap();
        assert!(
            capture.uninstall(&mut client, &table).await.unwrap(),
            "{name}"
        );
        let qualified = format!("{}.{}", quote(&schema), quote(name));
        assert_eq!(trigger_count(&env, &qualified).await, 0, "{name}");
    }
    assert!(capture.list(&client).await.unwrap().is_empty());

    // Rejections.
    assert!(matches!(
        TableRef::new(Some(&schema), &"x".repeat(64)),
        Err(CaptureError::Identifier { .. })
    ));
    let table = TableRef::new(Some(&schema), &names[0]).unwrap();
    let base = || TableCapture::new(table.clone(), "k").id(["I\"d"]);
    let err = capture
        .install(&mut client, &[base().id(["i\"D"])])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::ColumnNotFound { .. }), "{err}");
    assert!(err.to_string().contains("I\\\"d"), "{err}");
    env.admin
        .batch_execute(&format!(
            "ALTER TABLE {}.{} ADD COLUMN doc jsonb",
            quote(&schema),
            quote(&names[0])
        ))
        .await
        .unwrap();
    let err = capture
        .install(&mut client, &[base().scope(ScopeSet::new(["doc"]))])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::UnsupportedType { .. }), "{err}");
    assert!(err.to_string().contains("jsonb") && err.to_string().contains("uuid"));
    // A watched column may have any type.
    capture
        .install(
            &mut client,
            &[base().scope(ScopeSet::new(["é"]).watch(["doc"]))],
        )
        .await
        .unwrap();
    let err = capture
        .install(&mut client, &[base().store_schema("not_a_store").unwrap()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CaptureError::StoreNotMigrated { .. }),
        "{err}"
    );
    let upper = TableRef::new(Some(&schema), &names[0].to_uppercase()).unwrap();
    let err = capture
        .install(&mut client, &[TableCapture::new(upper, "k").id(["I\"d"])])
        .await
        .unwrap_err();
    assert!(matches!(err, CaptureError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains("did you mean"), "{err}");
    assert_eq!(capture.uninstall_all(&mut client, true).await.unwrap(), 1);
    env.finish().await;
}

/// A registry written by format 1 (no `members` or `columns`): `list` still reads it and says
/// that partitions and columns were not recorded; re-installing upgrades the registry and the
/// row, after which the check is complete.
#[tokio::test]
async fn a_format_1_registry_is_listed_and_upgraded_by_reinstalling() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "cap_fmt1").await;
    create_articles(&env, &[article(1, "news", true)]).await;
    let capture = Capture::new(&env.capture).unwrap();
    let mut client = connect(&url).await;
    let decl = articles_capture(&env);
    capture
        .install(&mut client, std::slice::from_ref(&decl))
        .await
        .unwrap();
    env.admin
        .batch_execute(&format!(
            "ALTER TABLE {}.installed DROP COLUMN members, DROP COLUMN columns;
             UPDATE {0}.installed SET format = 1;",
            quote(&env.capture)
        ))
        .await
        .unwrap();
    let listed = capture.list(&client).await.unwrap();
    assert_eq!(
        listed[0].issues,
        [matroska_pg_capture::capture::CaptureIssue::OlderFormat { format: 1 }]
    );
    capture.install(&mut client, &[decl]).await.unwrap();
    let listed = capture.list(&client).await.unwrap();
    assert!(listed[0].is_complete(), "{:?}", listed[0].issues);
    env.finish().await;
}
