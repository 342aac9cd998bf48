//! The typed front end, end to end on the store under test.

use std::convert::Infallible;
use std::time::Duration;

use matroska_core::codec::Json;
use matroska_core::store::KeyTtl;
use matroska_core::{Cache, Dep, Loaded};
use serde::{Deserialize, Serialize};

use crate::Harness;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Page {
    id: u64,
    title: String,
    tags: Vec<String>,
}

fn page(id: u64) -> Page {
    Page {
        id,
        title: format!("page {id}"),
        tags: vec!["a".into(), "b".into()],
    }
}

/// `get_or_insert_with` loads once, serves from the cache, and is invalidated by its deps.
pub async fn get_or_insert_with_caches_and_tracks_deps<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let load = |id: u64| {
        move || async move {
            Ok::<_, Infallible>(
                Loaded::new(page(id)).deps([Dep::id("page", id), Dep::id("site", 1)]),
            )
        }
    };
    assert_eq!(
        cache.get_or_insert_with("cache:p1", load(1)).await.unwrap(),
        page(1)
    );
    assert_eq!(
        cache.get_or_insert_with("cache:p1", load(1)).await.unwrap(),
        page(1)
    );
    assert_eq!(cache.stats().loads, 1);
    cache.invalidate([Dep::id("site", 1)]).await.unwrap();
    assert_eq!(
        cache.get_or_insert_with("cache:p1", load(1)).await.unwrap(),
        page(1)
    );
    assert_eq!(cache.stats().loads, 2);
}

/// The counters count hits, misses, loads, fills and invalidations.
pub async fn counters_track_what_happened<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    assert_eq!(cache.get::<Page>("cache:none").await.unwrap(), None);
    cache
        .put("cache:p", &page(1))
        .dep(Dep::id("page", 1))
        .await
        .unwrap();
    assert_eq!(cache.get::<Page>("cache:p").await.unwrap(), Some(page(1)));
    assert_eq!(cache.invalidate([Dep::id("page", 1)]).await.unwrap(), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
    assert_eq!(
        (stats.fills, stats.invalidations, stats.entries_invalidated),
        (1, 1, 1)
    );
    assert!((stats.hit_rate() - 0.5).abs() < f64::EPSILON);
}

/// The JSON codec round-trips, and does not read MessagePack entries (a miss, not garbage).
pub async fn json_codec_round_trips_and_codecs_do_not_mix<H: Harness>(h: &H) {
    let store = h.store().await;
    let json = Cache::builder(store.clone()).codec(Json).build();
    json.put("cache:json", &page(2)).await.unwrap();
    assert_eq!(json.get::<Page>("cache:json").await.unwrap(), Some(page(2)));
    let msgpack = Cache::new(store);
    assert_eq!(msgpack.get::<Page>("cache:json").await.unwrap(), None);
}

/// Bumping the schema version turns old entries into misses.
pub async fn schema_version_change_is_a_miss<H: Harness>(h: &H) {
    let store = h.store().await;
    Cache::builder(store.clone())
        .schema_version(1)
        .build()
        .put("cache:v", &page(3))
        .await
        .unwrap();
    let v2 = Cache::builder(store).schema_version(2).build();
    assert_eq!(v2.get::<Page>("cache:v").await.unwrap(), None);
}

/// The default TTL applies to puts and fills that set none; an explicit TTL wins.
pub async fn default_ttl_applies_to_puts_and_fills<H: Harness>(h: &H) {
    let cache = Cache::builder(h.store().await)
        .default_ttl(Duration::from_secs(100))
        .build();
    cache.put("cache:default", &1).await.unwrap();
    cache
        .put("cache:explicit", &1)
        .ttl(Duration::from_secs(3000))
        .await
        .unwrap();
    cache
        .get_or_insert_with("cache:fill", || async {
            Ok::<_, Infallible>(Loaded::new(1))
        })
        .await
        .unwrap();
    for (key, max) in [
        ("cache:default", 100),
        ("cache:explicit", 3000),
        ("cache:fill", 100),
    ] {
        match cache.ttl(key).await.unwrap() {
            KeyTtl::Expires(left) => {
                assert!(left <= Duration::from_secs(max), "{key}: {left:?}");
                assert!(left > Duration::from_secs(max - 30), "{key}: {left:?}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}

/// `fetch` reports where each value came from, including a load that was not stored because a
/// dependency was invalidated during it.
pub async fn fetch_reports_the_origin_of_values<H: Harness>(h: &H) {
    use matroska_core::Origin;
    let cache = Cache::new(h.store().await);
    let load = || async { Ok::<_, Infallible>(Loaded::new(page(4)).dep(Dep::id("page", 4))) };
    let first = cache.fetch("cache:origin", load).await.unwrap();
    assert_eq!(first.origin, Origin::Loaded { stored: true });
    let second = cache.fetch("cache:origin", load).await.unwrap();
    assert_eq!((second.origin, second.value), (Origin::Cache, page(4)));
    cache.invalidate([Dep::id("page", 4)]).await.unwrap();
    let c = cache.clone();
    let racing = cache
        .fetch("cache:origin", || async move {
            // A write lands while this load runs.
            c.invalidate([Dep::id("page", 4)]).await.unwrap();
            Ok::<_, Infallible>(Loaded::new(page(4)).dep(Dep::id("page", 4)))
        })
        .await
        .unwrap();
    assert_eq!(racing.origin, Origin::Loaded { stored: false });
}
