//! Scopes: which cached lists a row belongs to.

use std::fmt;

use crate::dep::Dep;
use crate::error::{Error, Result};
use crate::value::{IntoValues, Value};

type Extractor<T> = Box<dyn Fn(&T) -> Vec<Value> + Send + Sync>;
type IdExtractor<T> = Box<dyn Fn(&T) -> Value + Send + Sync>;

/// The scopes of one entity kind: which filtered lists a row belongs to, and which of them a write
/// touches.
///
/// A cached list filtered by `category = 'news' and published = true` depends on the scope
/// [`condition`](Scopes::condition) `[("category", "news"), ("published", true)]`. When an article
/// is written, [`invalidate_for`](Scopes::invalidate_for) returns the scopes of the old row (it may
/// have left a list) and of the new row (it may have entered one), so a new article entering the
/// list and an article moving category both invalidate exactly the lists they affect.
///
/// Each field set that lists are filtered by is declared once with
/// [`describe`](Scopes::describe), together with a function that reads those fields from a row. A
/// condition on a field set that was not described is an error in strict mode (the default, for
/// development and tests); in [lenient](Scopes::lenient) mode (production) the list instead
/// depends on [`any`](Scopes::any), which every write of the kind invalidates: coarse, but never
/// stale.
///
/// # Examples
///
/// ```
/// use matroska_core::{Dep, Scopes};
///
/// #[derive(Clone)]
/// struct Article { id: i64, category: String, published: bool, title: String }
///
/// let scopes = Scopes::new("article")
///     .id(|a: &Article| a.id)
///     .describe(["category", "published"], |a: &Article| (a.category.clone(), a.published));
///
/// // A list of published news depends on this:
/// let news = scopes.condition([("category", "news".into()), ("published", true.into())])?;
///
/// // An article moves from "tech" to "news": both lists are touched, and the article itself.
/// let old = Article { id: 5, category: "tech".into(), published: true, title: "Rust".into() };
/// let new = Article { category: "news".into(), ..old.clone() };
/// let touched = scopes.invalidate_for(Some(&old), Some(&new), Some(&["category"]));
/// assert!(touched.contains(&news));
/// assert!(touched.contains(&Dep::id("article", 5)));
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub struct Scopes<T> {
    kind: String,
    strict: bool,
    id: Option<IdExtractor<T>>,
    sets: Vec<FieldSet<T>>,
}

struct FieldSet<T> {
    /// Field names in declaration order (the extractor's order).
    names: Vec<String>,
    /// The fields whose modification makes a write relevant to this field set.
    watch: Vec<String>,
    /// The same names, sorted: the identity of the field set.
    sorted: Vec<String>,
    extract: Extractor<T>,
}

