//! Deterministic tests of subscriptions, strategies and appliers, without a server: events are
//! sent by hand and time is Tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome};
use matroska_core::{Error, Key, MemoryStore, Result, Store, Tag, async_trait};
use matroska_testkit::support::Rng;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::listen::TestFeed;
use super::*;

mod backlog;

/// When each invalidation happened, and its tags.
type Log = Arc<Mutex<Vec<(Instant, Vec<Tag>)>>>;

/// A memory store that records when each invalidation happened and can be told to fail.
#[derive(Debug, Clone, Default)]
struct Recording {
    inner: MemoryStore,
    log: Log,
    clears: Arc<Mutex<Vec<Instant>>>,
    failures: Arc<AtomicU32>,
}

impl Recording {
    fn fail_next(&self, calls: u32) {
        self.failures.store(calls, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::Backend {
                store: "recording",
                message: "injected failure".to_owned(),
                transient: true,
                source: None,
            });
        }
        Ok(())
    }

    /// When `tag` was first invalidated.
    fn applied_at(&self, tag: &Tag) -> Option<Instant> {
        self.log
            .lock()
            .iter()
            .find(|(_, tags)| tags.contains(tag))
            .map(|(at, _)| *at)
    }

    async fn put(&self, key: &str, tags: &[&str]) {
        let tags: Vec<Tag> = tags.iter().map(|t| Tag::parse(t).unwrap()).collect();
        self.inner
            .put(
                &Key::new(key).unwrap(),
                Bytes::from_static(b"v"),
                &tags,
                None,
                None,
            )
            .await
            .unwrap();
    }

    async fn has(&self, key: &str) -> bool {
        matches!(
            self.inner.get(&Key::new(key).unwrap()).await.unwrap(),
            Lookup::Hit(_)
        )
    }
}

#[async_trait]
impl Store for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }
    async fn get(&self, key: &Key) -> Result<Lookup> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &Key,
        value: Bytes,
        tags: &[Tag],
        ttl: Option<Duration>,
        token: Option<&FillToken>,
    ) -> Result<PutOutcome> {
        self.inner.put(key, value, tags, ttl, token).await
    }
    async fn delete(&self, key: &Key) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
        self.check()?;
        self.log.lock().push((Instant::now(), tags.to_vec()));
        self.inner.invalidate(tags).await
    }
    async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
        self.inner.ttl(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.check()?;
        self.clears.lock().push(Instant::now());
        self.inner.clear().await
    }
}

fn feed() -> (Listener, TestFeed) {
    TestFeed::new(
        ListenerConfig::from_url_deferred("postgres://localhost/db").watch_kinds(["article"]),
    )
}

fn tag(text: &str) -> Tag {
    Tag::parse(text).unwrap()
}

fn gaps_into(sink: &Arc<Mutex<Vec<String>>>) -> impl Fn(&Gap) + Send + Sync + 'static {
    let sink = Arc::clone(sink);
    move |gap: &Gap| sink.lock().push(format!("{:?}", gap.reason()))
}

