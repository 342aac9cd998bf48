//! Nothing grows forever: what a large invalidation, a lost index or a set aside leaves behind
//! (stamps, metadata, sets) goes once it has nothing left to protect, and housekeeping never
//! makes an invalidated entry readable again.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::Dep;
use matroska_core::store::Store;
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::{FILL_WINDOW, Scratch, put_many};

/// Real time: the fill window must pass for a stamp to have nothing left to protect.
async fn past_the_fill_window() {
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(300)).await;
}

/// A persistent index too large for one script is set aside and reclaimed; once it is reclaimed
/// and the fill window has passed, the tag's stamp goes (before the fix it stayed forever: its
/// lifetime was that of the persistent entries that were set aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_invalidation_of_a_persistent_index_leaves_no_permanent_stamp() {
    let Some(mut s) = Scratch::new(4).await else {
        return;
    };
    let t = tag(&Dep::tag("hot"));
    put_many(&s.store, "hot", 10, std::slice::from_ref(&t), None).await;
    assert_eq!(
        s.store.invalidate(std::slice::from_ref(&t)).await.unwrap(),
        10
    );
    past_the_fill_window().await;
    s.store.reclaim().await.unwrap();
    let layout = s.store.layout().clone();
    assert!(
        !support::has_stamp(&mut s.conn, &layout, &t).await,
        "the stamp of a fully reclaimed invalidation outlives the fill window"
    );
    for i in 0..10 {
        assert_eq!(hit(&s.store, &key(&format!("hot:{i}"))).await, None);
    }
}

/// A persistent index lost before its tag is invalidated: its entries stay misses, and once
/// housekeeping has looked at every entry (and the fill window has passed) the tag's metadata
/// goes (before the fix the stamp stayed forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_persistent_index_leaves_no_permanent_stamp() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::tag("lost"));
    put_many(&s.store, "lost", 5, std::slice::from_ref(&t), None).await;
    let control = tag(&Dep::tag("control"));
    put_many(&s.store, "control", 2, std::slice::from_ref(&control), None).await;
    let index = s.store.layout().index(&t);
    let _: () = redis::cmd("DEL")
        .arg(index)
        .query_async(&mut s.conn)
        .await
        .unwrap();
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(hit(&s.store, &key("lost:0")).await, None);
    past_the_fill_window().await;
    s.store.reclaim().await.unwrap();
    let layout = s.store.layout().clone();
    assert!(
        !support::has_stamp(&mut s.conn, &layout, &t).await,
        "the stamp of a lost persistent index outlives housekeeping"
    );
    for i in 0..5 {
        assert_eq!(
            hit(&s.store, &key(&format!("lost:{i}"))).await,
            None,
            "lost:{i}"
        );
    }
    assert_eq!(hit(&s.store, &key("control:1")).await, Some(v("control")));
}
