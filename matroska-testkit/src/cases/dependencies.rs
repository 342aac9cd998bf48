//! Dependencies: which entries an invalidation removes, and which it leaves.

use matroska_core::{Dep, Store};

use crate::Harness;
use crate::support::{bytes, hit, key, tag};

/// Invalidating a tag removes every entry that carries it.
pub async fn invalidate_removes_every_dependent<H: Harness>(h: &H) {
    let store = h.store().await;
    let author = tag(&Dep::id("author", 7));
    for i in 0..5 {
        let k = key(&format!("deps:article:{i}"));
        store
            .put(&k, bytes("v"), std::slice::from_ref(&author), None, None)
            .await
            .unwrap();
    }
    assert_eq!(store.invalidate(&[author]).await.unwrap(), 5);
    for i in 0..5 {
        assert_eq!(
            hit(&store, &key(&format!("deps:article:{i}"))).await,
            None,
            "entry {i}"
        );
    }
}

/// Entries that do not carry the invalidated tag stay.
pub async fn invalidate_leaves_unrelated_entries<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("author", 1)), tag(&Dep::id("author", 2)));
    store
        .put(
            &key("deps:a"),
            bytes("a"),
            std::slice::from_ref(&a),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .put(&key("deps:b"), bytes("b"), &[b], None, None)
        .await
        .unwrap();
    store
        .put(&key("deps:none"), bytes("n"), &[], None, None)
        .await
        .unwrap();
    store.invalidate(&[a]).await.unwrap();
    assert_eq!(hit(&store, &key("deps:a")).await, None);
    assert_eq!(hit(&store, &key("deps:b")).await, Some(bytes("b")));
    assert_eq!(hit(&store, &key("deps:none")).await, Some(bytes("n")));
}

/// An entry with several tags is removed by invalidating any one of them.
pub async fn any_of_several_tags_invalidates<H: Harness>(h: &H) {
    let store = h.store().await;
    let tags = [
        tag(&Dep::id("article", 1)),
        tag(&Dep::id("author", 1)),
        tag(&Dep::tag("homepage")),
    ];
    for t in &tags {
        let k = key("deps:page");
        store.put(&k, bytes("v"), &tags, None, None).await.unwrap();
        store.invalidate(std::slice::from_ref(t)).await.unwrap();
        assert_eq!(hit(&store, &k).await, None, "invalidating {t}");
    }
}

/// One call can invalidate several tags.
pub async fn several_tags_in_one_call<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b, c) = (
        tag(&Dep::tag("a")),
        tag(&Dep::tag("b")),
        tag(&Dep::tag("c")),
    );
    store
        .put(
            &key("deps:1"),
            bytes("1"),
            std::slice::from_ref(&a),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .put(
            &key("deps:2"),
            bytes("2"),
            std::slice::from_ref(&b),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .put(&key("deps:3"), bytes("3"), &[c], None, None)
        .await
        .unwrap();
    assert_eq!(store.invalidate(&[a, b]).await.unwrap(), 2);
    assert_eq!(hit(&store, &key("deps:1")).await, None);
    assert_eq!(hit(&store, &key("deps:2")).await, None);
    assert_eq!(hit(&store, &key("deps:3")).await, Some(bytes("3")));
}

/// Invalidating a tag that nothing carries is not an error and removes nothing.
pub async fn unknown_tag_is_a_noop<H: Harness>(h: &H) {
    let store = h.store().await;
    store
        .put(
            &key("deps:x"),
            bytes("x"),
            &[tag(&Dep::tag("x"))],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.invalidate(&[tag(&Dep::tag("nobody"))]).await.unwrap(),
        0
    );
    assert_eq!(store.invalidate(&[]).await.unwrap(), 0);
    assert_eq!(hit(&store, &key("deps:x")).await, Some(bytes("x")));
}

/// A key that was deleted and stored again without a tag is not removed by that tag: dead index
/// members must not hit the new entry.
pub async fn dead_index_members_do_not_remove_new_entries<H: Harness>(h: &H) {
    let store = h.store().await;
    let t = tag(&Dep::tag("t"));
    let k = key("deps:reused");
    store
        .put(&k, bytes("old"), std::slice::from_ref(&t), None, None)
        .await
        .unwrap();
    store.delete(&k).await.unwrap();
    store.put(&k, bytes("new"), &[], None, None).await.unwrap();
    store.invalidate(&[t]).await.unwrap();
    assert_eq!(hit(&store, &k).await, Some(bytes("new")));
}

/// An entry that carries several of the invalidated tags is counted once.
pub async fn an_entry_matching_several_tags_counts_once<H: Harness>(h: &H) {
    let store = h.store().await;
    let (a, b) = (tag(&Dep::id("article", 3)), tag(&Dep::tag("databases")));
    let both = [a.clone(), b.clone()];
    store
        .put(&key("deps:list"), bytes("l"), &both, None, None)
        .await
        .unwrap();
    store
        .put(
            &key("deps:page"),
            bytes("p"),
            std::slice::from_ref(&a),
            None,
            None,
        )
        .await
        .unwrap();
    store
        .put(
            &key("deps:other"),
            bytes("o"),
            &[tag(&Dep::tag("other"))],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(hit(&store, &key("deps:list")).await, Some(bytes("l")));
    assert_eq!(hit(&store, &key("deps:page")).await, Some(bytes("p")));
    assert_eq!(store.invalidate(&both).await.unwrap(), 2);
    assert_eq!(hit(&store, &key("deps:list")).await, None);
    assert_eq!(hit(&store, &key("deps:page")).await, None);
    assert_eq!(hit(&store, &key("deps:other")).await, Some(bytes("o")));
}
