//! Unit tests of [`Scopes`].

use super::*;

#[derive(Clone, Debug)]
struct Article {
    id: i64,
    category: Option<String>,
    published: bool,
    #[allow(dead_code)] // Only modified, never read: the unwatched field.
    title: String,
}

fn article(id: i64, category: &str, published: bool) -> Article {
    Article {
        id,
        category: Some(category.into()),
        published,
        title: format!("title {id}"),
    }
}

fn scopes() -> Scopes<Article> {
    Scopes::new("article")
        .id(|a: &Article| a.id)
        .describe(["published"], |a: &Article| a.published)
        .describe(["category", "published"], |a: &Article| {
            (a.category.clone(), a.published)
        })
        .fields(&["id", "title"])
}

fn cond(s: &Scopes<Article>, category: Option<&str>, published: bool) -> Dep {
    s.condition([
        ("category", category.into()),
        ("published", published.into()),
    ])
    .unwrap()
}

fn published(s: &Scopes<Article>, p: bool) -> Dep {
    s.condition([("published", p.into())]).unwrap()
}

#[test]
fn insert_touches_the_new_rows_scopes() {
    let s = scopes();
    let touched = s.invalidate_for(None, Some(&article(1, "news", true)), None);
    assert_eq!(
        touched,
        [
            Dep::id("article", 1),
            published(&s, true),
            cond(&s, Some("news"), true),
            s.any()
        ]
    );
}

#[test]
fn delete_touches_the_old_rows_scopes_even_with_modified_given() {
    let s = scopes();
    let touched = s.invalidate_for(Some(&article(1, "news", true)), None, Some(&[]));
    assert!(touched.contains(&cond(&s, Some("news"), true)));
    assert!(touched.contains(&published(&s, true)));
}

#[test]
fn a_row_moving_between_scopes_invalidates_both() {
    let s = scopes();
    let old = article(1, "tech", true);
    let new = article(1, "news", true);
    let touched = s.invalidate_for(Some(&old), Some(&new), Some(&["category"]));
    assert!(touched.contains(&cond(&s, Some("tech"), true)), "left");
    assert!(touched.contains(&cond(&s, Some("news"), true)), "entered");
    // The published-only field set was not modified.
    assert!(!touched.contains(&published(&s, true)));
    assert!(touched.contains(&Dep::id("article", 1)));
}

#[test]
fn modifying_an_unwatched_field_touches_no_scope() {
    let s = scopes();
    let old = article(1, "news", true);
    let new = Article {
        title: "new title".into(),
        ..old.clone()
    };
    let touched = s.invalidate_for(Some(&old), Some(&new), Some(&["title"]));
    assert_eq!(touched, [Dep::id("article", 1), s.any()]);
    let tags: Vec<_> = touched.iter().map(|d| d.to_tag().unwrap()).collect();
    assert!(
        tags.iter().all(|t| !t.as_str().starts_with("s:")),
        "{tags:?}"
    );
}

#[test]
fn unknown_modifications_touch_every_field_set() {
    let s = scopes();
    let row = article(1, "news", false);
    let touched = s.invalidate_for(Some(&row), Some(&row), None);
    assert!(touched.contains(&published(&s, false)));
    assert!(touched.contains(&cond(&s, Some("news"), false)));
    // Same old and new values: each scope appears once.
    assert_eq!(touched.len(), 4);
}

#[test]
fn null_fields_have_their_own_scope() {
    let s = scopes();
    let mut row = article(1, "x", true);
    row.category = None;
    let touched = s.invalidate_for(None, Some(&row), None);
    assert!(touched.contains(&cond(&s, None, true)));
    assert!(!touched.contains(&cond(&s, Some(""), true)));
}

#[test]
fn strict_mode_rejects_undescribed_conditions() {
    let s = scopes();
    let err = s.condition([("category", "news".into())]).unwrap_err();
    assert!(matches!(err, Error::UndescribedScope { ref fields, .. } if fields == &["category"]));
    // A field given twice is malformed in any mode.
    let twice = s.condition([("published", true.into()), ("published", false.into())]);
    assert!(matches!(twice, Err(Error::InvalidCondition { .. })));
}

#[test]
fn lenient_mode_falls_back_to_the_kind_which_every_write_touches() {
    let s = scopes().lenient();
    let dep = s.condition([("category", "news".into())]).unwrap();
    assert_eq!(dep, s.any());
    let old = article(1, "news", true);
    let new = Article {
        title: "t".into(),
        ..old.clone()
    };
    for touched in [
        s.invalidate_for(Some(&old), Some(&new), Some(&["title"])),
        s.invalidate_for(None, Some(&old), None),
        s.invalidate_for(Some(&old), None, None),
    ] {
        assert!(touched.contains(&dep));
    }
}

