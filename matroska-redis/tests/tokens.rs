//! Fill tokens judged on the server: too old (by the server's wall clock and by the sequence
//! number, which never goes backwards), from the future (a clock stepped back, a failover to a
//! server behind, a crafted token), from another namespace or generation.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::store::{FillToken, Lookup, PutOutcome, Store};
use matroska_core::{Dep, Key};
use matroska_redis::RedisStore;
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::{FILL_WINDOW, Scratch};

async fn miss_token(store: &RedisStore, k: &Key) -> FillToken {
    match store.get(k).await.unwrap() {
        Lookup::Miss(token) => token,
        Lookup::Hit(bytes) => panic!("{k}: expected a miss, got {bytes:?}"),
    }
}

fn window_ms() -> u64 {
    u64::try_from(FILL_WINDOW.as_millis()).unwrap()
}

/// A token issued later than the server's now (beyond a second's tolerance) is refused, and so
/// is one whose sequence number the namespace has not reached: both can only come from a clock
/// that stepped back, a failover to a server behind, or a crafted token. Before the fix, a token
/// with a sequence number from the future passed every stamp check, also of tags invalidated
/// after the miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_future_is_refused() {
    let Some(s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::id("article", 1));
    let k = key("fill");
    let token = miss_token(&s.store, &k).await;
    let epoch = token.snapshot().unwrap().to_owned();
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();

    // A tag nobody invalidated: only the token's time can refuse it.
    let untouched = tag(&Dep::id("article", 2));
    let later = FillToken::new(token.seq(), token.issued_at_ms() + 10 * 60_000)
        .with_snapshot(epoch.as_str());
    let outcome = s
        .store
        .put(
            &k,
            v("future"),
            std::slice::from_ref(&untouched),
            None,
            Some(&later),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "issued ten minutes from now");

    let ahead = FillToken::new(token.seq() + 1_000_000_000_000, token.issued_at_ms())
        .with_snapshot(epoch.as_str());
    let outcome = s
        .store
        .put(
            &k,
            v("future"),
            std::slice::from_ref(&t),
            None,
            Some(&ahead),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "a sequence number from the future"
    );
    assert_eq!(hit(&s.store, &k).await, None);

    // Within the tolerance: a token issued a moment "later" (a clock a few ms ahead) is fine.
    let fresh = miss_token(&s.store, &k).await;
    let close = FillToken::new(fresh.seq(), fresh.issued_at_ms() + 200)
        .with_snapshot(fresh.snapshot().unwrap());
    let outcome = s
        .store
        .put(&k, v("ok"), std::slice::from_ref(&t), None, Some(&close))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
}

/// A token whose wall-clock time looks young (the server's clock stepped back since the miss)
/// but whose sequence number is older than the fill window is refused once the stamps it would
/// have met are gone. Before the fix only the wall clock judged the age: the stamp had expired,
/// and the fill was stored although its tag was invalidated after the miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_looks_younger_than_its_sequence_number_is_refused() {
    let Some(s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::id("article", 1));
    let k = key("fill");
    let token = miss_token(&s.store, &k).await;
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    // Real time: what is tested is the fill window passing (the store's housekeeping then
    // forgets the stamp).
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(300)).await;
    s.store.reclaim().await.unwrap();
    let now = miss_token(&s.store, &key("clock")).await.issued_at_ms();
    let young = FillToken::new(token.seq(), now).with_snapshot(token.snapshot().unwrap());
    let outcome = s
        .store
        .put(&k, v("stale"), std::slice::from_ref(&t), None, Some(&young))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PutOutcome::Stale,
        "a load that began before the invalidation"
    );
    assert_eq!(hit(&s.store, &k).await, None);
}

/// The boundary of the window on the sequence number: a token exactly a window behind the
/// namespace's sequence number is refused; one a microsecond younger is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequence_window_boundary_is_exact() {
    let Some(s) = Scratch::new(256).await else {
        return;
    };
    let k = key("fill");
    let token = miss_token(&s.store, &k).await;
    let window_us = window_ms() * 1000;
    let epoch = token.snapshot().unwrap().to_owned();
    let at = |seq: u64| FillToken::new(seq, token.issued_at_ms()).with_snapshot(epoch.as_str());
    let outcome = s
        .store
        .put(&k, v("old"), &[], None, Some(&at(token.seq() - window_us)))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stale, "exactly a window behind");
    let outcome = s
        .store
        .put(
            &k,
            v("young"),
            &[],
            None,
            Some(&at(token.seq() - window_us + 1)),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored, "a microsecond younger");
}

/// Tokens are judged on the server's clock: one issued (by the server's clock) longer ago than
/// the fill window is refused, one without a generation too, one just issued is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_window_is_measured_on_the_servers_clock() {
    let Some(s) = Scratch::new(256).await else {
        return;
    };
    let k = key("window");
    let token = miss_token(&s.store, &k).await;
    let epoch = token.snapshot().unwrap().to_owned();
    let old = FillToken::new(token.seq(), token.issued_at_ms() - window_ms())
        .with_snapshot(epoch.as_str());
    assert_eq!(
        s.store
            .put(&k, v("late"), &[], None, Some(&old))
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    let young = FillToken::new(token.seq(), token.issued_at_ms() - window_ms() / 2)
        .with_snapshot(epoch.as_str());
    let foreign = FillToken::new(token.seq(), token.issued_at_ms());
    assert_eq!(
        s.store
            .put(&k, v("no generation"), &[], None, Some(&foreign))
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(
        s.store
            .put(&k, v("ok"), &[], None, Some(&young))
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.store
            .put(&k, v("ok"), &[], None, Some(&token))
            .await
            .unwrap(),
        PutOutcome::Stored
    );
}
