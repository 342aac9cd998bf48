//! The keys a namespace is made of, and their lifetimes: the scripts and `KeyLayout` agree on the
//! names, index lifetimes only grow and follow their longest-lived entry, dead members leave, and
//! a clear or `remove_namespace` leaves what it says.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use matroska_core::store::Store;
use matroska_core::{Dep, Key};
use matroska_testkit::support::{bytes as v, eventually, hit, key, tag};
use redis::aio::MultiplexedConnection;

use crate::support::{FILL_WINDOW, Scratch, Until};

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

async fn zcard(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

async fn exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(conn)
        .await
        .unwrap()
        == 1
}

async fn zscore(conn: &mut MultiplexedConnection, key: &str, member: &[u8]) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query_async(conn)
        .await
        .unwrap()
}

/// The scripts build the same key names as `KeyLayout`: entries are strings, indexes sorted sets
/// holding the key, the metadata a hash holding the tag's record and the generation that the
/// state string names too; every entry names the generation it was filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_key_layout_agree() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let layout = s.store.layout().clone();
    let (k, t) = (key("layout:k"), tag(&Dep::id("article", 5)));
    s.store
        .put(
            &k,
            v("v"),
            std::slice::from_ref(&t),
            Some(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap();
    let kind = |key: String| {
        let mut conn = s.conn.clone();
        async move {
            redis::cmd("TYPE")
                .arg(key)
                .query_async::<String>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(kind(layout.entry(&k)).await, "string");
    assert_eq!(kind(layout.index(&t)).await, "zset");
    assert_eq!(kind(layout.meta()).await, "hash");
    let generation: String = redis::cmd("HGET")
        .arg(layout.meta())
        .arg("gen")
        .query_async(&mut s.conn)
        .await
        .unwrap();
    let entry: Vec<u8> = redis::cmd("GET")
        .arg(layout.entry(&k))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(
        &entry[20..48],
        generation.as_bytes(),
        "the entry's generation"
    );
    assert!(
        zscore(&mut s.conn, &layout.index(&t), k.as_str().as_bytes())
            .await
            .is_some()
    );
    let state: String = redis::cmd("GET")
        .arg(layout.seq())
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert!(
        state.contains(&format!(" gen={generation} ")),
        "{state} names {generation}"
    );
    let record = support::record(&mut s.conn, &layout, &t).await.unwrap();
    assert_eq!(record.stamp, 0);
    assert!(matches!(record.index_until, Until::At(_)), "{record:?}");
    // Nothing else was created, and everything is under the namespace's hash tag.
    assert_eq!(s.keys().await, 4);
    s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
    assert!(!exists(&mut s.conn, &layout.entry(&k)).await);
    assert!(!exists(&mut s.conn, &layout.index(&t)).await);
}

/// An index lives as long as its longest-lived entry: its TTL grows with longer entries, turns
/// persistent with a persistent one, and never shrinks; the tag's record says until when the
/// index should exist. After an invalidation the record only keeps the stamp for the fill window,
/// and housekeeping then removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_ttl_only_grows() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::tag("grows"));
    let layout = s.store.layout().clone();
    let index = layout.index(&t);
    let put = |k: &'static str, ttl: Option<Duration>| {
        let (store, t) = (s.store.clone(), t.clone());
        async move {
            store.put(&key(k), v("v"), &[t], ttl, None).await.unwrap();
        }
    };
    put("short", Some(Duration::from_secs(10))).await;
    let first = pttl(&mut s.conn, &index).await;
    assert!((10_000..=12_500).contains(&first), "{first}");
    put("long", Some(Duration::from_secs(100))).await;
    let second = pttl(&mut s.conn, &index).await;
    assert!((100_000..=125_000).contains(&second), "{second}");
    put("short2", Some(Duration::from_secs(10))).await;
    assert!(
        pttl(&mut s.conn, &index).await > 99_000,
        "a shorter entry must not shorten it"
    );
    let record = support::record(&mut s.conn, &layout, &t).await.unwrap();
    let expected = support::server_ms(&mut s.conn).await
        + u64::try_from(pttl(&mut s.conn, &index).await).unwrap();
    let Until::At(until) = record.index_until else {
        panic!("{record:?}");
    };
    assert!(until.abs_diff(expected) < 50, "{until} vs {expected}");
    put("forever", None).await;
    assert_eq!(pttl(&mut s.conn, &index).await, -1);
    let record = support::record(&mut s.conn, &layout, &t).await.unwrap();
    assert_eq!(record.index_until, Until::Forever, "forever");
    put("short3", Some(Duration::from_secs(10))).await;
    assert_eq!(
        pttl(&mut s.conn, &index).await,
        -1,
        "persistent while a persistent entry is in it"
    );
    // Invalidation consumes the index; the record then keeps the stamp for the fill window.
    assert_eq!(
        s.store.invalidate(std::slice::from_ref(&t)).await.unwrap(),
        5
    );
    assert!(!exists(&mut s.conn, &index).await);
    let record = support::record(&mut s.conn, &layout, &t).await.unwrap();
    assert!(
        record.stamp > 0 && record.index_until == Until::Never,
        "{record:?}"
    );
    let window_us = u64::try_from(FILL_WINDOW.as_micros()).unwrap();
    assert_eq!(record.stamp_until, Some(record.stamp + window_us));
    // Real time: the fill window must pass for the stamp to protect nothing.
    tokio::time::sleep(FILL_WINDOW + Duration::from_millis(300)).await;
    s.store.reclaim().await.unwrap();
    assert_eq!(support::record(&mut s.conn, &layout, &t).await, None);
}

/// Index members do not outlive their entries: a deleted entry, a re-put with other tags, and a
/// persistent entry invalidated through another tag all leave the index; an index left empty
/// goes, with its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_members_are_pruned() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let layout = s.store.layout().clone();
    let (tag_a, tag_b) = (tag(&Dep::tag("a")), tag(&Dep::tag("b")));
    let put = |k: &'static str, tags: Vec<matroska_core::Tag>, ttl: Option<Duration>| {
        let store = s.store.clone();
        async move {
            store.put(&key(k), v(k), &tags, ttl, None).await.unwrap();
        }
    };

    // Deleted.
    put("k1", vec![tag_a.clone()], None).await;
    put("k2", vec![tag_a.clone()], None).await;
    assert!(s.store.delete(&key("k1")).await.unwrap());
    assert_eq!(
        zscore(&mut s.conn, &layout.index(&tag_a), b"k1").await,
        None
    );
    // Re-put with another tag.
    put("k2", vec![tag_b.clone()], None).await;
    assert!(
        !exists(&mut s.conn, &layout.index(&tag_a)).await,
        "an index left empty goes"
    );
    assert_eq!(
        support::record(&mut s.conn, &layout, &tag_a).await,
        None,
        "and so does its record"
    );
    // Invalidated through another tag: a persistent entry leaves its other indexes at once.
    put("k3", vec![tag_a.clone(), tag_b.clone()], None).await;
    assert_eq!(
        s.store
            .invalidate(std::slice::from_ref(&tag_a))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        zscore(&mut s.conn, &layout.index(&tag_b), b"k3").await,
        None
    );
    assert_eq!(
        zscore(&mut s.conn, &layout.index(&tag_b), b"k2").await,
        Some(f64::INFINITY)
    );
}

