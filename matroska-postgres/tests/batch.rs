//! PgStore's batches at their boundaries: a batch fill overlapping an open writer transaction
//! never survives its commit (the tokens of `get_many` carry its one snapshot), and a token the
//! store cannot use refuses its own entry only.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (run `./scripts/test`, which starts a private server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use matroska_core::Dep;
use matroska_core::store::{FillToken, Lookup, PutEntry, PutOutcome, Store};
use matroska_testkit::support::{bytes, hit, key, tag};
use support::{connect, with_schemas};

fn token(lookup: &Lookup) -> &FillToken {
    match lookup {
        Lookup::Miss(token) => token,
        Lookup::Hit(b) => panic!("expected a miss, got {b:?}"),
    }
}

/// A: BEGIN; invalidate row 1's tag. B: `get_many` misses, reads the old rows, `put_many` fills
/// both. A: COMMIT. The entry of row 1 is never served after the commit; row 2's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_fill_overlapping_an_open_writer_transaction_does_not_survive_its_commit() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_snap").await;
        let s = store.schema().quoted();
        let (t1, t2) = (tag(&Dep::id("article", 1)), tag(&Dep::id("article", 2)));
        let (k1, k2) = (key("article:1"), key("article:2"));

        let mut writer = connect(schemas.url()).await;
        let tx = writer.transaction().await.unwrap();
        tx.execute(&format!("SELECT {s}.invalidate($1)"), &[&vec![t1.as_str()]])
            .await
            .unwrap();

        let found = store.get_many(&[k1.clone(), k2.clone()]).await.unwrap();
        let (tags1, tags2) = ([t1], [t2]);
        let entries = [
            PutEntry {
                tags: &tags1,
                token: Some(token(&found[0])),
                ..PutEntry::new(&k1, bytes("old 1"))
            },
            PutEntry {
                tags: &tags2,
                token: Some(token(&found[1])),
                ..PutEntry::new(&k2, bytes("old 2"))
            },
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        // The stamp is not visible yet: both may store; row 1's must not be served after A.
        assert_eq!(outcomes, [PutOutcome::Stored, PutOutcome::Stored]);
        tx.commit().await.unwrap();
        assert_eq!(
            hit(&store, &k1).await,
            None,
            "served after the writer committed"
        );
        assert_eq!(hit(&store, &k2).await, Some(bytes("old 2")));
    })
    .await;
}

/// A token from another store is refused for its own entry; the batch's other entries store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_token_refuses_its_own_entry_only() {
    with_schemas(|schemas| async move {
        let store = schemas.store("matroska_batch_foreign").await;
        let (a, b) = (key("a"), key("b"));
        let foreign = FillToken::new(1, 2).with_snapshot("not ours");
        let entries = [
            PutEntry {
                token: Some(&foreign),
                ..PutEntry::new(&a, bytes("a"))
            },
            PutEntry::new(&b, bytes("b")),
        ];
        let outcomes = store.put_many(&entries).await.unwrap();
        assert_eq!(outcomes, [PutOutcome::Stale, PutOutcome::Stored]);
        assert_eq!(hit(&store, &a).await, None);
        assert_eq!(hit(&store, &b).await, Some(bytes("b")));
    })
    .await;
}
