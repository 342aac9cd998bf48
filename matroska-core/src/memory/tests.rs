//! Unit tests of [`MemoryStore`].

use super::*;
use crate::Dep;
use crate::clock::MockClock;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn tag(name: &str) -> Tag {
    Dep::tag(name).to_tag().unwrap()
}

#[tokio::test]
async fn invalidated_entries_are_reclaimed_in_chunks_and_tag_state_is_pruned() {
    let clock = MockClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let t = tag("t");
    for i in 0..1000 {
        store
            .put(
                &key(&format!("k{i}")),
                Bytes::from_static(b"v"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.invalidate(std::slice::from_ref(&t)).await.unwrap(),
        1000
    );
    // Correctness is immediate even though most of the memory is not reclaimed yet.
    assert!(store.pending_reclaims() > 0);
    for i in 0..1000 {
        let lookup = store.get(&key(&format!("k{i}"))).await.unwrap();
        assert!(matches!(lookup, Lookup::Miss(_)), "k{i}");
    }
    store.run_pending_tasks();
    assert_eq!(store.pending_reclaims(), 0);
    assert_eq!(store.entry_count(), 0);
    // The stamp outlives the fill window only.
    assert_eq!(store.tag_count(), 1);
    clock.advance(DEFAULT_FILL_WINDOW + Duration::from_secs(1));
    store.run_pending_tasks();
    assert_eq!(store.tag_count(), 0);
}

#[tokio::test]
async fn dead_index_members_are_pruned_as_the_index_grows() {
    let store = MemoryStore::new();
    let t = tag("t");
    // 63 entries come and go (re-put without the tag): their members are dead.
    for i in 0..63 {
        let k = key(&format!("k{i}"));
        store
            .put(
                &k,
                Bytes::from_static(b"v"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
        store
            .put(&k, Bytes::from_static(b"w"), &[], None, None)
            .await
            .unwrap();
    }
    // (Holding the state keeps the sweep from dropping it while no entry carries the tag.)
    let state = store.inner.tags.get(&t).unwrap();
    store.run_pending_tasks();
    assert_eq!(state.member_count(), 63);
    // The 64th member triggers a prune: only the live one is left.
    store
        .put(
            &key("live"),
            Bytes::from_static(b"v"),
            std::slice::from_ref(&t),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(state.member_count(), 1);
    // Invalidation counts live entries only.
    assert_eq!(store.invalidate(std::slice::from_ref(&t)).await.unwrap(), 1);
    // A deleted entry leaves its indexes at once.
    let gone = key("gone");
    store
        .put(
            &gone,
            Bytes::from_static(b"v"),
            std::slice::from_ref(&t),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(state.member_count(), 1);
    assert!(store.delete(&gone).await.unwrap());
    assert_eq!(state.member_count(), 0);
}

#[tokio::test]
async fn states_of_tags_no_entry_carries_are_dropped() {
    let store = MemoryStore::new();
    let (a, b) = (tag("a"), tag("b"));
    store
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &[a.clone(), b.clone()],
            None,
            None,
        )
        .await
        .unwrap();
    store.run_pending_tasks();
    assert_eq!(store.tag_count(), 2);
    // Re-put without `a`: nothing refers to a's state any more.
    store
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            std::slice::from_ref(&b),
            None,
            None,
        )
        .await
        .unwrap();
    store.run_pending_tasks();
    assert_eq!(store.tag_count(), 1);
    assert!(store.inner.tags.get(&a).is_none());
}

#[tokio::test]
async fn byte_bound_rejects_oversized_values() {
    let store = MemoryStore::builder().max_bytes(1024).build();
    let err = store
        .put(&key("k"), Bytes::from(vec![0; 2048]), &[], None, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::ValueTooLarge {
            size: 2048,
            limit: 1024
        }
    ));
    assert!(matches!(
        store.get(&key("k")).await.unwrap(),
        Lookup::Miss(_)
    ));
}

#[tokio::test]
async fn entry_count_bound_holds() {
    let store = MemoryStore::builder().max_entries(100).build();
    for i in 0..1000 {
        store
            .put(
                &key(&format!("k{i}")),
                Bytes::from_static(b"v"),
                &[tag("t")],
                None,
                None,
            )
            .await
            .unwrap();
    }
    store.run_pending_tasks();
    assert!(store.entry_count() <= 100, "{}", store.entry_count());
}

#[tokio::test]
async fn a_fill_token_from_another_memory_store_is_refused() {
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    let Lookup::Miss(from_a) = a.get(&key("k")).await.unwrap() else {
        panic!("miss expected");
    };
    let outcome = b
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &[tag("t")],
            None,
            Some(&from_a),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "a token from another store was accepted"
    );
    assert!(matches!(b.get(&key("k")).await.unwrap(), Lookup::Miss(_)));
    // A clone is the same store: its tokens are good.
    let same = a.clone();
    let outcome = same
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &[tag("t")],
            None,
            Some(&from_a),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}

/// A token with the store's identity but a sequence number or a time this store has not reached.
fn forged(token: &FillToken, seq: u64, issued_at_ms: u64) -> FillToken {
    let forged = FillToken::new(seq, issued_at_ms);
    match token.snapshot() {
        Some(snapshot) => forged.with_snapshot(snapshot),
        None => forged,
    }
}

#[tokio::test]
async fn a_fill_token_from_the_future_is_refused() {
    let clock = MockClock::new();
    clock.advance(Duration::from_secs(10));
    let store = MemoryStore::builder().clock(clock.clone()).build();
    store.invalidate(&[tag("u")]).await.unwrap();
    let Lookup::Miss(token) = store.get(&key("k")).await.unwrap() else {
        panic!("miss expected");
    };
    let ahead = forged(&token, token.seq() + 1, token.issued_at_ms());
    let later = forged(&token, token.seq(), token.issued_at_ms() + 1);
    for (what, future) in [("seq", ahead), ("time", later)] {
        let outcome = store
            .put(
                &key("k"),
                Bytes::from_static(b"v"),
                &[tag("t")],
                None,
                Some(&future),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            PutOutcome::Stale,
            "a token whose {what} is ahead was accepted"
        );
    }
    let outcome = store
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &[tag("t")],
            None,
            Some(&token),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored, "the genuine token still fills");
}

#[tokio::test]
async fn a_foreign_token_cannot_make_an_entry_outlive_an_invalidation() {
    // A token of another store (say the second tier's) with a sequence number far ahead of this
    // store's: accepted, it would record the entry as filled after every stamp to come.
    let store = MemoryStore::new();
    let foreign = FillToken::new(1_000_000, 0);
    let t = tag("t");
    // (Its index lost, as metadata can be: only the stamps keep the entry from being served.)
    let _ = store
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            std::slice::from_ref(&t),
            None,
            Some(&foreign),
        )
        .await
        .unwrap();
    store.simulate_index_loss(&t);
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert!(
        matches!(store.get(&key("k")).await.unwrap(), Lookup::Miss(_)),
        "an entry filled with a foreign token survived the invalidation of its tag"
    );
}

