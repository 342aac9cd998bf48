//! Scopes end to end: cached lists and the writes that enter, leave or stay in them.

use matroska_core::{Cache, Dep, Loaded, Scopes};
use serde::{Deserialize, Serialize};

use crate::Harness;

/// The article of these cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Article {
    id: i64,
    category: String,
    published: bool,
    title: String,
}

fn article(id: i64, category: &str, published: bool) -> Article {
    Article {
        id,
        category: category.into(),
        published,
        title: format!("article {id}"),
    }
}

fn scopes() -> Scopes<Article> {
    Scopes::new("article")
        .id(|a: &Article| a.id)
        .describe(["category", "published"], |a: &Article| {
            (a.category.clone(), a.published)
        })
        .fields(&["id", "title"])
}

/// Caches the published articles of `category` from `rows`, depending on its rows and its scope.
async fn cache_list<S: matroska_core::Store>(
    cache: &Cache<S>,
    scopes: &Scopes<Article>,
    category: &str,
    rows: &[Article],
) -> Vec<Article> {
    let scope = scopes
        .condition([("category", category.into()), ("published", true.into())])
        .unwrap();
    let list: Vec<Article> = rows
        .iter()
        .filter(|a| a.category == category && a.published)
        .cloned()
        .collect();
    let ids: Vec<Dep> = list.iter().map(|a| Dep::id("article", a.id)).collect();
    cache
        .get_or_insert_with(format!("list:{category}"), || async {
            Ok::<_, std::convert::Infallible>(Loaded::new(list).deps(ids).dep(scope))
        })
        .await
        .unwrap()
}

async fn is_cached<S: matroska_core::Store>(cache: &Cache<S>, category: &str) -> bool {
    cache
        .get::<Vec<Article>>(format!("list:{category}"))
        .await
        .unwrap()
        .is_some()
}

/// A new row that belongs in a cached list invalidates it; other lists stay.
pub async fn new_row_entering_a_scope_invalidates_the_list<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes();
    let rows = vec![article(1, "news", true), article(2, "tech", true)];
    cache_list(&cache, &s, "news", &rows).await;
    cache_list(&cache, &s, "tech", &rows).await;
    let new = article(3, "news", true);
    cache
        .invalidate(s.invalidate_for(None, Some(&new), None))
        .await
        .unwrap();
    assert!(!is_cached(&cache, "news").await, "the list the row entered");
    assert!(is_cached(&cache, "tech").await, "an unrelated list");
}

/// A row moving from one list to another invalidates both.
pub async fn row_moving_between_scopes_invalidates_both_lists<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes();
    let rows = vec![
        article(1, "news", true),
        article(2, "tech", true),
        article(3, "sport", true),
    ];
    for c in ["news", "tech", "sport"] {
        cache_list(&cache, &s, c, &rows).await;
    }
    let old = rows[0].clone();
    let new = Article {
        category: "tech".into(),
        ..old.clone()
    };
    cache
        .invalidate(s.invalidate_for(Some(&old), Some(&new), Some(&["category"])))
        .await
        .unwrap();
    assert!(!is_cached(&cache, "news").await, "the list it left");
    assert!(!is_cached(&cache, "tech").await, "the list it entered");
    assert!(is_cached(&cache, "sport").await, "an unrelated list");
}

/// A write whose list of modified fields is incomplete or misspelled still invalidates the list
/// the row left and the list it entered: the scopes compare the old and the new row.
pub async fn a_row_moving_with_an_incomplete_modified_list_invalidates_both_lists<H: Harness>(
    h: &H,
) {
    let cache = Cache::new(h.store().await);
    let rows = vec![
        article(1, "news", true),
        article(2, "tech", true),
        article(3, "sport", true),
    ];
    for (s, modified) in [
        (scopes(), &["title"][..]),
        (scopes(), &[]),
        (scopes().lenient(), &["categroy"]),
    ] {
        for c in ["news", "tech", "sport"] {
            cache_list(&cache, &s, c, &rows).await;
            assert!(is_cached(&cache, c).await, "{c} is cached");
        }
        let old = rows[0].clone();
        let new = Article {
            category: "tech".into(),
            ..old.clone()
        };
        cache
            .invalidate(s.invalidate_for(Some(&old), Some(&new), Some(modified)))
            .await
            .unwrap();
        assert!(
            !is_cached(&cache, "news").await,
            "the list it left survived (modified = {modified:?})"
        );
        assert!(
            !is_cached(&cache, "tech").await,
            "the list it entered survived (modified = {modified:?})"
        );
        assert!(is_cached(&cache, "sport").await, "an unrelated list");
    }
}

