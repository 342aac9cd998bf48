//! The applier's backlog: collapsing to kinds, and a clear beyond that (review L8).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Recording, feed, gaps_into, settle, tag};
use crate::listener::{GapAction, GapReason};

#[tokio::test(start_paused = true)]
async fn a_backlog_collapses_to_kinds_and_then_to_a_clear() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let _handle = listener
        .applier(store.clone())
        .trust_start(true)
        .max_pending_tags(5)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .on_gap(gaps_into(&gaps))
        .spawn()
        .unwrap();
    for n in 0..10 {
        store
            .put(&format!("a{n}"), &[&format!("i:author:{n}")])
            .await;
    }
    store.put("unrelated", &["i:shop:1"]).await;
    store.fail_next(u32::MAX);
    for n in 0..10 {
        feed.tags(&[&format!("i:author:{n}")]);
    }
    settle().await;
    store.fail_next(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Collapsed to a:author, which the Cache attaches to every author entry; here the entries
    // carry only their id tag, so they survive, but a:author was invalidated.
    assert!(store.applied_at(&tag("a:author")).is_some());
    assert!(store.has("unrelated").await);
    assert!(gaps.lock().is_empty(), "collapsing is not a gap");

    // Free tags cannot collapse: beyond the limit, a clear covers them.
    store.put("article", &["i:article:1", "a:article"]).await;
    assert!(store.clears.lock().is_empty());
    store.fail_next(u32::MAX);
    for n in 0..10 {
        feed.tags(&[&format!("g:signal{n}")]);
    }
    settle().await;
    store.fail_next(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(gaps.lock().len(), 1);
    assert!(gaps.lock()[0].starts_with("Backlog"), "{:?}", gaps.lock());
    assert!(!store.has("article").await, "the store was cleared");
    assert!(!store.has("unrelated").await, "the store was cleared");
    assert_eq!(store.clears.lock().len(), 1);
}

/// An applier whose store fails until the backlog (tiny: `max_pending` 3) overflows even
/// collapsed to kinds, with `action` for gaps; then the store works again.
async fn overflow_the_backlog(
    action: GapAction,
    store: &Recording,
    tags: &[String],
) -> Vec<String> {
    let (listener, feed) = feed();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let handle = listener
        .applier(store.clone())
        .gap_action(action)
        .trust_start(true)
        .max_pending_tags(3)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .on_gap(gaps_into(&gaps))
        .spawn()
        .unwrap();
    store.fail_next(u32::MAX);
    for tag in tags {
        feed.tags(&[tag.as_str()]);
    }
    settle().await;
    store.fail_next(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(handle.stats().store_errors > 0, "the store did fail");
    let gaps = gaps.lock().clone();
    drop(handle);
    gaps
}

/// Review L8: with `GapAction::Nothing`, a backlog that overflows even collapsed to kinds used
/// to be dropped (only an error log). Every pending tag is still invalidated: by a clear of the
/// store, which covers them all, whatever the gap action.
#[tokio::test(start_paused = true)]
async fn a_backlog_overflow_under_gap_action_nothing_still_invalidates_every_pending_tag() {
    let store = Recording::default();
    let tags: Vec<String> = (0..10).map(|n| format!("g:signal{n}")).collect();
    for (n, tag) in tags.iter().enumerate() {
        store.put(&format!("free{n}"), &[tag]).await;
    }
    for n in 0..10 {
        assert!(
            store.has(&format!("free{n}")).await,
            "free{n} is cached before"
        );
    }
    let gaps = overflow_the_backlog(GapAction::Nothing, &store, &tags).await;
    for n in 0..10 {
        assert!(
            !store.has(&format!("free{n}")).await,
            "free{n} survived a backlog overflow under GapAction::Nothing: its invalidation was \
             dropped"
        );
    }
    assert_eq!(store.clears.lock().len(), 1, "covered by one clear");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].starts_with("Backlog"), "{gaps:?}");
}

/// Review L8: with `GapAction::InvalidateKinds`, a backlog overflow used to invalidate only the
/// watched kinds, losing the free `g:` tags and the `a:<kind>` of unwatched kinds it had
/// collapsed to. Everything pending is covered.
#[tokio::test(start_paused = true)]
async fn a_backlog_overflow_under_invalidate_kinds_covers_free_tags_and_unwatched_kinds() {
    let store = Recording::default();
    let mut tags: Vec<String> = (0..10).map(|n| format!("g:signal{n}")).collect();
    tags.push("i:author:1".to_owned());
    for n in 0..10 {
        store
            .put(&format!("free{n}"), &[&format!("g:signal{n}")])
            .await;
    }
    store.put("author", &["i:author:1", "a:author"]).await;
    assert!(store.has("free0").await && store.has("author").await);
    let gaps = overflow_the_backlog(GapAction::InvalidateKinds, &store, &tags).await;
    assert!(
        !store.has("author").await,
        "an unwatched kind's entry survived a backlog overflow"
    );
    for n in 0..10 {
        assert!(
            !store.has(&format!("free{n}")).await,
            "free{n} (a g: tag) survived a backlog overflow"
        );
    }
    assert_eq!(gaps.len(), 1, "{gaps:?}");
}

/// While a clear is pending (the store still failing), newly received tags are not kept: the
/// clear, which runs after they arrived, covers them, so the backlog stays bounded; tags that
/// arrive after the clear ran are applied as usual.
#[tokio::test(start_paused = true)]
async fn tags_received_while_a_clear_is_pending_are_covered_by_it_and_later_ones_applied() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let handle = listener
        .applier(store.clone())
        .gap_action(GapAction::Clear)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .spawn()
        .unwrap();
    store.put("early", &["i:article:1"]).await;
    store.fail_next(u32::MAX);
    feed.connect(GapReason::Started);
    for n in 0..100 {
        feed.tags(&[&format!("g:during{n}")]);
    }
    settle().await;
    assert!(store.has("early").await, "the store is failing");
    store.fail_next(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!store.has("early").await);
    assert_eq!(store.clears.lock().len(), 1);
    assert!(store.log.lock().is_empty(), "the clear covered the tags");
    store.put("late", &["i:article:2"]).await;
    feed.tags(&["i:article:2"]);
    settle().await;
    assert!(!store.has("late").await);
    assert_eq!(handle.stats().applies, 2, "{:?}", handle.stats());
}