#[tokio::test]
async fn a_token_is_good_until_the_fill_window_and_not_at_it() {
    let clock = MockClock::new();
    let window = Duration::from_secs(5);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .fill_window(window)
        .build();
    let (young, old) = (key("young"), key("old"));
    let Lookup::Miss(young_token) = store.get(&young).await.unwrap() else {
        panic!("miss expected");
    };
    let Lookup::Miss(old_token) = store.get(&old).await.unwrap() else {
        panic!("miss expected");
    };
    clock.advance(Duration::from_millis(4_999));
    let put = |k: Key, token: FillToken| {
        let store = store.clone();
        async move {
            store
                .put(
                    &k,
                    Bytes::from_static(b"v"),
                    &[tag("t")],
                    None,
                    Some(&token),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(
        put(young, young_token).await,
        PutOutcome::Stored,
        "1 ms short of the window"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        put(old, old_token).await,
        PutOutcome::Stale,
        "exactly the window"
    );
}

#[tokio::test]
async fn a_token_issued_right_after_a_clear_fills_and_one_from_before_does_not() {
    let store = MemoryStore::new();
    let k = key("k");
    let Lookup::Miss(before) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    store.clear().await.unwrap();
    let Lookup::Miss(after) = store.get(&k).await.unwrap() else {
        panic!("miss expected");
    };
    assert_eq!(after.seq(), before.seq() + 1, "the clear took one seq");
    let tags = [tag("t")];
    let v = Bytes::from_static(b"v");
    let outcome = store.put(&k, v.clone(), &tags, None, Some(&before)).await;
    assert_eq!(outcome.unwrap(), PutOutcome::Stale);
    let outcome = store.put(&k, v, &tags, None, Some(&after)).await;
    assert_eq!(outcome.unwrap(), PutOutcome::Stored);
    assert!(matches!(store.get(&k).await.unwrap(), Lookup::Hit(_)));
}

#[tokio::test]
async fn a_write_reclaims_at_most_its_budget_and_the_rest_stays_a_miss() {
    let store = MemoryStore::builder().reclaim_chunk(3).build();
    let t = tag("t");
    let keys: Vec<Key> = (0..4).map(|i| key(&format!("k{i}"))).collect();
    for k in &keys {
        store
            .put(
                k,
                Bytes::from_static(b"v"),
                std::slice::from_ref(&t),
                None,
                None,
            )
            .await
            .unwrap();
    }
    // The invalidation's own write reclaims one budget: 3 of the 4.
    assert_eq!(store.invalidate(std::slice::from_ref(&t)).await.unwrap(), 4);
    assert_eq!(
        store.pending_reclaims(),
        1,
        "one budget reclaimed, one entry left"
    );
    for k in &keys {
        assert!(
            matches!(store.get(k).await.unwrap(), Lookup::Miss(_)),
            "{k}"
        );
    }
    store.delete(&key("unrelated")).await.unwrap();
    assert_eq!(store.pending_reclaims(), 0);
}

#[tokio::test]
async fn a_tag_state_outlives_its_stamp_by_the_fill_window_exactly() {
    let clock = MockClock::new();
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let t = tag("t");
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    clock.advance(DEFAULT_FILL_WINDOW);
    store.run_pending_tasks();
    assert_eq!(store.tag_count(), 1, "dropped within the fill window");
    clock.advance(Duration::from_nanos(1));
    store.run_pending_tasks();
    assert_eq!(store.tag_count(), 0, "kept past the fill window");
}