/// Modifying a field no scope watches invalidates the row itself, and no list it is not in.
pub async fn unwatched_modification_keeps_other_lists_cached<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes();
    let rows = vec![article(1, "news", true), article(2, "tech", true)];
    cache_list(&cache, &s, "news", &rows).await;
    cache_list(&cache, &s, "tech", &rows).await;
    let old = rows[0].clone();
    let new = Article {
        title: "renamed".into(),
        ..old.clone()
    };
    cache
        .invalidate(s.invalidate_for(Some(&old), Some(&new), Some(&["title"])))
        .await
        .unwrap();
    assert!(
        !is_cached(&cache, "news").await,
        "the list holding the row (via its id)"
    );
    assert!(is_cached(&cache, "tech").await, "a list the row is not in");
}

/// A deleted row invalidates the lists it was in.
pub async fn deleted_row_invalidates_its_scope<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes();
    let rows = vec![article(1, "news", true)];
    cache_list(&cache, &s, "news", &rows).await;
    cache_list(&cache, &s, "tech", &rows).await;
    cache
        .invalidate(s.invalidate_for(Some(&rows[0]), None, None))
        .await
        .unwrap();
    assert!(!is_cached(&cache, "news").await);
    assert!(is_cached(&cache, "tech").await);
}

/// In lenient mode a list on an undescribed field set depends on the whole kind: any write of
/// the kind invalidates it, so it is never stale.
pub async fn undescribed_condition_in_lenient_mode_is_never_stale<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes().lenient();
    let dep = s.condition([("title", "x".into())]).unwrap();
    assert_eq!(dep, s.any());
    cache
        .put("list:by-title", &Vec::<Article>::new())
        .dep(dep)
        .await
        .unwrap();
    cache
        .put("page:1", &article(1, "news", true))
        .dep(Dep::id("article", 1))
        .await
        .unwrap();
    assert!(
        cache
            .get::<Vec<Article>>("list:by-title")
            .await
            .unwrap()
            .is_some(),
        "the list is cached before the write"
    );
    let row = article(9, "news", false);
    let renamed = Article {
        title: "x".into(),
        ..row.clone()
    };
    cache
        .invalidate(s.invalidate_for(Some(&row), Some(&renamed), Some(&["title"])))
        .await
        .unwrap();
    assert!(
        cache
            .get::<Vec<Article>>("list:by-title")
            .await
            .unwrap()
            .is_none(),
        "a list on an undescribed condition must not survive a write that could enter it"
    );
    assert!(
        cache.get::<Article>("page:1").await.unwrap().is_some(),
        "an entry that does not depend on the write stays"
    );
}

/// `Dep::kind` drops everything cached about a kind (ids, scopes, `any`), and nothing else: what
/// a change feed does after a gap, when it cannot tell what changed.
pub async fn kind_invalidation_drops_everything_about_the_kind<H: Harness>(h: &H) {
    let cache = Cache::new(h.store().await);
    let s = scopes();
    let rows = vec![article(1, "news", true)];
    cache_list(&cache, &s, "news", &rows).await;
    cache
        .put("page:1", &rows[0])
        .dep(Dep::id("article", 1))
        .await
        .unwrap();
    cache.put("count", &1).dep(s.any()).await.unwrap();
    cache
        .put("author:1", &"ann")
        .dep(Dep::id("author", 1))
        .await
        .unwrap();
    cache
        .put("home", &"home")
        .dep(Dep::tag("homepage"))
        .await
        .unwrap();
    let removed = cache.invalidate([Dep::kind("article")]).await.unwrap();
    assert_eq!(removed, 3);
    assert!(!is_cached(&cache, "news").await);
    assert_eq!(cache.get::<Article>("page:1").await.unwrap(), None);
    assert_eq!(cache.get::<i32>("count").await.unwrap(), None);
    assert!(cache.get::<String>("author:1").await.unwrap().is_some());
    assert!(cache.get::<String>("home").await.unwrap().is_some());
}
