//! The notify protocol (the triggers' inline path and the `notify` helper) against a model, over
//! random transactions: statements that insert, update (to the same or another title) and delete
//! rows, some inside savepoints that are rolled back, transactions committed or rolled back, and
//! a small `max_notifies`. After each transaction, what arrived must be what the model says:
//! nothing for a rollback; otherwise one event per statement that changed rows (in order, with
//! its operation), each row it changed named by its id tag (a tag an earlier statement of the
//! transaction sent is not repeated), no id of rolled-back work, and past the cap one `a:<kind>`
//! event standing for the rest.
//!
//! A second model checks the tags themselves, statement by statement: random INSERTs, UPDATEs
//! (of scope fields, of a watched column, of nothing, of the id) and DELETEs of one row or of
//! several, on a table with scopes, each in its own transaction; each statement's one event must
//! carry exactly the tags `Scopes::invalidate_for` gives for the rows it changed (a row whose id
//! changed counts as a delete and an insert). Statements of one row and of several are both
//! exercised.
//!
//! `MATROSKA_TEST_SEED` replays a run; `MATROSKA_MODEL_CASES` sets the number of transactions
//! (default 24; the tag model runs five statements per case).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use matroska_core::Scopes;
use matroska_pg_capture::capture::{ScopeSet, TableCapture, TableRef};
use matroska_pg_capture::listener::{Operation, TagBatch};
use matroska_testkit::support::Rng;

use super::capture_support::{Env, url};
use super::{Article, tag_set};

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
    let cases = model_cases();
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
    let (mut raw, writer) = env.install_and_listen(capture).await;
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

