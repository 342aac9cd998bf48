//! Data the store did not write, or not whole, in its namespace: entries in another format or
//! truncated (another program writing into the prefix, a partial restore), keys of another type,
//! and unreadable namespace state or tag metadata. Unreadable stored data is a miss that removes
//! it, never an error, and reads agree (`get`, `exists`, `ttl`).

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod support;

use matroska_core::store::{KeyTtl, Lookup, PutOutcome, Store};
use matroska_core::{Dep, Key};
use matroska_testkit::support::{bytes as v, hit, key, tag};

use crate::support::Scratch;

/// Entry values no version of the store writes: empty, short, text, a header cut anywhere, tags
/// longer than the value, non-digits where digits belong, bytes that are not UTF-8.
fn foreign_blobs() -> Vec<Vec<u8>> {
    let mut blobs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"x".to_vec(),
        b"hello, world".to_vec(),
        b"{\"json\": true}".to_vec(),
        b"0000000000000000004".to_vec(),
        b"00000000000000000042".to_vec(),
        b"00000000000000000042e".to_vec(),
        b"00000000000000000042e9".to_vec(),
        b"00000000000000000042e9:".to_vec(),
        b"00000000000000000042e99999999999:\0g:a\0".to_vec(),
        b"00000000000000000042e-1:value".to_vec(),
        b"00000000000000000042x0:value".to_vec(),
        b"0000000000000000004xe0:value".to_vec(),
        b"-0000000000000000042e0:value".to_vec(),
        b"00000000000000000042e1e9:value".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, 0x01],
    ];
    // A long run of digits, as a number Lua would read as a float.
    blobs.push(b"9".repeat(400));
    blobs
}

async fn set_raw(s: &mut Scratch, k: &Key, blob: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(s.store.layout().entry(k))
        .arg(blob)
        .query_async(&mut s.conn)
        .await
        .unwrap();
}

async fn raw_exists(s: &mut Scratch, k: &Key) -> bool {
    redis::cmd("EXISTS")
        .arg(s.store.layout().entry(k))
        .query_async::<u64>(&mut s.conn)
        .await
        .unwrap()
        == 1
}

/// An entry in a foreign format is a miss for `get`, `exists` and `ttl` (each also removes it),
/// `delete` reports it was not live, and a put over it stores normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_a_foreign_format_is_a_miss_that_removes_it() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let t = tag(&Dep::tag("t"));
    // A namespace in use: its state exists.
    s.store
        .put(
            &key("real"),
            v("real"),
            std::slice::from_ref(&t),
            None,
            None,
        )
        .await
        .unwrap();
    for (i, blob) in foreign_blobs().iter().enumerate() {
        let k = key(&format!("foreign:{i}"));
        let what = format!("blob {i} {blob:?}");

        set_raw(&mut s, &k, blob).await;
        match s.store.get(&k).await {
            Ok(Lookup::Miss(_)) => {}
            other => panic!("get of {what}: {other:?}"),
        }
        assert!(!raw_exists(&mut s, &k).await, "get removes {what}");

        set_raw(&mut s, &k, blob).await;
        assert!(!s.store.exists(&k).await.unwrap(), "exists of {what}");
        assert!(!raw_exists(&mut s, &k).await, "exists removes {what}");

        set_raw(&mut s, &k, blob).await;
        assert_eq!(s.store.ttl(&k).await.unwrap(), KeyTtl::Missing, "{what}");

        set_raw(&mut s, &k, blob).await;
        assert!(!s.store.delete(&k).await.unwrap(), "delete of {what}");
        assert!(!raw_exists(&mut s, &k).await, "delete removes {what}");

        set_raw(&mut s, &k, blob).await;
        let outcome = s
            .store
            .put(&k, v("mine"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap_or_else(|e| panic!("put over {what}: {e}"));
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(hit(&s.store, &k).await, Some(v("mine")), "{what}");
    }
    assert_eq!(hit(&s.store, &key("real")).await, Some(v("real")));
}

/// A foreign value under a key that an index lists: invalidation, reclaiming and clearing go
/// past it (and remove it) without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_and_clear_pass_over_foreign_entries() {
    let Some(mut s) = Scratch::new(2).await else {
        return;
    };
    let (t, other) = (tag(&Dep::tag("t")), tag(&Dep::tag("other")));
    let blobs = foreign_blobs();
    for i in 0..blobs.len() {
        let k = key(&format!("listed:{i}"));
        s.store
            .put(&k, v("v"), &[t.clone(), other.clone()], None, None)
            .await
            .unwrap();
    }
    for (i, blob) in blobs.iter().enumerate() {
        set_raw(&mut s, &key(&format!("listed:{i}")), blob).await;
    }
    // Many members and a chunk of 2: set aside and reclaimed over several scripts.
    s.store
        .invalidate(std::slice::from_ref(&t))
        .await
        .unwrap_or_else(|e| panic!("invalidate over foreign entries: {e}"));
    for i in 0..blobs.len() {
        let k = key(&format!("listed:{i}"));
        assert_eq!(hit(&s.store, &k).await, None, "listed:{i}");
    }
    s.store
        .invalidate(std::slice::from_ref(&other))
        .await
        .unwrap_or_else(|e| panic!("invalidate over foreign entries: {e}"));
    for (i, blob) in blobs.iter().enumerate() {
        set_raw(&mut s, &key(&format!("cleared:{i}")), blob).await;
    }
    s.store
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear over foreign entries: {e}"));
    s.store.reclaim().await.unwrap();
    for i in 0..blobs.len() {
        assert!(!raw_exists(&mut s, &key(&format!("cleared:{i}"))).await);
    }
}

