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
    /// Fields of the kind that no field set reads or watches, declared with `fields`.
    others: Vec<String>,
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
            others: Vec::new(),
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

    /// Declares the kind's other fields: those no list is filtered by or watches (a title, a
    /// body). A write's `modified` list may name them; in strict mode
    /// [`try_invalidate_for`](Scopes::try_invalidate_for) refuses names that are neither
    /// described, watched nor declared here, since a misspelled name could leave a list stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Error, Scopes};
    ///
    /// #[derive(Clone)]
    /// struct Article { category: String, title: String }
    ///
    /// let scopes = Scopes::new("article")
    ///     .describe(["category"], |a: &Article| a.category.clone())
    ///     .fields(&["title"]);
    /// let old = Article { category: "news".into(), title: "a".into() };
    /// let new = Article { title: "b".into(), ..old.clone() };
    /// assert!(scopes.try_invalidate_for(Some(&old), Some(&new), Some(&["title"])).is_ok());
    /// let misspelled = scopes.try_invalidate_for(Some(&old), Some(&new), Some(&["titel"]));
    /// assert!(matches!(misspelled, Err(Error::UnknownFields { .. })));
    /// ```
    #[must_use]
    pub fn fields(mut self, names: &[&str]) -> Self {
        self.others.extend(names.iter().map(|n| (*n).to_owned()));
        self.others.sort();
        self.others.dedup();
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

    /// The dependencies a write touches: the ids of the old and the new row (when
    /// [`id`](Scopes::id) was declared), [`any`](Scopes::any), and the scopes of the old row (it
    /// may have left them) and of the new row (it may have entered them) for every field set the
    /// write may have changed. Insert: `old` is `None`; delete: `new` is `None`. The result has no
    /// duplicates.
    ///
    /// `modified` names the fields the write set (`None`: unknown). A field set is touched when
    ///
    /// - the write is an insert or a delete, or `modified` is `None`;
    /// - the values its extractor reads differ between the old and the new row, whatever
    ///   `modified` says (an incomplete or misspelled list cannot hide a row leaving or entering
    ///   a list);
    /// - `modified` names one of its fields or watched fields (see
    ///   [`describe_watching`](Scopes::describe_watching): only `modified` can tell that a field
    ///   no extractor reads changed); or
    /// - `modified` names a field these scopes do not know: neither described, watched nor
    ///   declared with [`fields`](Scopes::fields). The name may be a misspelled watched field, so
    ///   `modified` is treated as unknown and every field set is touched; this is logged (an
    ///   error in strict mode, where [`try_invalidate_for`](Scopes::try_invalidate_for) refuses
    ///   it instead).
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
    ///     .describe(["category"], |a: &Article| a.category)
    ///     .fields(&["title"]);
    /// let old = Article { id: 1, category: "news", title: "a" };
    /// let renamed = Article { title: "b", ..old.clone() };
    ///
    /// // Only the title changed: no scope is touched, only the article (and `any`).
    /// let touched = scopes.invalidate_for(Some(&old), Some(&renamed), Some(&["title"]));
    /// assert_eq!(touched, [Dep::id("article", 1), scopes.any()]);
    ///
    /// // The category changed, though `modified` forgot it: both lists are touched.
    /// let moved = Article { category: "tech", ..old.clone() };
    /// let touched = scopes.invalidate_for(Some(&old), Some(&moved), Some(&["title"]));
    /// for category in ["news", "tech"] {
    ///     assert!(touched.contains(&scopes.condition([("category", category.into())])?));
    /// }
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn invalidate_for(
        &self,
        old: Option<&T>,
        new: Option<&T>,
        modified: Option<&[&str]>,
    ) -> Vec<Dep> {
        let unknown = self.unknown_fields(old, new, modified);
        if unknown.is_empty() {
            return self.touched(old, new, modified);
        }
        if self.strict {
            tracing::error!(
                kind = %self.kind,
                fields = ?unknown,
                "modified names fields these scopes do not know (describe or watch them, or \
                 declare them with Scopes::fields); every field set is invalidated"
            );
        } else {
            tracing::warn!(
                kind = %self.kind,
                fields = ?unknown,
                "modified names unknown fields; every field set is invalidated"
            );
        }
        self.touched(old, new, None)
    }

    /// [`invalidate_for`](Scopes::invalidate_for), refusing in strict mode a `modified` list that
    /// names a field these scopes do not know (in lenient mode such a list is logged and treated
    /// as unknown, as `invalidate_for` does).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFields`] in strict mode, for an update (`old` and `new` given) whose
    /// `modified` names fields that are neither described, watched nor declared with
    /// [`fields`](Scopes::fields).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Error, Scopes};
    ///
    /// let scopes = Scopes::new("article").describe(["category"], |a: &(String, i64)| a.0.clone());
    /// let (old, new) = (("news".to_string(), 1), ("news".to_string(), 2));
    /// let misspelled = Some(&["categroy"][..]);
    /// let err = scopes.try_invalidate_for(Some(&old), Some(&new), misspelled).unwrap_err();
    /// assert!(matches!(err, Error::UnknownFields { ref fields, .. } if fields == &["categroy"]));
    /// // Lenient: treated as unknown modifications.
    /// let lenient = scopes.lenient();
    /// assert!(lenient.try_invalidate_for(Some(&old), Some(&new), misspelled).is_ok());
    /// ```
    pub fn try_invalidate_for(
        &self,
        old: Option<&T>,
        new: Option<&T>,
        modified: Option<&[&str]>,
    ) -> Result<Vec<Dep>> {
        let unknown = self.unknown_fields(old, new, modified);
        if unknown.is_empty() {
            return Ok(self.touched(old, new, modified));
        }
        if self.strict {
            return Err(Error::UnknownFields {
                kind: self.kind.clone(),
                fields: unknown,
            });
        }
        Ok(self.invalidate_for(old, new, modified))
    }

    /// The names in `modified` that no field set describes or watches and `fields` did not
    /// declare; only an update reads `modified`.
    fn unknown_fields(
        &self,
        old: Option<&T>,
        new: Option<&T>,
        modified: Option<&[&str]>,
    ) -> Vec<String> {
        let (Some(_), Some(_), Some(modified)) = (old, new, modified) else {
            return Vec::new();
        };
        modified
            .iter()
            .filter(|name| {
                let name = **name;
                !self
                    .sets
                    .iter()
                    .any(|set| set.watch.iter().any(|w| w == name))
                    && !self.others.iter().any(|o| o == name)
            })
            .map(|name| (*name).to_owned())
            .collect()
    }

    fn touched(&self, old: Option<&T>, new: Option<&T>, modified: Option<&[&str]>) -> Vec<Dep> {
        let mut deps = Vec::new();
        if old.is_none() && new.is_none() {
            return deps;
        }
        if let Some(id) = &self.id {
            for row in old.into_iter().chain(new) {
                push_unique(&mut deps, Dep::id(self.kind.clone(), id(row)));
            }
        }
        for set in &self.sets {
            let rows: Vec<(&T, Vec<Value>)> = old
                .into_iter()
                .chain(new)
                .map(|row| (row, (set.extract)(row)))
                .collect();
            let relevant = match (&rows[..], modified) {
                // An update: touched when its values changed, or a watched field was modified.
                ([(_, before), (_, after)], Some(modified)) => {
                    before != after || set.watch.iter().any(|w| modified.contains(&w.as_str()))
                }
                // An insert, a delete, or an update whose modifications are unknown.
                _ => true,
            };
            if !relevant {
                continue;
            }
            for (_, values) in rows {
                let fields = set.names.iter().cloned().zip(values).collect();
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
            .field("other_fields", &self.others)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