impl<T> Scopes<T> {
    /// Scopes of the entity kind `kind` (such as `"article"`), in strict mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let scopes = matroska_core::Scopes::<()>::new("article");
    /// assert_eq!(scopes.kind(), "article");
    /// ```
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            strict: true,
            id: None,
            sets: Vec::new(),
        }
    }

    /// Lenient (production) mode: a condition on an undescribed field set depends on
    /// [`any`](Scopes::any) instead of failing, and logs a warning.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// let scopes = Scopes::<()>::new("article").lenient();
    /// assert_eq!(scopes.condition([("author", 3.into())])?, scopes.any());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    #[must_use]
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }

    /// Declares how to read a row's id: [`invalidate_for`](Scopes::invalidate_for) then also
    /// returns [`Dep::id`] of the old and the new row.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Scopes};
    ///
    /// let scopes = Scopes::new("article").id(|a: &(i64, bool)| a.0);
    /// let touched = scopes.invalidate_for(None, Some(&(5, true)), None);
    /// assert!(touched.contains(&Dep::id("article", 5)));
    /// ```
    #[must_use]
    pub fn id<V: Into<Value>>(mut self, id: impl Fn(&T) -> V + Send + Sync + 'static) -> Self {
        self.id = Some(Box::new(move |row| id(row).into()));
        self
    }

    /// Declares a field set that lists are filtered by, and how to read those fields from a row.
    /// The extractor returns one value per name (a tuple for several), checked at compile time.
    /// A write is relevant to this field set when it modifies one of these fields.
    ///
    /// # Panics
    ///
    /// If the same field set (in any order) is described twice, or a name repeats: both are
    /// programming errors in a static declaration.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// struct Article { category: String, published: bool }
    ///
    /// let scopes = Scopes::new("article")
    ///     .describe(["published"], |a: &Article| a.published)
    ///     .describe(["category", "published"], |a: &Article| (a.category.clone(), a.published));
    /// assert_eq!(scopes.field_sets().count(), 2);
    /// ```
    #[must_use]
    pub fn describe<const N: usize, V: IntoValues<N>>(
        self,
        names: [&str; N],
        extract: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Self {
        self.describe_watching(names, &names, extract)
    }

    /// [`describe`](Scopes::describe), for lists that also depend on fields they are not
    /// filtered by: a write that modifies any of `watch` touches this field set's scopes. Use it
    /// for lists ordered or paged by another column (the first page of news by date changes when
    /// a news article's date changes, though its filter does not).
    ///
    /// # Panics
    ///
    /// As [`describe`](Scopes::describe).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// #[derive(Clone)]
    /// struct Article { category: String, published_at: i64 }
    ///
    /// let scopes = Scopes::new("article")
    ///     .describe_watching(["category"], &["category", "published_at"], |a: &Article| a.category.clone());
    /// let first_page = scopes.condition([("category", "news".into())])?;
    /// let old = Article { category: "news".into(), published_at: 1 };
    /// let new = Article { published_at: 2, ..old.clone() };
    /// assert!(scopes.invalidate_for(Some(&old), Some(&new), Some(&["published_at"])).contains(&first_page));
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    #[must_use]
    pub fn describe_watching<const N: usize, V: IntoValues<N>>(
        mut self,
        names: [&str; N],
        watch: &[&str],
        extract: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        let unique = sorted.windows(2).all(|w| w[0] != w[1]);
        assert!(
            unique,
            "Scopes::describe: a field name repeats in {names:?}"
        );
        assert!(
            !self.sets.iter().any(|s| s.sorted == sorted),
            "Scopes::describe: the field set {sorted:?} of {:?} is described twice",
            self.kind
        );
        let mut watch: Vec<String> = watch.iter().map(|w| (*w).to_owned()).collect();
        watch.extend(names.iter().cloned());
        watch.sort();
        watch.dedup();
        self.sets.push(FieldSet {
            names,
            watch,
            sorted,
            extract: Box::new(move |row| extract(row).into_values().to_vec()),
        });
        self
    }

    /// The entity kind.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_core::Scopes::<()>::new("author").kind(), "author");
    /// ```
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether undescribed conditions are errors (strict, the default) or fall back to
    /// [`any`](Scopes::any) (lenient).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_core::Scopes::<()>::new("a").is_strict());
    /// ```
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The described field sets, each in declaration order.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// let scopes = Scopes::new("a").describe(["x", "y"], |r: &(i32, i32)| *r);
    /// let sets: Vec<&[String]> = scopes.field_sets().collect();
    /// assert_eq!(sets, [["x".to_string(), "y".to_string()]]);
    /// ```
    pub fn field_sets(&self) -> impl Iterator<Item = &[String]> {
        self.sets.iter().map(|s| s.names.as_slice())
    }

    /// The dependency on every row of this kind: invalidated by every
    /// [`invalidate_for`](Scopes::invalidate_for). Lenient mode uses it for undescribed
    /// conditions; use it directly for results that depend on all rows (a count, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// let scopes = Scopes::<()>::new("article");
    /// assert_eq!(scopes.any().to_tag()?.as_str(), "k:article");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn any(&self) -> Dep {
        Dep::any_of_kind(self.kind.clone())
    }

    /// The dependency of a list filtered by exactly these fields having these values (`field =
    /// value`, all of them; `Value::Null` means `IS NULL`).
    ///
    /// # Errors
    ///
    /// - [`Error::UndescribedScope`] in strict mode when no [`describe`](Scopes::describe) declared
    ///   this field set (in lenient mode the result is [`any`](Scopes::any));
    /// - [`Error::InvalidCondition`] when a field is given twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Scopes;
    ///
    /// let scopes = Scopes::new("article")
    ///     .describe(["category", "published"], |a: &(String, bool)| a.clone());
    /// let dep = scopes.condition([("published", true.into()), ("category", "news".into())])?;
    /// assert_eq!(dep.to_tag()?.as_str(), "s:article:category='news&published=true");
    /// assert!(scopes.condition([("category", "news".into())]).is_err());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn condition<'a>(&self, fields: impl IntoIterator<Item = (&'a str, Value)>) -> Result<Dep> {
        let fields: Vec<(String, Value)> = fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let mut sorted: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
        sorted.sort();
        if let Some([twice, ..]) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::InvalidCondition {
                kind: self.kind.clone(),
                reason: format!("field {twice:?} is given twice"),
            });
        }
        if self.sets.iter().any(|s| s.sorted == sorted) {
            return Ok(Dep::scope(self.kind.clone(), fields));
        }
        if self.strict {
            return Err(Error::UndescribedScope {
                kind: self.kind.clone(),
                fields: sorted,
            });
        }
        tracing::warn!(
            kind = %self.kind,
            fields = ?sorted,
            "undescribed scope: the entry depends on every {} row instead",
            self.kind
        );
        Ok(self.any())
    }

    /// The dependencies a write touches: the scopes of the old row (it may have left them) and of
    /// the new row (it may have entered them), for the field sets whose fields (or watched fields,
    /// see [`describe_watching`](Scopes::describe_watching)) intersect `modified` (all of them
    /// when `modified` is `None`, or for an insert or delete), the ids of both rows
    /// (when [`id`](Scopes::id) was declared), and [`any`](Scopes::any).
    ///
    /// Insert: `old` is `None`; delete: `new` is `None`. The result has no duplicates.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Scopes};
    ///
    /// #[derive(Clone)]
    /// struct Article { id: i64, category: &'static str, title: &'static str }
    ///
    /// let scopes = Scopes::new("article")
    ///     .id(|a: &Article| a.id)
    ///     .describe(["category"], |a: &Article| a.category);
    /// let old = Article { id: 1, category: "news", title: "a" };
    /// let renamed = Article { title: "b", ..old.clone() };
    ///
    /// // Only the title changed: no scope is touched, only the article (and `any`).
    /// let touched = scopes.invalidate_for(Some(&old), Some(&renamed), Some(&["title"]));
    /// assert_eq!(touched, [Dep::id("article", 1), scopes.any()]);
    /// ```
    pub fn invalidate_for(
        &self,
        old: Option<&T>,
        new: Option<&T>,
        modified: Option<&[&str]>,
    ) -> Vec<Dep> {
        let mut deps = Vec::new();
        if old.is_none() && new.is_none() {
            return deps;
        }
        if let Some(id) = &self.id {
            for row in old.into_iter().chain(new) {
                push_unique(&mut deps, Dep::id(self.kind.clone(), id(row)));
            }
        }
        // On insert or delete every field "changed".
        let modified = if old.is_some() && new.is_some() {
            modified
        } else {
            None
        };
        for set in &self.sets {
            let relevant = modified.is_none_or(|m| set.watch.iter().any(|n| m.contains(&&**n)));
            if !relevant {
                continue;
            }
            for row in old.into_iter().chain(new) {
                let fields = set.names.iter().cloned().zip((set.extract)(row)).collect();
                push_unique(&mut deps, Dep::scope(self.kind.clone(), fields));
            }
        }
        push_unique(&mut deps, self.any());
        deps
    }
}

fn push_unique(deps: &mut Vec<Dep>, dep: Dep) {
    if !deps.contains(&dep) {
        deps.push(dep);
    }
}

impl<T> fmt::Debug for Scopes<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scopes")
            .field("kind", &self.kind)
            .field("strict", &self.strict)
            .field("id", &self.id.is_some())
            .field("field_sets", &self.field_sets().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
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
        assert!(
            matches!(err, Error::UndescribedScope { ref fields, .. } if fields == &["category"])
        );
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
        let s = Scopes::new("t").describe([], |_: &i32| ());
        let all = s.condition([]).unwrap();
        assert_eq!(all.to_tag().unwrap().as_str(), "s:t:");
        assert!(s.invalidate_for(None, Some(&1), None).contains(&all));
        assert!(
            !s.invalidate_for(Some(&1), Some(&2), Some(&["x"]))
                .contains(&all)
        );
    }

    #[test]
    #[should_panic(expected = "described twice")]
    fn describing_a_field_set_twice_panics() {
        let _ = Scopes::new("t")
            .describe(["a", "b"], |r: &(i32, i32)| *r)
            .describe(["b", "a"], |r: &(i32, i32)| *r);
    }
}
