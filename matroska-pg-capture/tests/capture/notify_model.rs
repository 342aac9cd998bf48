//! The notify protocol (the triggers' inline path and the `notify` helper) against a model, over
//! random transactions: statements that insert, update (to the same or another title) and delete
//! rows, some inside savepoints that are rolled back, transactions committed or rolled back, and
//! a small `max_notifies`. After each transaction, what arrived must be what the model says:
//! nothing for a rollback; otherwise one event per statement that changed rows (in order, with
//! its operation), each row it changed named by its id tag (a tag an earlier statement of the
//! transaction sent is not repeated), no id of rolled-back work, and past the cap one `a:<kind>`
//! event standing for the rest.
//!
//! `MATROSKA_TEST_SEED` replays a run; `MATROSKA_MODEL_CASES` sets the number of transactions
//! (default 24).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use matroska_pg_capture::capture::{Capture, TableCapture, TableRef};
use matroska_pg_capture::listener::{Operation, TagBatch};
use matroska_testkit::support::Rng;

use super::capture_support::{Env, RawListener, connect, url};

/// One statement as the model sees it: its SQL, operation, and the ids whose rows it changes.
struct Statement {
    sql: String,
    op: Operation,
    changed: BTreeSet<i64>,
}

/// A random statement on `rows` (id -> title), applied to it.
fn statement(rng: &mut Rng, table: &str, rows: &mut BTreeMap<i64, String>) -> Statement {
    let ids: Vec<i64> = (1..=6).filter(|_| rng.below(2) == 0).collect();
    let list = |ids: &[i64]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match rng.below(3) {
        0 => {
            let new: Vec<i64> = ids
                .into_iter()
                .filter(|id| !rows.contains_key(id))
                .collect();
            for id in &new {
                rows.insert(*id, "a".to_owned());
            }
            let values = if new.is_empty() {
                "SELECT 0, 'a' WHERE false".to_owned()
            } else {
                format!(
                    "VALUES {}",
                    new.iter()
                        .map(|id| format!("({id}, 'a')"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            Statement {
                sql: format!("INSERT INTO {table} (id, title) {values}"),
                op: Operation::Insert,
                changed: new.into_iter().collect(),
            }
        }
        1 => {
            let title = if rng.below(2) == 0 { "a" } else { "b" };
            let mut changed = BTreeSet::new();
            for id in &ids {
                if let Some(old) = rows.get_mut(id)
                    && old != title
                {
                    title.clone_into(old);
                    changed.insert(*id);
                }
            }
            Statement {
                sql: format!(
                    "UPDATE {table} SET title = '{title}' WHERE id = ANY ('{{{}}}'::bigint[])",
                    list(&ids)
                ),
                op: Operation::Update,
                changed,
            }
        }
        _ => {
            let changed: BTreeSet<i64> = ids
                .iter()
                .copied()
                .filter(|id| rows.remove(id).is_some())
                .collect();
            Statement {
                sql: format!(
                    "DELETE FROM {table} WHERE id = ANY ('{{{}}}'::bigint[])",
                    list(&ids)
                ),
                op: Operation::Delete,
                changed,
            }
        }
    }
}

#[tokio::test]
async fn notifications_follow_the_model_over_random_transactions() {
    let Some(url) = url() else { return };
    let mut rng = Rng::from_env();
    let cases: usize = std::env::var("MATROSKA_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let max_notifies = 2 + u32::try_from(rng.below(3)).unwrap();
    let env = Env::new(&url, "nmodel").await;
    let table = env.table("articles");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, title text NOT NULL)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(
        TableRef::new(Some(&env.app), "articles").unwrap(),
        "article",
    )
    .id(["id"])
    .channel(&env.channel)
    .max_notifies(max_notifies);
    let mut admin = connect(&url).await;
    Capture::new(&env.capture)
        .unwrap()
        .install(&mut admin, &[capture])
        .await
        .unwrap();
    let mut raw = RawListener::start(&url, &env.channel).await;
    let writer = connect(&url).await;
    let mut committed: BTreeMap<i64, String> = BTreeMap::new();

    for case in 0..cases {
        let commit = rng.below(5) != 0;
        let mut rows = committed.clone();
        let mut sql = String::from("BEGIN;\n");
        let mut effective: Vec<Statement> = Vec::new();
        let mut rolled_back_ids = BTreeSet::new();
        for _ in 0..=rng.below(5) {
            if rng.below(4) == 0 {
                // A savepoint rolled back: its changes and notifications are undone.
                let mut scratch = rows.clone();
                let s = statement(&mut rng, &table, &mut scratch);
                rolled_back_ids.extend(s.changed.iter().copied());
                let _ = writeln!(sql, "SAVEPOINT s; {}; ROLLBACK TO SAVEPOINT s;", s.sql);
            } else {
                let s = statement(&mut rng, &table, &mut rows);
                let _ = writeln!(sql, "{};", s.sql);
                effective.push(s);
            }
        }
        sql.push_str(if commit { "COMMIT;" } else { "ROLLBACK;" });
        writer.batch_execute(&sql).await.unwrap();
        if commit {
            committed = rows;
        }
        let payloads = raw.until_marker(&writer, &env.channel).await;
        let context = format!("case {case} (max_notifies {max_notifies}):\n{sql}\n{payloads:#?}");
        let batches: Vec<TagBatch> = payloads
            .iter()
            .map(|p| {
                assert!(p.len() < 8000, "{context}");
                TagBatch::parse(p, 0).unwrap_or_else(|e| panic!("{e}: {context}"))
            })
            .collect();
        if !commit {
            assert!(batches.is_empty(), "a rollback sent something: {context}");
            continue;
        }
        let changing: Vec<&Statement> =
            effective.iter().filter(|s| !s.changed.is_empty()).collect();
        let received: BTreeSet<String> = batches
            .iter()
            .flat_map(|b| b.tags().iter().map(ToString::to_string))
            .collect();
        let all_ids: BTreeSet<i64> = changing
            .iter()
            .flat_map(|s| s.changed.iter().copied())
            .collect();
        for batch in &batches {
            assert_eq!(
                batch.table(),
                Some(&*format!("{}.articles", env.app)),
                "{context}"
            );
        }
        if received.contains("a:article") {
            // Past the cap: the kind-wide tag covers the rest; never more than cap + 1.
            assert!(
                batches.len() <= max_notifies as usize + 1,
                "more notifications than the cap allows: {context}"
            );
            assert!(
                changing.len() + 1 > max_notifies as usize,
                "degraded early: {context}"
            );
        } else {
            let ops: Vec<_> = batches.iter().map(TagBatch::operation).collect();
            let expected: Vec<_> = changing.iter().map(|s| Some(s.op)).collect();
            assert_eq!(
                ops, expected,
                "one event per statement that changed rows: {context}"
            );
            for id in &all_ids {
                assert!(
                    received.contains(&format!("i:article:{id}")),
                    "id {id} missing: {context}"
                );
            }
        }
        // Nothing about rows only rolled-back work touched.
        for id in rolled_back_ids.difference(&all_ids) {
            assert!(
                !received.contains(&format!("i:article:{id}")),
                "id {id} of a rolled-back savepoint was sent: {context}"
            );
        }
        // No tag is sent twice in a transaction.
        let total: usize = batches.iter().map(|b| b.tags().len()).sum();
        assert_eq!(total, received.len(), "a tag was sent twice: {context}");
    }
    env.finish().await;
}