fn model_cases() -> usize {
    std::env::var("MATROSKA_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

/// The scopes of the tag model's table, as the application would declare them: a two-field
/// set, a set watching `title`, and the empty set.
fn scoped() -> Scopes<Article> {
    Scopes::new("article")
        .id(|a: &Article| a.id)
        .describe(["category", "published"], |a: &Article| {
            (a.category.clone(), a.published)
        })
        .describe_watching(["published"], &["title"], |a: &Article| a.published)
        .describe([], |_: &Article| ())
}

fn sql_text(value: Option<&str>) -> String {
    value.map_or_else(
        || "NULL".to_owned(),
        |v| format!("'{}'", v.replace('\'', "''")),
    )
}

fn sql_bool(value: Option<bool>) -> String {
    value.map_or_else(|| "NULL".to_owned(), |v| v.to_string())
}

fn random_category(rng: &mut Rng) -> Option<String> {
    ["news", "sport", "it's"]
        .get(rng.below(4))
        .map(|c| (*c).to_owned())
}

fn random_published(rng: &mut Rng) -> Option<bool> {
    [Some(true), Some(false), None][rng.below(3)]
}

/// One, often, or two to four distinct ids among `pool`.
fn pick(rng: &mut Rng, pool: &[i64]) -> Vec<i64> {
    let want = if rng.below(2) == 0 {
        1
    } else {
        2 + rng.below(3)
    };
    let mut pool = pool.to_vec();
    let mut ids = Vec::new();
    while ids.len() < want && !pool.is_empty() {
        ids.push(pool.swap_remove(rng.below(pool.len())));
    }
    ids
}

/// A tag-model statement: its SQL, operation, the rows in its transition tables (what decides
/// the triggers' path) and the tags it must send (none when it changed nothing).
struct Tagged {
    sql: String,
    op: Operation,
    rows: usize,
    tags: BTreeSet<String>,
}

/// A random statement on `rows`, applied to it, with the tags the model expects.
fn tagged_statement(rng: &mut Rng, table: &str, rows: &mut BTreeMap<i64, Article>) -> Tagged {
    let scopes = scoped();
    let present: Vec<i64> = rows.keys().copied().collect();
    let absent: Vec<i64> = (-8..=8)
        .filter(|id| *id != 0 && !rows.contains_key(id))
        .collect();
    let list = |ids: &[i64]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut tags = BTreeSet::new();
    // An insert needs a free id, the others a row.
    let choice = match (present.is_empty(), absent.is_empty()) {
        (true, _) => 0,
        (_, true) => 1 + rng.below(4),
        _ => rng.below(5),
    };
    match choice {
        0 => {
            let ids = pick(rng, &absent);
            let mut values = Vec::new();
            for id in &ids {
                let row = Article {
                    id: *id,
                    category: random_category(rng),
                    published: random_published(rng),
                    title: if rng.below(2) == 0 { "t" } else { "u" }.to_owned(),
                };
                values.push(format!(
                    "({id}, {}, {}, '{}')",
                    sql_text(row.category.as_deref()),
                    sql_bool(row.published),
                    row.title
                ));
                tags.extend(tag_set(&scopes.invalidate_for(None, Some(&row), None)));
                rows.insert(*id, row);
            }
            Tagged {
                sql: format!(
                    "INSERT INTO {table} (id, category, published, title) VALUES {}",
                    values.join(", ")
                ),
                op: Operation::Insert,
                rows: ids.len(),
                tags,
            }
        }
        1 | 2 => {
            // Some of the columns set to one random value each (possibly their current one).
            let ids = pick(rng, &present);
            let category = (rng.below(2) == 0).then(|| random_category(rng));
            let published = (rng.below(2) == 0).then(|| random_published(rng));
            let title = (rng.below(2) == 0).then(|| if rng.below(2) == 0 { "t" } else { "u" });
            let mut set = vec!["id = id".to_owned()];
            if let Some(c) = &category {
                set.push(format!("category = {}", sql_text(c.as_deref())));
            }
            if let Some(p) = published {
                set.push(format!("published = {}", sql_bool(p)));
            }
            if let Some(t) = title {
                set.push(format!("title = '{t}'"));
            }
            for id in &ids {
                let Some(row) = rows.get_mut(id) else {
                    continue;
                };
                let old = row.clone();
                if let Some(c) = &category {
                    row.category.clone_from(c);
                }
                if let Some(p) = published {
                    row.published = p;
                }
                if let Some(t) = title {
                    t.clone_into(&mut row.title);
                }
                let mut modified = Vec::new();
                if old.category != row.category {
                    modified.push("category");
                }
                if old.published != row.published {
                    modified.push("published");
                }
                if old.title != row.title {
                    modified.push("title");
                }
                if !modified.is_empty() {
                    tags.extend(tag_set(&scopes.invalidate_for(
                        Some(&old),
                        Some(row),
                        Some(&modified),
                    )));
                }
            }
            Tagged {
                sql: format!(
                    "UPDATE {table} SET {} WHERE id = ANY ('{{{}}}'::bigint[])",
                    set.join(", "),
                    list(&ids)
                ),
                op: Operation::Update,
                rows: ids.len(),
                tags,
            }
        }
        3 => {
            // The id changes sign (rows whose negation is taken are left out): not paired, so a
            // delete of the old row plus an insert of the new one.
            let candidates: Vec<i64> = present
                .iter()
                .copied()
                .filter(|id| !rows.contains_key(&-id))
                .collect();
            let ids = pick(rng, &candidates);
            for id in &ids {
                if let Some(old) = rows.remove(id) {
                    let new = Article {
                        id: -id,
                        ..old.clone()
                    };
                    tags.extend(tag_set(&scopes.invalidate_for(Some(&old), None, None)));
                    tags.extend(tag_set(&scopes.invalidate_for(None, Some(&new), None)));
                    rows.insert(-id, new);
                }
            }
            Tagged {
                sql: format!(
                    "UPDATE {table} SET id = -id WHERE id = ANY ('{{{}}}'::bigint[])",
                    list(&ids)
                ),
                op: Operation::Update,
                rows: ids.len(),
                tags,
            }
        }
        _ => {
            let ids = pick(rng, &present);
            for id in &ids {
                if let Some(old) = rows.remove(id) {
                    tags.extend(tag_set(&scopes.invalidate_for(Some(&old), None, None)));
                }
            }
            Tagged {
                sql: format!(
                    "DELETE FROM {table} WHERE id = ANY ('{{{}}}'::bigint[])",
                    list(&ids)
                ),
                op: Operation::Delete,
                rows: ids.len(),
                tags,
            }
        }
    }
}

#[tokio::test]
async fn tags_follow_the_model_statement_by_statement() {
    let Some(url) = url() else { return };
    let mut rng = Rng::from_env();
    let statements = model_cases() * 5;
    let env = Env::new(&url, "tmodel").await;
    let table = env.table("articles");
    env.admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, category text, published boolean,
                 title text NOT NULL)"
        ))
        .await
        .unwrap();
    let capture = TableCapture::new(
        TableRef::new(Some(&env.app), "articles").unwrap(),
        "article",
    )
    .id(["id"])
    .scope(ScopeSet::new(["category", "published"]))
    .scope(ScopeSet::new(["published"]).watch(["title"]))
    .scope(ScopeSet::new(Vec::<String>::new()))
    .channel(&env.channel);
    let (mut raw, writer) = env.install_and_listen(capture).await;
    let mut rows: BTreeMap<i64, Article> = BTreeMap::new();
    // Statements that sent tags, by size: [one row, several rows].
    let mut checked = [0_usize; 2];
    for step in 0..statements {
        let s = tagged_statement(&mut rng, &table, &mut rows);
        writer.batch_execute(&s.sql).await.unwrap();
        let payloads = raw.until_marker(&writer, &env.channel).await;
        let context = format!("step {step}: {}\n{payloads:#?}", s.sql);
        if s.tags.is_empty() {
            assert!(
                payloads.is_empty(),
                "a statement that changed nothing sent: {context}"
            );
            continue;
        }
        assert_eq!(payloads.len(), 1, "one event per statement: {context}");
        let batch = TagBatch::parse(&payloads[0], 0).unwrap_or_else(|e| panic!("{e}: {context}"));
        assert_eq!(batch.operation(), Some(s.op), "{context}");
        let sent: BTreeSet<String> = batch.tags().iter().map(ToString::to_string).collect();
        assert_eq!(sent, s.tags, "{context}");
        checked[usize::from(s.rows > 1)] += 1;
    }
    // Both sizes ran (certain for any seed with the default number of statements).
    assert!(checked[0] > 0 && checked[1] > 0, "{checked:?}");
    eprintln!(
        "tag model: {statements} statements, {} single-row and {} multi-row checked",
        checked[0], checked[1]
    );
    env.finish().await;
}
