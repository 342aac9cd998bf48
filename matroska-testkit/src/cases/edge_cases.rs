//! Edge cases: unusual keys, values and tags, and bad input that must fail cleanly.

use matroska_core::{Bytes, Cache, Dep, Error, Key, Store, Tag};

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// Any UTF-8 works in keys, tags and values.
pub async fn unicode_keys_tags_and_values<H: Harness>(h: &H) {
    let store = h.store().await;
    let k = key("ключ:日本:🔑 with spaces\tand\nnewlines");
    let t = tag(&Dep::id("статья", "名前 ✓"));
    store
        .put(
            &k,
            bytes("значение ✓"),
            std::slice::from_ref(&t),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(hit(&store, &k).await, Some(bytes("значение ✓")));
    store.invalidate(&[t]).await.unwrap();
    assert_eq!(hit(&store, &k).await, None);
}

/// The longest valid key works; longer, empty and NUL-containing keys are clear errors.
pub async fn key_limits_are_enforced<H: Harness>(h: &H) {
    let store = h.store().await;
    let longest = key(&"k".repeat(Key::MAX_LEN));
    store
        .put(&longest, bytes("v"), &[], None, None)
        .await
        .unwrap();
    assert_eq!(hit(&store, &longest).await, Some(bytes("v")));
    let cache = Cache::new(store);
    for bad in [
        String::new(),
        "k".repeat(Key::MAX_LEN + 1),
        "a\0b".to_owned(),
    ] {
        let err = cache.put(bad.as_str(), &1).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        let err = cache.get::<i32>(bad.as_str()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
    }
}

/// Empty, binary and large values round-trip unchanged.
pub async fn empty_binary_and_large_values_round_trip<H: Harness>(h: &H) {
    let store = h.store().await;
    let all_bytes: Vec<u8> = (0..=255).collect();
    let large: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| i.to_le_bytes()[0] ^ 0x5A)
        .collect();
    for (name, value) in [
        ("empty", Bytes::new()),
        ("binary", Bytes::from(all_bytes)),
        ("large", Bytes::from(large)),
    ] {
        let k = key(&format!("edge:{name}"));
        store.put(&k, value.clone(), &[], None, None).await.unwrap();
        assert_eq!(hit(&store, &k).await, Some(value), "{name}");
    }
}

/// An entry may carry many tags; any of them invalidates it.
pub async fn many_tags_on_one_entry<H: Harness>(h: &H) {
    let store = h.store().await;
    let tags: Vec<Tag> = (0..200).map(|i| tag(&Dep::id("row", i))).collect();
    let k = key("edge:many-tags");
    store.put(&k, bytes("v"), &tags, None, None).await.unwrap();
    assert_eq!(hit(&store, &k).await, Some(bytes("v")));
    store.invalidate(&tags[199..]).await.unwrap();
    assert_eq!(hit(&store, &k).await, None);
}

/// Tags made of separator characters are valid, distinct, and invalidate only their own entries.
pub async fn separator_characters_in_tags<H: Harness>(h: &H) {
    let store = h.store().await;
    let seps = tag(&Dep::tag(":&=%#,()"));
    let escaped_lookalike = tag(&Dep::tag("%3A%26%3D%25%23%2C%28%29"));
    let (a, b) = (key("edge:seps"), key("edge:lookalike"));
    store
        .put(&a, bytes("a"), std::slice::from_ref(&seps), None, None)
        .await
        .unwrap();
    store
        .put(&b, bytes("b"), &[escaped_lookalike], None, None)
        .await
        .unwrap();
    store.invalidate(&[seps]).await.unwrap();
    assert_eq!(hit(&store, &a).await, None);
    assert_eq!(hit(&store, &b).await, Some(bytes("b")));
    let empty = Cache::new(h.store().await)
        .put("edge:empty-tag", &1)
        .dep(Dep::tag(""))
        .await
        .unwrap_err();
    assert!(matches!(empty, Error::InvalidDep { .. }), "{empty}");
}

/// Tags too long to store verbatim are hashed, and still invalidate exactly their entries.
pub async fn long_tags_are_hashed_and_still_invalidate<H: Harness>(h: &H) {
    let store = h.store().await;
    let long_a = tag(&Dep::id("article", "x".repeat(2000)));
    let long_b = tag(&Dep::id("article", format!("{}y", "x".repeat(1999))));
    assert!(
        long_a.as_str().len() < 400,
        "hashed: {}",
        long_a.as_str().len()
    );
    store
        .put(
            &key("edge:a"),
            bytes("a"),
            std::slice::from_ref(&long_a),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .put(&key("edge:b"), bytes("b"), &[long_b], None, None)
        .await
        .unwrap();
    store.invalidate(&[long_a]).await.unwrap();
    assert_eq!(hit(&store, &key("edge:a")).await, None);
    assert_eq!(hit(&store, &key("edge:b")).await, Some(bytes("b")));
}

/// Bytes that do not decode are a miss for the cache, which removes them; never a panic.
pub async fn undecodable_bytes_are_a_miss_and_removed<H: Harness>(h: &H) {
    let store = h.store().await;
    let cache = Cache::new(store.clone());
    let k = key("edge:garbage");
    for garbage in [&b""[..], b"\x00\x01garbage", b"m\x01\x01\x00\x00\xc1"] {
        store
            .put(&k, Bytes::copy_from_slice(garbage), &[], None, None)
            .await
            .unwrap();
        assert_eq!(cache.get::<String>(&k).await.unwrap(), None, "{garbage:?}");
        assert_eq!(
            hit(&store, &k).await,
            None,
            "the undecodable entry is removed"
        );
    }
    assert_eq!(cache.stats().decode_errors, 3);
    // get_or_insert_with replaces it with a good value.
    store
        .put(&k, bytes("garbage"), &[], None, None)
        .await
        .unwrap();
    let v = cache
        .get_or_insert_with(&k, || async {
            Ok::<_, std::io::Error>(matroska_core::Loaded::new("fresh".to_owned()))
        })
        .await
        .unwrap();
    assert_eq!(v, "fresh");
    assert_eq!(
        cache.get::<String>(&k).await.unwrap().as_deref(),
        Some("fresh")
    );
}

/// A value whose type changed between put and get is a miss, not a panic or a wrong value.
pub async fn type_change_is_a_miss<H: Harness>(h: &H) {
    #[derive(serde::Serialize)]
    struct Before {
        id: u32,
        title: String,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // Only decoded.
    struct After {
        id: String,
        tags: Vec<String>,
    }
    let cache = Cache::new(h.store().await);
    cache
        .put(
            "edge:typed",
            &Before {
                id: 1,
                title: "t".into(),
            },
        )
        .await
        .unwrap();
    assert!(cache.get::<After>("edge:typed").await.unwrap().is_none());
    assert!(cache.get::<Vec<u64>>("edge:typed").await.unwrap().is_none());
}

/// A value over the limit is a clear error, and the previous value is not lost.
pub async fn oversized_value_is_rejected_and_nothing_is_lost<H: Harness>(h: &H) {
    let cache = Cache::builder(h.store().await).max_value_len(1024).build();
    cache.put("edge:big", &"small").await.unwrap();
    let err = cache.put("edge:big", &"x".repeat(4096)).await.unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { limit: 1024, .. }),
        "{err}"
    );
    assert_eq!(
        cache.get::<String>("edge:big").await.unwrap().as_deref(),
        Some("small")
    );
}

/// An entry with more tags than [`MAX_TAGS_PER_ENTRY`](matroska_core::store::MAX_TAGS_PER_ENTRY)
/// is refused with a clear error, by the store and by the cache, and the entry already stored
/// under the key is untouched.
pub async fn too_many_tags_are_rejected_and_nothing_is_lost<H: Harness>(h: &H) {
    use matroska_core::store::MAX_TAGS_PER_ENTRY;
    let limit = i64::try_from(MAX_TAGS_PER_ENTRY).unwrap();
    let store = h.store().await;
    let k = key("edge:too-many-tags");
    let few: Vec<Tag> = (0..limit).map(|i| tag(&Dep::id("row", i))).collect();
    store.put(&k, bytes("ok"), &few, None, None).await.unwrap();
    let many: Vec<Tag> = (0..=limit).map(|i| tag(&Dep::id("row", i))).collect();
    let err = store
        .put(&k, bytes("too many"), &many, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooManyTags { .. }), "{err}");
    assert_eq!(hit(&store, &k).await, Some(bytes("ok")));

    let cache = Cache::new(store.clone());
    let deps: Vec<Dep> = (0..=limit).map(|i| Dep::id("row", i)).collect();
    let err = cache
        .put("edge:too-many-deps", &"v")
        .deps(deps)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooManyTags { .. }), "{err}");
    assert!(!cache.has("edge:too-many-deps").await.unwrap());
    // The entry with the limit's worth of tags is still invalidated by its last tag.
    store
        .invalidate(&few[MAX_TAGS_PER_ENTRY - 1..])
        .await
        .unwrap();
    assert_eq!(hit(&store, &k).await, None);
}