/// Lets every ready task run (paused time does not advance while something can run).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_subscriber_gets_every_event_in_order() {
    let (listener, feed) = feed();
    let mut a = listener.subscribe();
    let mut b = listener.subscribe();
    for n in 0..100 {
        feed.tags(&[&format!("i:article:{n}")]);
    }
    for subscription in [&mut a, &mut b] {
        for n in 0..100 {
            match subscription.recv().await {
                Some(Event::Tags(batch)) => {
                    assert_eq!(batch.tags(), [tag(&format!("i:article:{n}"))]);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscription_made_while_connected_starts_with_a_gap() {
    let (listener, feed) = feed();
    let mut early = listener.subscribe();
    feed.connect(GapReason::Started);
    let mut late = listener.subscribe();
    feed.tags(&["i:article:1"]);
    for subscription in [&mut early, &mut late] {
        assert!(matches!(
            subscription.recv().await,
            Some(Event::Gap(gap)) if matches!(gap.reason(), GapReason::Started)
        ));
        assert!(matches!(subscription.recv().await, Some(Event::Tags(_))));
    }
    // After a disconnect, a new subscriber waits for the reconnection's gap instead.
    feed.disconnect();
    let mut during = listener.subscribe();
    feed.connect(GapReason::Reconnected {
        down_for: Duration::from_secs(1),
    });
    assert!(matches!(
        during.recv().await,
        Some(Event::Gap(gap)) if matches!(gap.reason(), GapReason::Reconnected { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_gets_a_gap_and_the_others_are_unaffected() {
    let (listener, feed) =
        TestFeed::new(ListenerConfig::from_url_deferred("postgres://localhost/db").buffer(4));
    let mut slow = listener.subscribe();
    let mut fast = listener.subscribe();
    for n in 0..10 {
        feed.tags(&[&format!("i:article:{n}")]);
        assert!(matches!(fast.recv().await, Some(Event::Tags(_))));
    }
    match slow.recv().await {
        Some(Event::Gap(gap)) => {
            assert!(matches!(gap.reason(), GapReason::Lagged { missed: 6 }));
        }
        other => panic!("{other:?}"),
    }
    // Then the four newest.
    for n in 6..10 {
        match slow.recv().await {
            Some(Event::Tags(batch)) => {
                assert_eq!(batch.tags(), [tag(&format!("i:article:{n}"))]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn subscriptions_end_when_the_listener_goes_away() {
    let (listener, feed) = feed();
    let mut subscription = listener.subscribe();
    let store = Recording::default();
    let handle = listener.apply(store, Strategy::Immediate).unwrap();
    drop(feed);
    drop(listener);
    assert!(subscription.recv().await.is_none());
    settle().await;
    assert!(handle.is_finished());
}

/// Sends one uniquely tagged event at each offset and checks that every tag was applied no
/// later than `bound` after it was sent: no strategy leaves an entry stale once its window closes.
async fn check_no_staleness(strategy: Strategy, offsets_ms: &[u64]) {
    let (listener, feed) = feed();
    let store = Recording::default();
    let _handle = listener.apply(store.clone(), strategy).unwrap();
    let start = Instant::now();
    let mut sent = Vec::new();
    for (n, offset) in offsets_ms.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_millis(*offset)).await;
        let text = format!("i:article:{n}");
        store.put(&format!("k{n}"), &[&text]).await;
        feed.tags(&[&text]);
        sent.push((tag(&text), Instant::now(), format!("k{n}")));
    }
    tokio::time::sleep(strategy.delay_bound() + Duration::from_millis(1)).await;
    let bound = strategy.delay_bound();
    for (tag, at, key) in sent {
        let applied = store
            .applied_at(&tag)
            .unwrap_or_else(|| panic!("{strategy:?}: {tag} was never applied"));
        assert!(
            applied.duration_since(at) <= bound,
            "{strategy:?}: {tag} sent at {:?} applied at {:?}",
            at - start,
            applied - start
        );
        assert!(!store.has(&key).await, "{strategy:?}: {key} is stale");
    }
}

#[tokio::test(start_paused = true)]
async fn no_strategy_leaves_data_stale_after_its_window() {
    let mut rng = Rng::new(0x5eed);
    let ms = Duration::from_millis;
    for strategy in [
        Strategy::Immediate,
        Strategy::Batched { window: ms(50) },
        Strategy::RateLimited { interval: ms(100) },
    ] {
        for _ in 0..20 {
            // Bursts and quiet periods: gaps between events of 0 to 250 ms.
            let mut offsets = Vec::new();
            let mut t = 0;
            for _ in 0..30 {
                t += match rng.below(4) {
                    0 => 0,
                    1 => rng.below(10),
                    2 => rng.below(60),
                    _ => rng.below(250),
                } as u64;
                offsets.push(t);
            }
            check_no_staleness(strategy, &offsets).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limited_applies_the_trailing_event_that_pgcachewatch_timed_ignores() {
    // PGCacheWatch's Timed(1 s): a write 0.1 s after a clearing write is never reflected.
    let (listener, feed) = feed();
    let store = Recording::default();
    let interval = Duration::from_secs(1);
    let _handle = listener
        .apply(store.clone(), Strategy::RateLimited { interval })
        .unwrap();
    let start = Instant::now();
    feed.tags(&["i:article:1"]);
    settle().await;
    assert_eq!(
        store.applied_at(&tag("i:article:1")),
        Some(start),
        "leading edge"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.put("second", &["i:article:2"]).await;
    feed.tags(&["i:article:2"]);
    tokio::time::sleep(Duration::from_millis(899)).await;
    assert!(
        store.has("second").await,
        "within the interval, the apply waits"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        store.applied_at(&tag("i:article:2")),
        Some(start + interval),
        "the trailing apply runs when the interval has passed"
    );
    assert!(!store.has("second").await);
}

#[tokio::test(start_paused = true)]
async fn batched_applies_a_lone_event_that_pgcachewatch_windowed_never_clears() {
    // PGCacheWatch's Windowed([insert, update, delete]): a lone UPDATE never clears.
    let (listener, feed) = feed();
    let store = Recording::default();
    let window = Duration::from_millis(50);
    let _handle = listener
        .apply(store.clone(), Strategy::Batched { window })
        .unwrap();
    let start = Instant::now();
    feed.tags(&["i:article:1"]);
    settle().await;
    feed.tags(&["i:article:2", "i:article:1"]);
    tokio::time::sleep(window * 2).await;
    let log = store.log.lock().clone();
    assert_eq!(log.len(), 1, "one apply for the batch: {log:?}");
    assert_eq!(log[0].0, start + window);
    assert_eq!(log[0].1.len(), 2, "deduplicated");
}

#[tokio::test(start_paused = true)]
async fn immediate_coalesces_what_arrives_during_an_apply() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let _handle = listener.apply(store.clone(), Strategy::Immediate).unwrap();
    // All sent before the applier runs: one apply with everything.
    for n in 0..50 {
        feed.tags(&[&format!("i:article:{n}")]);
    }
    settle().await;
    let log = store.log.lock().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].1.len(), 50);
}

#[tokio::test(start_paused = true)]
async fn gaps_invalidate_the_watched_kinds_at_once_under_any_strategy() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let _handle = listener
        .applier(store.clone())
        .strategy(Strategy::RateLimited {
            interval: Duration::from_secs(3600),
        })
        .on_gap(gaps_into(&gaps))
        .spawn()
        .unwrap();
    store.put("article", &["i:article:1", "a:article"]).await;
    store.put("author", &["i:author:1", "a:author"]).await;
    feed.connect(GapReason::Started);
    settle().await;
    assert!(!store.has("article").await, "the start is a gap by default");
    assert!(store.has("author").await, "unwatched kinds are kept");
    store.put("article", &["i:article:1", "a:article"]).await;
    feed.disconnect();
    settle().await;
    assert!(
        !store.has("article").await,
        "a disconnect is acted on at once"
    );
    store.put("article", &["i:article:1", "a:article"]).await;
    feed.connect(GapReason::Reconnected {
        down_for: Duration::from_secs(1),
    });
    settle().await;
    assert!(!store.has("article").await, "and so is the reconnection");
    assert_eq!(gaps.lock().len(), 3, "{:?}", gaps.lock());
    assert!(gaps.lock()[1].starts_with("Disconnected"));
}

#[tokio::test(start_paused = true)]
async fn trust_start_clear_and_nothing() {
    let (listener, feed) = feed();
    let trusting = Recording::default();
    let clearing = Recording::default();
    let nothing = Recording::default();
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let _a = listener
        .applier(trusting.clone())
        .trust_start(true)
        .spawn()
        .unwrap();
    let _b = listener
        .applier(clearing.clone())
        .gap_action(GapAction::Clear)
        .spawn()
        .unwrap();
    let _c = listener
        .applier(nothing.clone())
        .gap_action(GapAction::Nothing)
        .on_gap(gaps_into(&gaps))
        .spawn()
        .unwrap();
    for store in [&trusting, &clearing, &nothing] {
        store.put("article", &["i:article:1", "a:article"]).await;
        store.put("free", &["g:homepage"]).await;
    }
    feed.connect(GapReason::Started);
    settle().await;
    assert!(trusting.has("article").await, "trusted start");
    assert!(!clearing.has("article").await && !clearing.has("free").await);
    assert!(nothing.has("article").await);
    assert_eq!(gaps.lock().len(), 1);
    // A later gap is acted on even when the start is trusted.
    feed.tags(&["i:author:1"]);
    let _ = feed
        .sender
        .send(Event::Gap(Gap::new(GapReason::Lagged { missed: 1 })));
    settle().await;
    assert!(!trusting.has("article").await);
    assert!(trusting.has("free").await);
}

#[tokio::test(start_paused = true)]
async fn an_applier_without_anything_to_invalidate_on_a_gap_is_refused() {
    let (listener, _feed) =
        TestFeed::new(ListenerConfig::from_url_deferred("postgres://localhost/db"));
    let err = listener
        .apply(MemoryStore::new(), Strategy::Immediate)
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        listener
            .applier(MemoryStore::new())
            .gap_action(GapAction::Clear)
            .spawn()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn store_failures_delay_but_never_drop_an_invalidation() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let handle = listener
        .applier(store.clone())
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .spawn()
        .unwrap();
    store.put("k", &["i:article:1"]).await;
    store.put("j", &["i:article:2"]).await;
    store.fail_next(5);
    feed.tags(&["i:article:1"]);
    settle().await;
    // Arrives while the store is failing: merged into the retry.
    feed.tags(&["i:article:2"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!store.has("k").await && !store.has("j").await);
    let stats = handle.stats();
    assert_eq!(stats.store_errors, 5);
    assert_eq!(stats.applies, 1, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_callback_does_not_stop_the_applier() {
    let (listener, feed) = feed();
    let store = Recording::default();
    let _handle = listener
        .applier(store.clone())
        .on_gap(|_| panic!("callback bug"))
        .on_applied(|_| panic!("callback bug"))
        .spawn()
        .unwrap();
    feed.connect(GapReason::Started);
    settle().await;
    store.put("k", &["i:article:1"]).await;
    feed.tags(&["i:article:1"]);
    settle().await;
    assert!(!store.has("k").await);
}