#[test]
fn empty_field_set_is_a_scope_of_all_rows_that_tracks_modifications() {
    let s = Scopes::new("t").describe([], |_: &i32| ()).fields(&["x"]);
    let all = s.condition([]).unwrap();
    assert_eq!(all.to_tag().unwrap().as_str(), "s:t:");
    assert!(s.invalidate_for(None, Some(&1), None).contains(&all));
    assert!(
        !s.invalidate_for(Some(&1), Some(&2), Some(&["x"]))
            .contains(&all)
    );
}

#[test]
fn a_changed_field_set_is_touched_whatever_modified_says() {
    let s = scopes();
    let old = article(1, "tech", true);
    let new = article(1, "news", true);
    // Incomplete, empty and misspelled lists of modified fields.
    for modified in [&["title"][..], &[], &["categroy"]] {
        let touched = s.invalidate_for(Some(&old), Some(&new), Some(modified));
        let why = format!("modified = {modified:?}: {touched:?}");
        assert!(
            touched.contains(&cond(&s, Some("tech"), true)),
            "left, {why}"
        );
        assert!(
            touched.contains(&cond(&s, Some("news"), true)),
            "entered, {why}"
        );
    }
}

/// A list of the first page of news by date: filtered by category, ordered by a watched
/// field that no extractor reads, so only `modified` can tell that the order changed.
#[derive(Clone, Debug)]
#[allow(dead_code)] // published_at is only ever modified: no extractor reads it.
struct Dated {
    category: &'static str,
    published_at: i64,
}

fn dated() -> Scopes<Dated> {
    Scopes::new("dated").describe_watching(
        ["category"],
        &["category", "published_at"],
        |d: &Dated| d.category,
    )
}

#[test]
fn an_unknown_modified_name_counts_as_unknown_modifications() {
    let old = Dated {
        category: "news",
        published_at: 1,
    };
    let new = Dated {
        published_at: 2,
        ..old
    };
    for s in [dated(), dated().lenient()] {
        let first_page = s.condition([("category", "news".into())]).unwrap();
        let touched = s.invalidate_for(Some(&old), Some(&new), Some(&["publishd_at"]));
        assert!(
            touched.contains(&first_page),
            "a misspelled watched field left the list stale (strict: {}): {touched:?}",
            s.is_strict()
        );
    }
}

#[test]
#[should_panic(expected = "described twice")]
fn describing_a_field_set_twice_panics() {
    let _ = Scopes::new("t")
        .describe(["a", "b"], |r: &(i32, i32)| *r)
        .describe(["b", "a"], |r: &(i32, i32)| *r);
}

#[test]
fn strict_mode_refuses_unknown_modified_names_and_lenient_mode_touches_everything() {
    let s = scopes();
    let old = article(1, "news", true);
    let new = Article {
        title: "t".into(),
        ..old.clone()
    };
    let err = s
        .try_invalidate_for(Some(&old), Some(&new), Some(&["title", "categroy"]))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownFields { ref fields, .. } if fields == &["categroy"]),
        "{err}"
    );
    // Known names only: the same as invalidate_for.
    assert_eq!(
        s.try_invalidate_for(Some(&old), Some(&new), Some(&["title"]))
            .unwrap(),
        s.invalidate_for(Some(&old), Some(&new), Some(&["title"]))
    );
    // invalidate_for cannot fail: it treats the list as unknown, in both modes.
    let everything = s.invalidate_for(Some(&old), Some(&new), None);
    assert!(everything.contains(&cond(&s, Some("news"), true)));
    assert_eq!(
        s.invalidate_for(Some(&old), Some(&new), Some(&["categroy"])),
        everything
    );
    let lenient = scopes().lenient();
    assert_eq!(
        lenient
            .try_invalidate_for(Some(&old), Some(&new), Some(&["categroy"]))
            .unwrap(),
        everything
    );
    // Inserts and deletes do not read `modified`.
    assert!(
        s.try_invalidate_for(None, Some(&new), Some(&["categroy"]))
            .is_ok()
    );
}

#[test]
fn a_watched_field_in_modified_touches_its_field_set_though_no_value_changed() {
    let s = dated();
    let old = Dated {
        category: "news",
        published_at: 1,
    };
    let new = Dated {
        published_at: 2,
        ..old
    };
    let first_page = s.condition([("category", "news".into())]).unwrap();
    assert!(
        s.invalidate_for(Some(&old), Some(&new), Some(&["published_at"]))
            .contains(&first_page)
    );
    assert!(
        !s.invalidate_for(Some(&old), Some(&old), Some(&[]))
            .contains(&first_page),
        "nothing changed, nothing named"
    );
}
