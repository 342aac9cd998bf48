//! Partitioned tables and inheritance (defect 7): statement triggers fire only for the table a
//! statement names, so the capture of a table is installed on every partition and inheritance
//! child too; a partition or child cannot be captured on its own (writes through its parent
//! would bypass it). `list` reports what install cannot watch: partitions created, attached,
//! detached or dropped since, disabled triggers, captured columns renamed or dropped.

use matroska_core::{Cache, Dep, Loaded};
use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
use matroska_postgres::PgStore;

use super::capture_support::{Env, RawListener, connect, url};
use super::{hit, install, trigger_count};

/// Caches `key` in the PgStore through the Cache (which attaches `a:<kind>`), depending on
/// `dep`, and checks that it is a hit.
async fn cached(store: &PgStore, key: &str, dep: Dep) {
    let cache = Cache::new(store.clone());
    let owned = key.to_owned();
    let _: String = cache
        .get_or_insert_with(key, || async move {
            Ok::<_, std::io::Error>(Loaded::new(owned).dep(dep))
        })
        .await
        .unwrap();
    assert!(hit(store, key).await, "{key} is cached before the write");
}

fn scope(kind: &str, category: &str) -> Dep {
    matroska_core::Scopes::<String>::new(kind.to_owned())
        .describe(["category"], String::clone)
        .condition([("category", category.into())])
        .unwrap()
}

/// `parts` partitioned by region, `parts_us` partitioned again by id; `base` with an inheritance
/// child `base_child` (which has a column of its own, named like the trigger's side marker).
async fn create_hierarchies(env: &Env) {
    let (parts, base) = (env.table("parts"), env.table("base"));
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {parts} (id bigint, region text, category text, title text)
                 PARTITION BY LIST (region);
             CREATE TABLE {} PARTITION OF {parts} FOR VALUES IN ('eu');
             CREATE TABLE {} PARTITION OF {parts} FOR VALUES IN ('us') PARTITION BY RANGE (id);
             CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (MINVALUE) TO (1000);
             CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (1000) TO (MAXVALUE);
             INSERT INTO {parts} VALUES (1, 'eu', 'news', 't'), (2, 'eu', 'sport', 't'),
                 (2000, 'us', 'news', 't'), (99, 'eu', 'other', 't');
             CREATE TABLE {base} (id bigint, category text, title text);
             CREATE TABLE {} (mt_side integer) INHERITS ({base});
             INSERT INTO {} VALUES (1, 'news', 't', 0), (2, 'news', 't', 0);",
            env.table("parts_eu"),
            env.table("parts_us"),
            env.table("parts_us_low"),
            env.table("parts_us"),
            env.table("parts_us_high"),
            env.table("parts_us"),
            env.table("base_child"),
            env.table("base_child"),
        ))
        .await
        .unwrap();
}

fn capture_of(env: &Env, table: &str, kind: &str, store: &PgStore) -> TableCapture {
    TableCapture::new(TableRef::new(Some(&env.app), table).unwrap(), kind)
        .id(["id"])
        .scope(ScopeSet::new(["category"]))
        .channel(env.channel.clone())
        .store_schema(store.schema().as_str())
        .unwrap()
}

