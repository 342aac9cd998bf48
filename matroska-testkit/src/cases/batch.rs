//! Batch operations: `get_many` answers as `get` would, key by key and in order; `put_many`
//! checks every entry first, then stores or refuses each as `put` would (a stale token refuses
//! its own entry only); `Cache::fetch_many` keeps the fill protocol.

use std::time::Duration;

use matroska_core::store::{FillToken, Lookup, PutEntry, PutOutcome};
use matroska_core::{Cache, Dep, Error, Key, Loaded, Store};

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

fn token(lookup: &Lookup) -> &FillToken {
    match lookup {
        Lookup::Miss(token) => token,
        Lookup::Hit(b) => panic!("expected a miss, got a hit: {b:?}"),
    }
}

/// `get_many` answers each key as `get` would, in the order asked (repeated keys too).
pub async fn get_many_answers_each_key_like_get_in_order<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b, c) = (key("batch:a"), key("batch:b"), key("batch:c"));
    store.put(&a, bytes("A"), &[], None, None).await.unwrap();
    store.put(&c, bytes("C"), &[], None, None).await.unwrap();
    let found = store
        .get_many(&[a.clone(), b.clone(), c.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(found.len(), 4);
    assert_eq!(found[0], Lookup::Hit(bytes("A")));
    assert!(matches!(found[1], Lookup::Miss(_)), "{:?}", found[1]);
    assert_eq!(found[2], Lookup::Hit(bytes("C")));
    assert_eq!(found[3], Lookup::Hit(bytes("A")));
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

/// The tokens of `get_many`'s misses fill the entries through `put_many`.
pub async fn get_many_miss_tokens_fill_through_put_many<H: Harness>(h: &H) {
    let store = h.store().await;
    let keys = [key("batch:fill:1"), key("batch:fill:2")];
    let found = store.get_many(&keys).await.unwrap();
    let t = tag(&Dep::id("batch_row", 1));
    let tags = [t];
    let entries: Vec<PutEntry<'_>> = keys
        .iter()
        .zip(&found)
        .map(|(k, lookup)| PutEntry {
            tags: &tags,
            token: Some(token(lookup)),
            ..PutEntry::new(k, bytes(k.as_str()))
        })
        .collect();
    let outcomes = store.put_many(&entries).await.unwrap();
    assert_eq!(outcomes, [PutOutcome::Stored, PutOutcome::Stored]);
    for k in &keys {
        assert_eq!(hit(&store, k).await, Some(bytes(k.as_str())));
    }
}

/// A batch fill whose token predates an invalidation of one entry's tag refuses that entry
/// only, and leaves an entry already there untouched.
pub async fn put_many_refuses_only_the_entries_whose_tags_were_invalidated<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (key("batch:race:a"), key("batch:race:b"));
    let (ta, tb) = (tag(&Dep::id("batch_a", 1)), tag(&Dep::id("batch_b", 1)));
    let found = store.get_many(&[a.clone(), b.clone()]).await.unwrap();
    // The row behind `a` changes while the batch loads.
    store.invalidate(std::slice::from_ref(&ta)).await.unwrap();
    let (tags_a, tags_b) = ([ta], [tb]);
    let entries = [
        PutEntry {
            tags: &tags_a,
            token: Some(token(&found[0])),
            ..PutEntry::new(&a, bytes("stale"))
        },
        PutEntry {
            tags: &tags_b,
            token: Some(token(&found[1])),
            ..PutEntry::new(&b, bytes("fresh"))
        },
    ];
    let outcomes = store.put_many(&entries).await.unwrap();
    assert_eq!(outcomes, [PutOutcome::Stale, PutOutcome::Stored]);
    assert_eq!(hit(&store, &a).await, None, "the stale value was stored");
    assert_eq!(hit(&store, &b).await, Some(bytes("fresh")));
}

/// One bad entry (a zero TTL, too many tags) fails the whole
/// batch before anything is written.
pub async fn put_many_checks_every_entry_first<H: Harness>(h: &H) {
    let store = h.store().await;
    let (good, bad) = (key("batch:check:good"), key("batch:check:bad"));
    let zero_ttl = [
        PutEntry::new(&good, bytes("v")),
        PutEntry {
            ttl: Some(Duration::ZERO),
            ..PutEntry::new(&bad, bytes("v"))
        },
    ];
    let err = store.put_many(&zero_ttl).await.unwrap_err();
    assert!(matches!(err, Error::InvalidTtl { .. }), "{err}");
    let many: Vec<_> = (0..=matroska_core::store::MAX_TAGS_PER_ENTRY)
        .map(|i| tag(&Dep::id("batch_many", i64::try_from(i).unwrap())))
        .collect();
    let too_many = [
        PutEntry::new(&good, bytes("v")),
        PutEntry {
            tags: &many,
            ..PutEntry::new(&bad, bytes("v"))
        },
    ];
    let err = store.put_many(&too_many).await.unwrap_err();
    assert!(matches!(err, Error::TooManyTags { .. }), "{err}");
    assert_eq!(hit(&store, &good).await, None, "nothing may be written");
    assert_eq!(hit(&store, &bad).await, None, "nothing may be written");
}

/// Without tokens, `put_many` stores unconditionally and replaces value and tags, as `put`;
/// an invalidation then removes every entry of the batch that carries the tag.
pub async fn put_many_without_tokens_replaces_and_invalidation_removes<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b, c) = (
        key("batch:plain:a"),
        key("batch:plain:b"),
        key("batch:plain:c"),
    );
    let (old, new) = (tag(&Dep::id("batch_old", 1)), tag(&Dep::id("batch_new", 1)));
    store
        .put(&a, bytes("old"), std::slice::from_ref(&old), None, None)
        .await
        .unwrap();
    let tags = [new.clone()];
    let entries = [
        PutEntry {
            tags: &tags,
            ..PutEntry::new(&a, bytes("a"))
        },
        PutEntry {
            tags: &tags,
            ..PutEntry::new(&b, bytes("b"))
        },
        PutEntry::new(&c, bytes("c")),
    ];
    let outcomes = store.put_many(&entries).await.unwrap();
    assert_eq!(outcomes, [PutOutcome::Stored; 3]);
    store.invalidate(&[old]).await.unwrap();
    assert_eq!(
        hit(&store, &a).await,
        Some(bytes("a")),
        "the old tag is gone"
    );
    assert_eq!(store.invalidate(&[new]).await.unwrap(), 2);
    let found = store.get_many(&[a, b, c]).await.unwrap();
    assert!(matches!(found[0], Lookup::Miss(_)) && matches!(found[1], Lookup::Miss(_)));
    assert_eq!(found[2], Lookup::Hit(bytes("c")));
}

