//! Basic key/value behaviour: get, put, overwrite, delete, exists.

use matroska_core::Store;
use matroska_core::store::{Lookup, PutOutcome};

use crate::Harness;
use crate::support::{bytes, hit, key};

/// A put is read back with exactly the stored bytes.
pub async fn put_then_get<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("basic:put_then_get");
    let outcome = store.put(&k, bytes("v1"), &[], None, None).await.unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(hit(&store, &k).await, Some(bytes("v1")));
}

/// A key that was never stored is a miss carrying a fill token.
pub async fn missing_key_is_a_miss<H: Harness>(h: &H) {
    let store = h.store().await;
    match store.get(&key("basic:never-stored")).await.unwrap() {
        Lookup::Miss(_) => {}
        Lookup::Hit(b) => panic!("a key that was never stored is a hit: {b:?}"),
    }
}

/// Putting a key again replaces its value.
pub async fn overwrite_replaces_value<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("basic:overwrite");
    store.put(&k, bytes("old"), &[], None, None).await.unwrap();
    store.put(&k, bytes("new"), &[], None, None).await.unwrap();
    assert_eq!(hit(&store, &k).await, Some(bytes("new")));
}

/// `delete` removes the entry and says whether a live one was there.
pub async fn delete_reports_whether_a_live_entry_was_removed<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("basic:delete");
    store.put(&k, bytes("v"), &[], None, None).await.unwrap();
    assert!(store.delete(&k).await.unwrap(), "deleting a live entry");
    assert_eq!(hit(&store, &k).await, None);
    assert!(!store.delete(&k).await.unwrap(), "deleting it again");
    assert!(
        !store.delete(&key("basic:never")).await.unwrap(),
        "deleting a missing key"
    );
}

/// `exists` agrees with `get`.
pub async fn exists_agrees_with_get<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("basic:exists");
    assert!(!store.exists(&k).await.unwrap());
    store.put(&k, bytes("v"), &[], None, None).await.unwrap();
    assert!(store.exists(&k).await.unwrap());
    store.delete(&k).await.unwrap();
    assert!(!store.exists(&k).await.unwrap());
}

/// The token of a miss fills the entry when nothing was invalidated meanwhile.
pub async fn miss_token_fills_the_entry<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("basic:fill");
    let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
        panic!("expected a miss");
    };
    let t = crate::support::tag(&matroska_core::Dep::id("article", 1));
    let outcome = store
        .put(&k, bytes("v"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    assert_eq!(hit(&store, &k).await, Some(bytes("v")));
}

/// A put without a token is stored unconditionally (its caller vouches the value is fresh),
/// also right after one of its tags was invalidated, and is then served.
pub async fn a_put_without_a_token_after_its_tag_was_invalidated_is_a_hit<H: Harness>(h: &H) {
    let store = h.store().await;
    let t = crate::support::tag(&matroska_core::Dep::id("article", 1));
    let (k, other) = (key("basic:vouched"), key("basic:vouched:new"));
    store
        .put(&k, bytes("v1"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    for (k, v) in [(&k, "v2"), (&other, "v")] {
        let outcome = store
            .put(k, bytes(v), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored, "{k}");
        assert_eq!(hit(&store, k).await, Some(bytes(v)), "{k}");
    }
}

/// The token of a miss is fresh whatever made it a miss: after the entry expired, and after it
/// was deleted, it fills the entry.
pub async fn the_token_of_a_miss_after_expiry_or_delete_fills_the_entry<H: Harness>(h: &H) {
    use std::time::Duration;
    let store = h.store().await;
    let t = crate::support::tag(&matroska_core::Dep::id("article", 2));
    let (expired, deleted) = (key("basic:expired"), key("basic:deleted"));
    store
        .put(
            &expired,
            bytes("old"),
            std::slice::from_ref(&t),
            Some(Duration::from_millis(200)),
            None,
        )
        .await
        .unwrap();
    store
        .put(&deleted, bytes("old"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(400)).await;
    assert!(store.delete(&deleted).await.unwrap());
    for k in [&expired, &deleted] {
        let Lookup::Miss(token) = store.get(k).await.unwrap() else {
            panic!("{k} should be a miss");
        };
        let outcome = store
            .put(
                k,
                bytes("new"),
                std::slice::from_ref(&t),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored, "{k}");
        assert_eq!(hit(&store, k).await, Some(bytes("new")), "{k}");
    }
}