/// Writes made straight to a partition (of a partition) or to an inheritance child invalidate
/// what they touch, in the PgStore inside the writer's transaction and through NOTIFY, exactly
/// as writes through the parent do; an entry about an untouched row stays cached.
#[tokio::test]
async fn a_direct_write_to_a_partition_or_an_inheritance_child_invalidates() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_part").await;
    create_hierarchies(&env).await;
    let store = env.store().await;
    install(
        &env,
        &[
            capture_of(&env, "parts", "part", &store),
            capture_of(&env, "base", "base", &store),
        ],
    )
    .await;
    let mut listener = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    cached(&store, "part:99", Dep::id("part", 99)).await;

    cached(&store, "part:1", Dep::id("part", 1)).await;
    writer
        .batch_execute(&format!(
            "UPDATE {} SET title = 'x' WHERE id = 1",
            env.table("parts_eu")
        ))
        .await
        .unwrap();
    assert!(
        !hit(&store, "part:1").await,
        "a direct UPDATE of the partition parts_eu was not captured"
    );
    assert!(
        listener
            .tags(&writer, &env.channel)
            .await
            .contains("i:part:1")
    );

    cached(&store, "part:2000", Dep::id("part", 2000)).await;
    cached(&store, "part news", scope("part", "news")).await;
    writer
        .batch_execute(&format!(
            "DELETE FROM {} WHERE id = 2000",
            env.table("parts_us_high")
        ))
        .await
        .unwrap();
    assert!(
        !hit(&store, "part:2000").await,
        "a direct DELETE from the sub-partition parts_us_high was not captured"
    );
    assert!(
        !hit(&store, "part news").await,
        "the scope the deleted row left"
    );

    cached(&store, "part sport", scope("part", "sport")).await;
    writer
        .batch_execute(&format!(
            "INSERT INTO {} VALUES (5, 'us', 'sport', 'new')",
            env.table("parts_us_low")
        ))
        .await
        .unwrap();
    assert!(
        !hit(&store, "part sport").await,
        "a direct INSERT into parts_us_low"
    );

    cached(&store, "base:1", Dep::id("base", 1)).await;
    cached(&store, "base news", scope("base", "news")).await;
    writer
        .batch_execute(&format!(
            "UPDATE {} SET category = 'sport' WHERE id = 1",
            env.table("base_child")
        ))
        .await
        .unwrap();
    assert!(
        !hit(&store, "base:1").await,
        "a direct UPDATE of the inheritance child base_child was not captured"
    );
    assert!(!hit(&store, "base news").await);
    let sent = listener.tags(&writer, &env.channel).await;
    assert!(
        sent.contains("i:base:1") && sent.contains("s:base:category='sport"),
        "{sent:?}"
    );

    // Through the parent (rows of the child included): its trigger, once.
    cached(&store, "base:2", Dep::id("base", 2)).await;
    writer
        .batch_execute(&format!(
            "UPDATE {} SET title = 'y' WHERE id = 2",
            env.table("base")
        ))
        .await
        .unwrap();
    assert!(!hit(&store, "base:2").await);
    assert!(
        hit(&store, "part:99").await,
        "an untouched row's entry stays cached"
    );
    store.close();
    env.finish().await;
}

/// A partition or an inheritance child cannot be captured on its own: writes made through its
/// parent fire only the parent's statement triggers. The error names the table to capture.
#[tokio::test]
async fn capturing_a_partition_or_child_alone_is_refused_naming_its_root() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_partref").await;
    create_hierarchies(&env).await;
    let store = env.store().await;
    let capture = Capture::new(&env.capture).unwrap();
    let mut client = connect(&url).await;
    for (table, root) in [
        ("parts_us_high", "parts"),
        ("parts_eu", "parts"),
        ("base_child", "base"),
    ] {
        let Err(err) = capture
            .install(&mut client, &[capture_of(&env, table, "k", &store)])
            .await
        else {
            panic!("{table} was captured on its own: writes through {root} would not be seen")
        };
        let text = err.to_string();
        assert!(
            text.contains(table) && text.contains(&format!("\"{root}\"")),
            "{text}"
        );
        assert_eq!(
            trigger_count(&env, &env.table(table)).await,
            0,
            "nothing installed"
        );
    }
    // A child that also inherits from a table outside the hierarchy: writes through that table
    // would reach the child's rows unseen.
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {other} (id bigint, category text, title text);
             CREATE TABLE {} () INHERITS ({}, {other});",
            env.table("multi"),
            env.table("base"),
            other = env.table("other"),
        ))
        .await
        .unwrap();
    let err = capture
        .install(&mut client, &[capture_of(&env, "base", "base", &store)])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"multi\"") && text.contains("\"other\""),
        "{text}"
    );
    store.close();
    env.finish().await;
}

