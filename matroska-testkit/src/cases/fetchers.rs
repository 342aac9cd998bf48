//! Registered fetchers and proactive refresh
//! ([`matroska_core::fetchers`]), on the store under test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use matroska_core::fetchers::{Fetcher, Fetchers};
use matroska_core::{Cache, Loaded, Origin, Store};

use crate::Harness;

/// A loader error.
#[derive(Debug, thiserror::Error)]
#[error("the source is down")]
struct Down;

type Query = BTreeMap<String, String>;

fn query(pairs: &[(&str, &str)]) -> Query {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A fetcher `name` returning `name:<query>` and counting its loads per query.
fn counting(
    name: &'static str,
    loads: &Arc<parking_lot::Mutex<BTreeMap<String, u64>>>,
    refresh_after: Duration,
) -> Fetcher<Query, String> {
    let loads = Arc::clone(loads);
    Fetcher::new(name, move |q: Query| {
        let text = format!("{q:?}");
        *loads.lock().entry(text.clone()).or_default() += 1;
        async move { Ok::<_, Down>(Loaded::new(format!("{name}:{text}"))) }
    })
    .ttl(Duration::from_secs(60))
    .refresh_after(refresh_after)
}

fn cache<H: Harness>(h: &H, store: H::Store) -> Cache<H::Store> {
    Cache::builder(store).clock(h.clock()).build()
}

/// One key per query whatever the order of its fields; escaped values do not collide; an
/// unknown name or a bad query is an error, not a load.
pub async fn a_query_is_one_key_whatever_its_field_order<H: Harness>(h: &H) {
    let loads = Arc::default();
    let fetchers = Fetchers::builder(cache(h, h.store().await))
        .register(counting("data", &loads, Duration::from_secs(30)))
        .build();
    let a = fetchers
        .fetch_json("data", serde_json::json!({"b": "2", "a": "1"}))
        .await
        .unwrap();
    let b = fetchers
        .fetch_json("data", serde_json::json!({"a": "1", "b": "2"}))
        .await
        .unwrap();
    assert_eq!(a.origin, Origin::Loaded { stored: true });
    assert!(b.is_hit(), "{b:?}");
    let escaped = fetchers
        .fetch::<_, String>("data", query(&[("a", "1&b=2")]))
        .await
        .unwrap();
    assert_eq!(
        escaped.origin,
        Origin::Loaded { stored: true },
        "another key"
    );
    assert_eq!(loads.lock().len(), 2);
    assert!(matches!(
        fetchers.fetch_json("nobody", serde_json::json!({})).await,
        Err(matroska_core::Error::UnknownFetcher { .. })
    ));
    assert!(matches!(
        fetchers
            .fetch_json("data", serde_json::json!({"a": 1}))
            .await,
        Err(matroska_core::Error::InvalidQuery { .. })
    ));
}

/// Keys read within the idle window are refreshed ahead of expiry by `refresh_due` although
/// nobody reads them then; keys nobody read for the idle window are forgotten, not refreshed.
pub async fn keys_read_within_the_idle_window_are_refreshed_and_idle_ones_are_not<H: Harness>(
    h: &H,
) {
    let store = h.store().await;
    let loads = Arc::default();
    let fetchers = Fetchers::builder(cache(h, store.clone()))
        .register(counting("feed", &loads, Duration::from_secs(2)))
        .idle_window(Duration::from_millis(2500))
        .build();
    let (hot, idle) = (query(&[("id", "hot")]), query(&[("id", "idle")]));
    h.advance(&store, Duration::from_millis(10)).await;
    for q in [&hot, &idle] {
        fetchers
            .fetch::<_, String>("feed", q.clone())
            .await
            .unwrap();
    }
    assert_eq!(fetchers.tracked(), 2);
    // Read again before its refresh point (a read past it would refresh it itself): still hot.
    h.advance(&store, Duration::from_secs(1)).await;
    let read = fetchers
        .fetch::<_, String>("feed", hot.clone())
        .await
        .unwrap();
    assert!(read.is_hit());
    let report = fetchers.refresh_due().await;
    assert_eq!(report.idle, 0, "{report:?}");
    h.advance(&store, Duration::from_millis(1800)).await;
    let report = fetchers.refresh_due().await;
    assert_eq!((report.refreshed, report.idle), (1, 1), "{report:?}");
    assert_eq!(fetchers.tracked(), 1);
    let loads = loads.lock().clone();
    assert_eq!(loads.get(&format!("{hot:?}")), Some(&2), "{loads:?}");
    assert_eq!(loads.get(&format!("{idle:?}")), Some(&1), "{loads:?}");
    // The refreshed entry is a plain hit, not due any more.
    let again = fetchers.fetch::<_, String>("feed", hot).await.unwrap();
    assert!(again.is_hit());
    assert_eq!(fetchers.refresh_due().await.refreshed, 0);
}

/// At most `max_concurrent` proactive refreshes run at once, and they all run; the refresher task
/// stops when told.
pub async fn proactive_refresh_is_bounded_and_its_task_stops<H: Harness>(h: &H) {
    let store = h.store().await;
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loads = Arc::new(AtomicU64::new(0));
    let fetcher = {
        let (running, most, loads) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&loads));
        Fetcher::new("slow", move |q: Query| {
            let (running, most, loads) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&loads));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Down>(Loaded::new(format!("{q:?}")))
            }
        })
        .ttl(Duration::from_secs(60))
        .refresh_after(Duration::from_millis(500))
    };
    let fetchers = Fetchers::builder(cache(h, store.clone()))
        .register(fetcher)
        .max_concurrent(2)
        .build();
    for i in 0..6 {
        let id = i.to_string();
        fetchers
            .fetch::<_, String>("slow", query(&[("id", &id)]))
            .await
            .unwrap();
    }
    most.store(0, Ordering::SeqCst);
    h.advance(&store, Duration::from_millis(700)).await;
    let report = fetchers.refresh_due().await;
    assert_eq!(report.refreshed, 6, "{report:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 12);
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} refreshes ran at once");

    // The task refreshes what is due; once stopped, nothing more.
    let refresher = fetchers.spawn_refresher(Duration::from_millis(10));
    assert!(!refresher.is_finished());
    h.advance(&store, Duration::from_millis(700)).await;
    for _ in 0..4000 {
        if loads.load(Ordering::SeqCst) == 18 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        18,
        "the task refreshed every due key"
    );
    refresher.stop().await;
    h.advance(&store, Duration::from_millis(700)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(loads.load(Ordering::SeqCst), 18, "a stopped task refreshed");
    assert_eq!(fetchers.tracked(), 6, "{}", store.name());
}
