//! Change events: each statement's notification names the schema-qualified table, the operation
//! and the send time (the database's clock); the listener adds the receive time and the latency;
//! a table captured for events only (no id, no scope) sends events with the kind-wide tag.

use std::time::{Duration, SystemTime};

use matroska_core::Dep;
use matroska_pg_capture::capture::{Capture, TableCapture, TableRef};
use matroska_pg_capture::listener::{Event, Listener, Operation, TagBatch};

use super::WAIT;
use super::capture_support::{Env, RawListener, connect, url};

/// The batches of the payloads before the marker.
async fn batches(
    listener: &mut RawListener,
    writer: &tokio_postgres::Client,
    channel: &str,
) -> Vec<TagBatch> {
    let payloads = listener.until_marker(writer, channel).await;
    payloads
        .iter()
        .map(|p| TagBatch::parse(p, 0).unwrap_or_else(|e| panic!("{e}: {p}")))
        .collect()
}

fn strs(batch: &TagBatch) -> Vec<&str> {
    batch
        .tags()
        .iter()
        .map(matroska_core::Tag::as_str)
        .collect()
}

#[tokio::test]
async fn each_statement_says_its_table_operation_and_send_time() {
    let Some(url) = url() else { return };
    let env = Env::new(&url, "ev").await;
    let table = env.table("Articles");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, title text)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(
        TableRef::new(Some(&env.app), "Articles").unwrap(),
        "article",
    )
    .id(["id"])
    .channel(&env.channel);
    let (mut raw, writer) = env.install_and_listen(capture).await;

    let before = SystemTime::now();
    for statement in [
        format!("INSERT INTO {table} VALUES (5, 'a'), (6, 'b')"),
        format!("UPDATE {table} SET title = 'c' WHERE id = 5"),
        format!("DELETE FROM {table} WHERE id = 6"),
        format!("TRUNCATE {table}"),
    ] {
        writer.batch_execute(&statement).await.unwrap();
    }
    let got = batches(&mut raw, &writer, &env.channel).await;
    let after = SystemTime::now();

    let expected_table = format!("{}.\"Articles\"", env.app);
    let ops: Vec<_> = got.iter().map(TagBatch::operation).collect();
    assert_eq!(
        ops,
        [
            Some(Operation::Insert),
            Some(Operation::Update),
            Some(Operation::Delete),
            Some(Operation::Truncate)
        ],
        "{got:?}"
    );
    for batch in &got {
        // format('%I.%I'): the lower-case schema bare, the mixed-case table quoted.
        assert_eq!(batch.table(), Some(expected_table.as_str()), "{batch:?}");
        // The database's clock, on this machine: between the first statement and the marker.
        let sent = batch.sent_at().unwrap();
        assert!(
            sent >= before - Duration::from_secs(1) && sent <= after + Duration::from_secs(1),
            "{batch:?}"
        );
    }
    assert_eq!(strs(&got[0]), ["i:article:5", "i:article:6", "k:article"]);
    assert_eq!(strs(&got[1]), ["i:article:5", "k:article"]);
    assert_eq!(strs(&got[2]), ["i:article:6", "k:article"]);
    assert_eq!(strs(&got[3]), ["a:article"]);
    // In order of sending.
    assert!(got.windows(2).all(|w| w[0].sent_at() <= w[1].sent_at()));

    // Through a Listener: the receive time and the latency.
    let listener = Listener::builder(&url)
        .channel(&env.channel)
        .start()
        .unwrap();
    let mut events = listener.subscribe();
    listener.wait_connected(WAIT).await.unwrap();
    writer
        .batch_execute(&format!("INSERT INTO {table} VALUES (7, 'd')"))
        .await
        .unwrap();
    let batch = loop {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            Some(Event::Tags(batch)) => break batch,
            Some(_) => {}
            None => panic!("the listener stopped"),
        }
    };
    assert_eq!(batch.operation(), Some(Operation::Insert));
    assert_eq!(strs(&batch), ["i:article:7", "k:article"]);
    let latency = batch.latency().unwrap();
    assert_eq!(
        batch
            .received_at()
            .duration_since(batch.sent_at().unwrap())
            .unwrap_or_default(),
        latency
    );
    assert!(batch.received_at() <= SystemTime::now());
    listener.shutdown().await;
    env.finish().await;
}

#[tokio::test]
async fn a_table_without_id_is_captured_for_events_only() {
    let Some(url) = url() else { return };
    let mut env = Env::new(&url, "evo").await;
    let store = env.store().await;
    let table = env.table("audit");
    // No primary key, no id: PGCacheWatch's kind of table.
    env.admin
        .batch_execute(&format!("CREATE TABLE {table} (who text, what text)"))
        .await
        .unwrap();
    let app = TableRef::new(Some(&env.app), "audit").unwrap();
    // Without events_only, a table needs an id.
    assert!(TableCapture::new(app.clone(), "audit").validate().is_err());
    let capture = TableCapture::new(app, "audit")
        .events_only()
        .channel(&env.channel)
        .store_schema(store.schema().as_str())
        .unwrap();
    let mut admin = connect(&url).await;
    Capture::new(&env.capture)
        .unwrap()
        .install(&mut admin, &[capture])
        .await
        .unwrap();
    let listed = Capture::new(&env.capture)
        .unwrap()
        .list(&admin)
        .await
        .unwrap();
    assert!(listed[0].is_complete(), "{:?}", listed[0].issues);

    // An entry that depends on the kind, in the PgStore: the first event invalidates it.
    super::put_tags(&store, "audit-page", &[Dep::kind("audit")]).await;
    assert!(super::hit(&store, "audit-page").await);

    let mut raw = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    for statement in [
        format!("INSERT INTO {table} VALUES ('a', 'x'), ('b', 'y')"),
        format!("UPDATE {table} SET what = 'z' WHERE who = 'nobody'"),
        format!(
            "BEGIN; UPDATE {table} SET what = 'z'; DELETE FROM {table} WHERE who = 'a'; COMMIT;"
        ),
    ] {
        writer.batch_execute(&statement).await.unwrap();
    }
    let got = batches(&mut raw, &writer, &env.channel).await;
    let ops: Vec<_> = got.iter().map(TagBatch::operation).collect();
    // The UPDATE that changed no rows sends nothing; in the transaction the kind's tag went with
    // the first statement, so the DELETE's event carries none.
    assert_eq!(
        ops,
        [
            Some(Operation::Insert),
            Some(Operation::Update),
            Some(Operation::Delete)
        ],
        "{got:?}"
    );
    assert_eq!(strs(&got[0]), ["a:audit"]);
    assert_eq!(strs(&got[1]), ["a:audit"]);
    assert!(got[2].tags().is_empty(), "{got:?}");
    assert!(
        got.iter()
            .all(|b| b.table() == Some(&*format!("{}.audit", env.app)))
    );
    assert!(
        !super::hit(&store, "audit-page").await,
        "the store was invalidated"
    );
    store.close();
    env.finish().await;
}
