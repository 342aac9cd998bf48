//! Namespaces: two stores on one server never see each other; two handles on one namespace do.

use matroska_core::store::{Lookup, PutOutcome};
use matroska_core::{Dep, Store};

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// Entries of one namespace are invisible in another.
pub async fn namespaces_are_isolated<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    let k = key("ns:k");
    a.put(&k, bytes("a"), &[], None, None).await.unwrap();
    assert_eq!(hit(&b, &k).await, None);
    b.put(&k, bytes("b"), &[], None, None).await.unwrap();
    assert_eq!(hit(&a, &k).await, Some(bytes("a")));
    assert!(b.delete(&k).await.unwrap());
    assert_eq!(hit(&a, &k).await, Some(bytes("a")));
}

/// Invalidating a tag in one namespace leaves the other's entries and fills alone.
pub async fn invalidation_is_confined_to_the_namespace<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    let t = tag(&Dep::id("article", 1));
    let k = key("ns:page");
    a.put(&k, bytes("a"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    let Lookup::Miss(token) = b.get(&k).await.unwrap() else {
        panic!("b is empty");
    };
    assert_eq!(a.invalidate(std::slice::from_ref(&t)).await.unwrap(), 1);
    let outcome = b
        .put(&k, bytes("b"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stored,
        "a's invalidation must not reject b's fill"
    );
}

/// `clear` empties its own namespace only.
pub async fn clear_is_confined_to_the_namespace<H: Harness>(h: &H) {
    let (a, b) = (h.store().await, h.store().await);
    for i in 0..3 {
        let k = key(&format!("ns:clear:{i}"));
        a.put(&k, bytes("a"), &[tag(&Dep::tag("t"))], None, None)
            .await
            .unwrap();
        b.put(&k, bytes("b"), &[], None, None).await.unwrap();
    }
    a.clear().await.unwrap();
    for i in 0..3 {
        let k = key(&format!("ns:clear:{i}"));
        assert_eq!(hit(&a, &k).await, None);
        assert_eq!(hit(&b, &k).await, Some(bytes("b")));
    }
    // The namespace works normally after a clear.
    a.put(&key("ns:after"), bytes("x"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(hit(&a, &key("ns:after")).await, Some(bytes("x")));
}

/// A fill whose token predates a `clear` is rejected: the clear may have been a flush of
/// everything that could be stale.
pub async fn clear_rejects_fills_that_started_before_it<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("ns:clear-fill");
    let Lookup::Miss(token) = store.get(&k).await.unwrap() else {
        panic!("empty store");
    };
    store.clear().await.unwrap();
    let outcome = store
        .put(&k, bytes("v"), &[], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale);
    assert_eq!(hit(&store, &k).await, None);
}

/// A second handle on the same namespace (another process) sees the same entries, and its
/// invalidations apply to the first handle.
pub async fn reopened_handle_shares_the_namespace<H: Harness>(h: &H) {
    let a = h.store().await;
    let b = h.reopen(&a).await;
    let t = tag(&Dep::id("author", 3));
    let k = key("ns:shared");
    a.put(&k, bytes("v"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&b, &k).await, Some(bytes("v")));
    let Lookup::Miss(token) = a.get(&key("ns:other")).await.unwrap() else {
        panic!("miss expected");
    };
    b.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&a, &k).await, None);
    let outcome = a
        .put(&key("ns:other"), bytes("v"), &[t], None, Some(&token))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "b's invalidation rejects a's older fill"
    );
}