/// A key of another type where an entry belongs: a miss, and a put replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_where_an_entry_belongs_is_a_miss() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let k = key("typed");
    let _: () = redis::cmd("HSET")
        .arg(s.store.layout().entry(&k))
        .arg("field")
        .arg("value")
        .query_async(&mut s.conn)
        .await
        .unwrap();
    assert!(matches!(s.store.get(&k).await.unwrap(), Lookup::Miss(_)));
    assert!(!s.store.exists(&k).await.unwrap());
    assert_eq!(s.store.ttl(&k).await.unwrap(), KeyTtl::Missing);
    assert!(!s.store.delete(&k).await.unwrap());
    s.store.put(&k, v("v"), &[], None, None).await.unwrap();
    assert_eq!(hit(&s.store, &k).await, Some(v("v")));
}

/// How someone else can garble a namespace's state or metadata.
enum Garble {
    /// The state string replaced.
    State(&'static str),
    /// A key of another type where the state belongs.
    StateAsHash,
    /// A field of the metadata hash replaced.
    Meta(&'static str, String),
    /// A key of another type where the metadata belongs.
    MetaAsString,
}

async fn garble(s: &mut Scratch, how: &Garble) {
    let (state, meta) = (s.store.layout().seq(), s.store.layout().meta());
    let cmd = match how {
        Garble::State(text) => {
            let mut c = redis::cmd("SET");
            c.arg(&state).arg(*text);
            c
        }
        Garble::StateAsHash => {
            let _: u64 = redis::cmd("DEL")
                .arg(&state)
                .query_async(&mut s.conn)
                .await
                .unwrap();
            let mut c = redis::cmd("HSET");
            c.arg(&state).arg("seq").arg("1");
            c
        }
        Garble::Meta(field, value) => {
            let mut c = redis::cmd("HSET");
            c.arg(&meta).arg(*field).arg(value);
            c
        }
        Garble::MetaAsString => {
            let mut c = redis::cmd("SET");
            c.arg(&meta).arg("not a hash");
            c
        }
    };
    let _: redis::Value = cmd.query_async(&mut s.conn).await.unwrap();
}

/// Unreadable namespace state or metadata (another program's value, a partial restore): the
/// namespace starts a new generation (every entry filled before is a miss, every fill token from
/// before the last invalidation is refused) and works on; nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_namespace_state_starts_a_new_generation() {
    let Some(mut s) = Scratch::new(256).await else {
        return;
    };
    let (t, other) = (tag(&Dep::tag("t")), tag(&Dep::tag("other")));
    let garbles = [
        Garble::State(""),
        Garble::State("garbage"),
        Garble::State("seq=x safe=1 gen=z inv=1 prev=-"),
        Garble::State("seq=1 safe=1 gen=0000000000000000000100000000 inv=1"),
        Garble::StateAsHash,
        Garble::Meta("gen", "z".repeat(28)),
        Garble::Meta("gen", "0000000000000000000100000000".to_owned()),
        Garble::Meta("g:other", "garbage".to_owned()),
        Garble::MetaAsString,
    ];
    for (i, how) in garbles.iter().enumerate() {
        s.store
            .put(&key("k"), v("v"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        let Lookup::Miss(old) = s.store.get(&key("fill")).await.unwrap() else {
            panic!("expected a miss");
        };
        // An invalidation after the token: the token must be refused from now on.
        s.store
            .invalidate(std::slice::from_ref(&other))
            .await
            .unwrap();
        garble(&mut s, how).await;
        if matches!(how, Garble::Meta(field, _) if field.contains(':')) {
            // A record is read by the scripts that need it: a put of an entry carrying the tag.
            s.store
                .put(
                    &key("other"),
                    v("o"),
                    std::slice::from_ref(&other),
                    None,
                    None,
                )
                .await
                .unwrap();
        }
        // The first script to run notices (the plain read of k may not: it reads the state only,
        // and an entry filled after the safe mark stays good when only the metadata is lost).
        let outcome = s
            .store
            .put(
                &key("fill"),
                v("raced"),
                std::slice::from_ref(&t),
                None,
                Some(&old),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stale, "garble {i}");
        assert_eq!(hit(&s.store, &key("k")).await, None, "garble {i}");
        s.store
            .put(&key("k"), v("again"), std::slice::from_ref(&t), None, None)
            .await
            .unwrap();
        assert_eq!(
            hit(&s.store, &key("k")).await,
            Some(v("again")),
            "garble {i}"
        );
        s.store.invalidate(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(hit(&s.store, &key("k")).await, None, "garble {i}");
    }
}
