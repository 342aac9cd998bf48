//! The plain read (one round trip, no script) at its boundaries: an entry filled exactly at the
//! safe mark is served as it is, one filled just before is checked by the `get` script first (which
//! marks it checked), one of another generation is a miss; a miss hands out a token only while the
//! namespace's sequence number is within a tick of the server's clock.
//!
//! Which path served a read is visible in Redis: the script marks an entry it checked by setting its
//! `q` (the first 20 digits) to the current sequence number.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use matroska_core::store::{FillToken, Lookup, Store};
use matroska_core::{Dep, Key};
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::{Scratch, put_many};

/// The entry's `q`, as stored.
async fn q_of(s: &mut Scratch, k: &Key) -> u64 {
    let blob: Vec<u8> = redis::cmd("GET")
        .arg(s.store.layout().entry(k))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    std::str::from_utf8(&blob[..20]).unwrap().parse().unwrap()
}

/// The namespace state's fields (`seq=.. safe=.. gen=.. inv=.. prev=..`).
async fn state(s: &mut Scratch) -> Vec<(String, String)> {
    let text: String = redis::cmd("GET")
        .arg(s.store.layout().seq())
        .query_async(&mut s.conn)
        .await
        .unwrap();
    text.split(' ')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

async fn field(s: &mut Scratch, name: &str) -> String {
    state(s)
        .await
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
}

async fn set_q(s: &mut Scratch, k: &Key, q: u64) {
    let _: u64 = redis::cmd("SETRANGE")
        .arg(s.store.layout().entry(k))
        .arg(0)
        .arg(format!("{q:020}"))
        .query_async(&mut s.conn)
        .await
        .unwrap();
}

/// `q == safe` is served by the plain read; `q == safe - 1` goes through the script, which checks
/// it, serves it (no tag of it was invalidated) and marks it checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_mark_boundary_is_exact() {
    let Some(mut s) = Scratch::new(2).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "hot", 5, std::slice::from_ref(&hot), None).await;
    // A set aside raises the safe mark to the invalidation's stamp.
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    let safe: u64 = field(&mut s, "safe").await.parse().unwrap();
    let seq: u64 = field(&mut s, "seq").await.parse().unwrap();
    assert_eq!(safe, seq, "the set aside raised the safe mark");

    let (at, below) = (key("at"), key("below"));
    let other = tag(&Dep::tag("other"));
    for k in [&at, &below] {
        s.store
            .put(k, v("fresh"), std::slice::from_ref(&other), None, None)
            .await
            .unwrap();
    }
    set_q(&mut s, &at, safe).await;
    set_q(&mut s, &below, safe - 1).await;

    assert_eq!(hit(&s.store, &at).await, Some(v("fresh")));
    assert_eq!(q_of(&mut s, &at).await, safe, "served as it is");
    assert_eq!(hit(&s.store, &below).await, Some(v("fresh")));
    let checked = q_of(&mut s, &below).await;
    assert!(
        checked >= safe,
        "checked by the script and marked: {checked} < {safe}"
    );
    // A set-aside entry below the mark is stale: the script removes it.
    assert_eq!(hit(&s.store, &key("hot:0")).await, None);
}

/// An entry of another generation is a miss even when its `q` is above the safe mark (as after a
/// clear on a server whose clock went back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_another_generation_is_a_miss_whatever_its_q() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let k = key("k");
    s.store.put(&k, v("old"), &[], None, None).await.unwrap();
    s.store.clear().await.unwrap();
    s.store.put(&k, v("new"), &[], None, None).await.unwrap();
    let mut blob: Vec<u8> = redis::cmd("GET")
        .arg(s.store.layout().entry(&k))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    // The same entry, with a generation one digit off and q far above the safe mark.
    blob[..20].copy_from_slice(format!("{:020}", u64::MAX / 2).as_bytes());
    blob[47] = if blob[47] == b'0' { b'1' } else { b'0' };
    let _: () = redis::cmd("SET")
        .arg(s.store.layout().entry(&k))
        .arg(&blob)
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(hit(&s.store, &k).await, None);
    assert!(!s.store.exists(&k).await.unwrap());
}

/// A miss's token carries the namespace's sequence number; when that lags the server's clock by
/// more than a tick (a hundredth of the fill window), the token comes from the script, which moves
/// the sequence number on first, so that a token never starts its life already old on the
/// sequence clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_token_never_lags_the_servers_clock_by_more_than_a_tick() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let token = |lookup: Lookup| match lookup {
        Lookup::Miss(token) => token,
        Lookup::Hit(bytes) => panic!("expected a miss, got {bytes:?}"),
    };
    let first: FillToken = token(s.store.get(&key("a")).await.unwrap());
    // Push the sequence number a whole window into the past, as a namespace idle that long.
    let window_us = u64::try_from(support::FILL_WINDOW.as_micros()).unwrap();
    let old = first.seq() - window_us;
    let rewritten: Vec<String> = state(&mut s)
        .await
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "seq" | "safe" => format!("{k}={old}"),
            _ => format!("{k}={v}"),
        })
        .collect();
    let _: () = redis::cmd("SET")
        .arg(s.store.layout().seq())
        .arg(rewritten.join(" "))
        .query_async(&mut s.conn)
        .await
        .unwrap();
    let second = token(s.store.get(&key("b")).await.unwrap());
    let tick_us = window_us / 100;
    assert!(
        second.seq() + tick_us >= second.issued_at_ms() * 1000,
        "a token lagging: seq {} at {} ms",
        second.seq(),
        second.issued_at_ms()
    );
    let outcome = s
        .store
        .put(&key("b"), v("b"), &[], None, Some(&second))
        .await
        .unwrap();
    assert!(
        outcome.is_stored(),
        "a fresh token is not refused for its seq"
    );
}

/// `get_many` decides every entry by the same rule against the one state its `MGET` read: in one
/// batch, the entry at the safe mark is served as it is, the one just below is checked by the
/// script (and marked), and the set-aside one below is a miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_applies_the_safe_mark_to_each_entry() {
    let Some(mut s) = Scratch::new(2).await else {
        return;
    };
    let hot = tag(&Dep::tag("hot"));
    put_many(&s.store, "hot", 5, std::slice::from_ref(&hot), None).await;
    s.store
        .invalidate_deferred(std::slice::from_ref(&hot))
        .await
        .unwrap();
    let safe: u64 = field(&mut s, "safe").await.parse().unwrap();
    let (at, below) = (key("at"), key("below"));
    let other = tag(&Dep::tag("other"));
    for k in [&at, &below] {
        s.store
            .put(k, v("fresh"), std::slice::from_ref(&other), None, None)
            .await
            .unwrap();
    }
    set_q(&mut s, &at, safe).await;
    set_q(&mut s, &below, safe - 1).await;

    let found = s
        .store
        .get_many(&[at.clone(), below.clone(), key("hot:0")])
        .await
        .unwrap();
    assert_eq!(found[0], Lookup::Hit(v("fresh")));
    assert_eq!(found[1], Lookup::Hit(v("fresh")));
    assert!(matches!(found[2], Lookup::Miss(_)), "{:?}", found[2]);
    assert_eq!(q_of(&mut s, &at).await, safe, "served as it is");
    let checked = q_of(&mut s, &below).await;
    assert!(
        checked >= safe,
        "checked by the script and marked: {checked} < {safe}"
    );
}