/// The partitions of a captured table change after install (one attached with its rows, one
/// created, one detached, one dropped): no trigger fires for that, so `list` reports each change,
/// and a re-install invalidates everything about the kind (`a:<kind>`, which the Cache attaches
/// to every entry of the kind) in the PgStore and by NOTIFY, installs the triggers on the new
/// partitions, removes them from the detached one, and leaves `list` clean. A disabled trigger
/// on a partition is reported too, and re-enabling it clears the report.
#[tokio::test]
async fn list_reports_partitions_that_changed_and_a_reinstall_invalidates_the_kind() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_partch").await;
    create_hierarchies(&env).await;
    let store = env.store().await;
    let decl = capture_of(&env, "parts", "part", &store);
    install(&env, std::slice::from_ref(&decl)).await;
    let capture = Capture::new(&env.capture).unwrap();
    let client = connect(&url).await;
    let listed = capture.list(&client).await.unwrap();
    let parts = listed.iter().find(|i| i.table.name() == "parts").unwrap();
    assert!(parts.is_complete(), "{:?}", parts.issues);
    assert_eq!(parts.members.len(), 4, "{:?}", parts.members);

    let (root, ap, new, eu, low) = (
        env.table("parts"),
        env.table("parts_ap"),
        env.table("parts_new"),
        env.table("parts_eu"),
        env.table("parts_us_low"),
    );
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {ap} (id bigint, region text, category text, title text);
             INSERT INTO {ap} VALUES (7, 'ap', 'news', 't');
             ALTER TABLE {root} ATTACH PARTITION {ap} FOR VALUES IN ('ap');
             CREATE TABLE {new} PARTITION OF {root} FOR VALUES IN ('new');
             ALTER TABLE {root} DETACH PARTITION {eu};
             DROP TABLE {low};"
        ))
        .await
        .unwrap();
    cached(&store, "part news", scope("part", "news")).await;
    let listed = capture.list(&client).await.unwrap();
    let issues: Vec<String> = listed[0].issues.iter().map(ToString::to_string).collect();
    let text = issues.join("\n");
    assert_eq!(issues.len(), 4, "{text}");
    for expected in [
        "\"parts_ap\" joined since install",
        "\"parts_new\" joined since install",
        "\"parts_eu\" was detached",
        "\"parts_us_low\" was dropped",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    let mut listener = RawListener::start(&url, &env.channel).await;
    install(&env, std::slice::from_ref(&decl)).await;
    assert!(
        !hit(&store, "part news").await,
        "the re-install invalidated a:part (the attached rows were never captured)"
    );
    assert!(
        listener
            .tags(&client, &env.channel)
            .await
            .contains("a:part")
    );
    let listed = capture.list(&client).await.unwrap();
    assert!(listed[0].is_complete(), "{:?}", listed[0].issues);
    assert_eq!(trigger_count(&env, &ap).await, 4);
    assert_eq!(
        trigger_count(&env, &eu).await,
        0,
        "the detached table lost its triggers"
    );

    // A disabled trigger on a partition, then enabled again.
    let trigger = format!("{}_del", env.capture);
    let disable = |state: &str| {
        format!(
            "ALTER TABLE {ap} {state} TRIGGER {}",
            super::capture_support::quote(&trigger)
        )
    };
    env.admin.batch_execute(&disable("DISABLE")).await.unwrap();
    let listed = capture.list(&client).await.unwrap();
    assert!(
        matches!(
            listed[0].issues.as_slice(),
            [
                matroska_pg_capture::capture::CaptureIssue::DisabledTrigger {
                    replica_only: false,
                    ..
                }
            ]
        ),
        "{:?}",
        listed[0].issues
    );
    env.admin.batch_execute(&disable("ENABLE")).await.unwrap();
    assert!(capture.list(&client).await.unwrap()[0].is_complete());
    // A re-install that finds nothing changed invalidates nothing.
    cached(&store, "part news", scope("part", "news")).await;
    install(&env, std::slice::from_ref(&decl)).await;
    assert!(hit(&store, "part news").await);
    // Uninstall removes the triggers from every partition too.
    let mut admin = connect(&url).await;
    assert!(capture.uninstall(&mut admin, decl.table()).await.unwrap());
    for table in [&root, &ap, &new, &env.table("parts_us_high")] {
        assert_eq!(trigger_count(&env, table).await, 0, "{table}");
    }
    store.close();
    env.finish().await;
}

/// The boundary of install's catalog read: a partition created between making the install
/// script (which reads the catalog) and running it would be left without triggers; the script
/// locks the hierarchy and refuses to run when it changed, installing nothing.
#[tokio::test]
async fn an_install_script_refuses_to_run_once_the_partitions_changed() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "cap_partrace").await;
    create_hierarchies(&env).await;
    let store = env.store().await;
    let capture = Capture::new(&env.capture).unwrap();
    let client = connect(&url).await;
    let script = capture
        .script(&client, &[capture_of(&env, "parts", "part", &store)])
        .await
        .unwrap();
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {} PARTITION OF {} FOR VALUES IN ('late')",
            env.table("parts_late"),
            env.table("parts")
        ))
        .await
        .unwrap();
    let err = client.batch_execute(&script).await.unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("changed since this install script was made"),
        "{err:?}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        trigger_count(&env, &env.table("parts")).await,
        0,
        "nothing installed"
    );
    store.close();
    env.finish().await;
}