/// Members whose entries expired, or are gone without leaving the index (evicted), are pruned
/// by later puts to the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_evicted_members_are_pruned_by_later_puts() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let layout = s.store.layout().clone();
    // Expired: pruned by later puts to the index (a few members each). A long-lived member keeps
    // the index alive after the short ones expire.
    let tag_c = tag(&Dep::tag("c"));
    s.store
        .put(
            &key("anchor"),
            v("a"),
            std::slice::from_ref(&tag_c),
            Some(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap();
    let short: Vec<Key> = (0..50).map(|i| key(&format!("short{i}"))).collect();
    for k in &short {
        s.store
            .put(
                k,
                v("s"),
                std::slice::from_ref(&tag_c),
                Some(Duration::from_millis(200)),
                None,
            )
            .await
            .unwrap();
    }
    assert!(zcard(&mut s.conn, &layout.index(&tag_c)).await <= 52);
    // Redis expires the entries on its own clock: wait until it has (bounded polling).
    let conn = s.conn.clone();
    let entries: Vec<String> = short.iter().map(|k| layout.entry(k)).collect();
    eventually(Duration::from_secs(10), "the short entries expire", || {
        let (mut conn, entries) = (conn.clone(), entries.clone());
        async move {
            let n: u64 = redis::cmd("EXISTS")
                .arg(&entries)
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    for i in 0..20 {
        s.store
            .put(
                &key(&format!("long{i}")),
                v("l"),
                std::slice::from_ref(&tag_c),
                Some(Duration::from_secs(60)),
                None,
            )
            .await
            .unwrap();
    }
    for k in &short {
        assert_eq!(
            zscore(&mut s.conn, &layout.index(&tag_c), k.as_str().as_bytes()).await,
            None,
            "{k} expired and was not pruned"
        );
    }
    assert_eq!(
        zcard(&mut s.conn, &layout.index(&tag_c)).await,
        21,
        "the anchor and the 20 long entries"
    );

    // Gone without leaving the index (evicted; deleted here): later puts to the index remove
    // them, two members looked at per put (at random: the chance that one survives these 200
    // puts to an index of about a dozen members is below one in a million).
    let tag_d = tag(&Dep::tag("d"));
    for i in 0..10 {
        let k = key(&format!("gone{i}"));
        s.store
            .put(&k, v("g"), std::slice::from_ref(&tag_d), None, None)
            .await
            .unwrap();
        let _: u64 = redis::cmd("DEL")
            .arg(layout.entry(&k))
            .query_async(&mut s.conn)
            .await
            .unwrap();
    }
    for i in 0..200 {
        let k = key(&format!("passing{i}"));
        s.store
            .put(&k, v("p"), std::slice::from_ref(&tag_d), None, None)
            .await
            .unwrap();
        assert!(s.store.delete(&k).await.unwrap());
    }
    assert!(
        !exists(&mut s.conn, &layout.index(&tag_d)).await,
        "every dead member was removed, and the index with the last one"
    );
}

/// A clear leaves only the namespace's state and metadata (the old generation's entries, indexes
/// and records are gone), however large the indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_leaves_only_the_namespace_state() {
    let Some(mut s) = Scratch::new(50).await else {
        return;
    };
    let t = tag(&Dep::tag("t"));
    for i in 0..300 {
        let tags = [t.clone(), tag(&Dep::id("row", i % 7))];
        s.store
            .put(&key(&format!("c:{i}")), v("v"), &tags, None, None)
            .await
            .unwrap();
    }
    s.store
        .invalidate_deferred(std::slice::from_ref(&t))
        .await
        .unwrap();
    s.store.clear().await.unwrap();
    assert_eq!(s.keys().await, 2, "the state and the metadata");
    assert_eq!(hit(&s.store, &key("c:1")).await, None);
    s.store
        .put(&key("c:1"), v("w"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    assert_eq!(hit(&s.store, &key("c:1")).await, Some(v("w")));
}

/// `remove_namespace` deletes every key of the namespace (entries, indexes, metadata)
/// and nothing of another; a fill token from before is refused, and the store works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_namespace_deletes_every_key_and_only_those() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let other = s.other_namespace().await;
    let t = tag(&Dep::id("article", 1));
    for (store, k) in [(&s.store, "a"), (&s.store, "b"), (&other, "a")] {
        store
            .put(&key(k), v(k), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
    }
    s.store.invalidate(&[tag(&Dep::tag("x"))]).await.unwrap();
    let matroska_core::store::Lookup::Miss(old) = s.store.get(&key("fill")).await.unwrap() else {
        panic!("expected a miss");
    };
    let before = s.keys().await;
    assert!(before >= 3, "{before} keys");

    let deleted = s.store.remove_namespace().await.unwrap();
    assert_eq!(usize::try_from(deleted).unwrap(), before);
    assert_eq!(s.keys().await, 0);
    assert_eq!(
        hit(&other, &key("a")).await,
        Some(v("a")),
        "another namespace is untouched"
    );

    let outcome = s
        .store
        .put(&key("fill"), v("stale"), &[t], None, Some(&old))
        .await
        .unwrap();
    assert!(!outcome.is_stored(), "a token from before is refused");
    s.store
        .put(&key("a"), v("again"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(hit(&s.store, &key("a")).await, Some(v("again")));
}