/// `Cache::fetch_many` loads only the misses, stores fresh loads, returns but does not store a
/// load whose dependency was invalidated while it ran, and counts what it did.
pub async fn fetch_many_keeps_the_fill_protocol<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    cache.put("batch:fm:cached", &0_i64).await.unwrap();
    let keys = ["batch:fm:cached", "batch:fm:fresh", "batch:fm:raced"];
    let racing = cache.clone();
    let fetched = cache
        .fetch_many(keys, |missing: Vec<Key>| async move {
            assert_eq!(missing.len(), 2, "only the misses are loaded: {missing:?}");
            racing.invalidate([Dep::id("batch_fm", 2)]).await.unwrap();
            Ok::<_, std::io::Error>(vec![
                Loaded::new(1_i64).dep(Dep::id("batch_fm", 1)),
                Loaded::new(2_i64).dep(Dep::id("batch_fm", 2)),
            ])
        })
        .await
        .unwrap();
    let values: Vec<i64> = fetched.iter().map(|f| f.value).collect();
    assert_eq!(values, [0, 1, 2]);
    assert!(fetched[0].is_hit());
    assert_eq!(
        fetched[1].origin,
        matroska_core::Origin::Loaded { stored: true }
    );
    assert_eq!(
        fetched[2].origin,
        matroska_core::Origin::Loaded { stored: false }
    );
    assert_eq!(
        cache.get_many::<i64>(keys).await.unwrap(),
        [Some(0), Some(1), None]
    );
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.fills_rejected), (1, 1));
}

/// Batches follow the envelope's times as single reads do: `put_many` and `fetch_many` stamp
/// item history, and an entry kept past its logical expiry as a fail-safe fallback is a miss to
/// `get_many` and is reloaded (and stored) by `fetch_many`; an invalidated one is gone.
pub async fn batches_follow_logical_expiry_and_item_history<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = Cache::builder(store.clone())
        .clock(h.clock())
        .default_ttl(Duration::from_secs(1))
        .fail_safe(Duration::from_secs(60))
        .build();
    let (a, b) = (key("batch:life:a"), key("batch:life:b"));
    cache
        .put_many([
            (a.clone(), Loaded::new(1_u32).dep(Dep::id("life", 1))),
            (b.clone(), Loaded::new(2_u32).dep(Dep::id("life", 2))),
        ])
        .await
        .unwrap();
    let found = cache
        .fetch_many([a.clone(), b.clone()], |_| async {
            Ok::<_, std::io::Error>(Vec::<Loaded<u32>>::new())
        })
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .all(|f| f.is_hit() && f.last_retrieved.is_some() && f.last_modified.is_some())
    );

    // Past the TTL the store still holds both (fail-safe), but they are not live.
    h.advance(&store, Duration::from_millis(1500)).await;
    assert_eq!(
        cache.get_many::<u32>([a.clone(), b.clone()]).await.unwrap(),
        [None, None]
    );
    cache.invalidate([Dep::id("life", 2)]).await.unwrap();
    let reloaded = cache
        .fetch_many([a.clone(), b.clone()], |missing: Vec<Key>| async move {
            assert_eq!(missing.len(), 2);
            Ok::<_, std::io::Error>(vec![Loaded::new(10_u32), Loaded::new(20_u32)])
        })
        .await
        .unwrap();
    assert_eq!(
        reloaded.iter().map(|f| f.value).collect::<Vec<_>>(),
        [10, 20]
    );
    assert!(
        reloaded
            .iter()
            .all(|f| f.origin == matroska_core::Origin::Loaded { stored: true }),
        "{:?}",
        reloaded.iter().map(|f| f.origin).collect::<Vec<_>>()
    );
    assert_eq!(
        cache.get_many::<u32>([a, b]).await.unwrap(),
        [Some(10), Some(20)]
    );
}
