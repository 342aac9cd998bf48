//! Expiry: TTLs, persistence, and the remaining life reported by `ttl`.

use std::time::Duration;

use matroska_core::store::KeyTtl;
use matroska_core::{Error, Store};

use crate::Harness;
use crate::support::{bytes, hit, key};

/// An entry is never served after its TTL, by `get`, `exists` or `ttl`.
pub async fn expired_entry_is_never_served<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("expiry:short");
    store
        .put(&k, bytes("v"), &[], Some(Duration::from_millis(200)), None)
        .await
        .unwrap();
    h.advance(&store, Duration::from_millis(400)).await;
    assert_eq!(hit(&store, &k).await, None);
    assert!(!store.exists(&k).await.unwrap());
    assert_eq!(store.ttl(&k).await.unwrap(), KeyTtl::Missing);
    assert!(
        !store.delete(&k).await.unwrap(),
        "an expired entry is not live"
    );
}

/// Without a TTL an entry does not expire.
pub async fn entry_without_ttl_persists<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("expiry:persistent");
    store.put(&k, bytes("v"), &[], None, None).await.unwrap();
    h.advance(&store, Duration::from_millis(500)).await;
    assert_eq!(hit(&store, &k).await, Some(bytes("v")));
    assert_eq!(store.ttl(&k).await.unwrap(), KeyTtl::Persistent);
}

/// `ttl` reports missing, persistent, and the time left (never more than was set).
pub async fn ttl_reports_missing_persistent_and_remaining<H: Harness>(h: &H) {
    let store = h.store().await;
    assert_eq!(
        store.ttl(&key("expiry:none")).await.unwrap(),
        KeyTtl::Missing
    );
    let k = key("expiry:remaining");
    store
        .put(&k, bytes("v"), &[], Some(Duration::from_secs(60)), None)
        .await
        .unwrap();
    match store.ttl(&k).await.unwrap() {
        KeyTtl::Expires(left) => {
            assert!(left <= Duration::from_secs(60), "{left:?}");
            assert!(left > Duration::from_secs(50), "{left:?}");
        }
        other => panic!("expected a remaining TTL, got {other:?}"),
    }
}

/// Putting a key again without a TTL makes it persistent (as Redis `SET` does). (The second put
/// must land while the first TTL runs: on a slow machine the case uses a longer one.)
pub async fn put_without_ttl_removes_an_earlier_ttl<H: Harness>(h: &H) {
    let store = h.store().await;
    let name = |attempt: usize| key(&format!("expiry:reset:{attempt}"));
    let mut used = 0;
    let ttl = crate::support::short_ttl(h.exact_time(), |ttl, attempt| {
        used = attempt;
        let (store, k) = (store.clone(), name(attempt));
        async move {
            store
                .put(&k, bytes("v1"), &[], Some(ttl), None)
                .await
                .unwrap();
            store.put(&k, bytes("v2"), &[], None, None).await.unwrap();
        }
    })
    .await;
    h.advance(&store, ttl * 2).await;
    let k = name(used);
    assert_eq!(hit(&store, &k).await, Some(bytes("v2")));
    assert_eq!(store.ttl(&k).await.unwrap(), KeyTtl::Persistent);
}

/// Sub-second TTLs keep their precision and expire.
pub async fn sub_second_ttl_works<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("expiry:sub-second");
    store
        .put(&k, bytes("v"), &[], Some(Duration::from_millis(900)), None)
        .await
        .unwrap();
    match store.ttl(&k).await.unwrap() {
        KeyTtl::Expires(left) => assert!(left <= Duration::from_millis(900), "{left:?}"),
        other => panic!("expected a remaining TTL under a second, got {other:?}"),
    }
    h.advance(&store, Duration::from_millis(1100)).await;
    assert_eq!(hit(&store, &k).await, None);
}

/// A zero TTL is an error before anything is written: the previous value stays.
pub async fn zero_ttl_is_rejected_before_anything_is_written<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("expiry:zero");
    store.put(&k, bytes("kept"), &[], None, None).await.unwrap();
    for ttl in [Duration::ZERO, Duration::from_micros(500)] {
        let err = store
            .put(&k, bytes("lost"), &[], Some(ttl), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTtl { .. }), "{err}");
    }
    assert_eq!(hit(&store, &k).await, Some(bytes("kept")));
}
