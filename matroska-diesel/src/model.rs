//! [`CacheModel`]: what the cache knows about a Diesel model, and [`ScopeFilter`].

use matroska_core::{Dep, Scopes};

use crate::value::ToValue;

/// A Diesel model the cache knows: its kind, how to read its id, and which filtered lists
/// (scopes) its rows belong to. Implement it with `#[derive(CacheModel)]`.
///
/// The write helpers of [`Tx`](crate::Tx) use it to turn the old and new images of the rows
/// they write into the dependencies to invalidate
/// ([`Scopes::invalidate_for`]); a model's [`CacheDeps`](crate::CacheDeps) (also derived)
/// gives the dependencies of a loaded value.
///
/// # Examples
///
/// ```
/// use diesel::prelude::*;
/// use matroska_diesel::{CacheModel, Dep, ToValue};
///
/// diesel::table! {
///     articles (id) {
///         id -> BigInt,
///         category -> Text,
///         published -> Bool,
///         title -> Text,
///     }
/// }
///
/// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
/// #[diesel(table_name = articles)]
/// #[matroska(kind = "article", scope(category, published))]
/// struct Article { id: i64, category: String, published: bool, title: String }
///
/// let article = Article { id: 5, category: "news".into(), published: true, title: "Hi".into() };
/// assert_eq!(Article::KIND, "article");
/// assert_eq!(article.id_dep(), Dep::id("article", 5));
/// assert_eq!(Article::dep_for_id(5), article.id_dep());
/// assert!(Article::watches("category") && !Article::watches("title"));
///
/// // The list of published news, and its dependency, from one typed call.
/// let (filter, dep) = Article::scope_category_published("news", true).into_parts();
/// let touched = Article::cache_scopes().invalidate_for(None, Some(&article), None);
/// assert!(touched.contains(&dep));
/// # let _ = articles::table.filter(filter);
/// ```
pub trait CacheModel: Sized + Send + Sync + 'static {
    /// The entity kind of the ids and scopes (by default the table name).
    const KIND: &'static str;

    /// The columns of the primary key. A write that modifies one of them reads the old row
    /// first, so that the old id is invalidated too.
    const PRIMARY_KEY: &'static [&'static str];

    /// The scopes of this kind: the id and every declared field set. Strict: a condition on an
    /// undeclared field set is an error.
    fn cache_scopes() -> &'static Scopes<Self>;

    /// The dependency on this row: [`Dep::id`] of [`KIND`](CacheModel::KIND) and the primary
    /// key (a tuple for a composite key).
    fn id_dep(&self) -> Dep;

    /// The dependency on the row with primary key `id`, for values that depend on a row which
    /// may not exist (a cached "not found"). `id` must convert like the key field: a tuple in
    /// key order for a composite key.
    ///
    /// # Examples
    ///
    /// See [`CacheModel`].
    fn dep_for_id(id: impl ToValue) -> Dep {
        Dep::id(Self::KIND, id.to_value())
    }

    /// Whether a write that modifies `column` can change which rows or scopes are touched (the
    /// column is part of the primary key or of a scope), so that the old row must be read.
    ///
    /// # Examples
    ///
    /// See [`CacheModel`].
    fn watches(column: &str) -> bool {
        Self::PRIMARY_KEY.contains(&column)
            || Self::cache_scopes()
                .field_sets()
                .any(|set| set.iter().any(|name| name == column))
    }
}

/// A Diesel filter together with the scope dependency of the list it selects, made by the
/// `scope_*` functions that `#[derive(CacheModel)]` generates for each `scope(...)`: the filter
/// and the dependency come from the same arguments, of the fields' own types, so they cannot
/// disagree.
///
/// Narrowing the query further (more filters, an order, a limit) keeps the dependency correct:
/// a row can only enter or leave the narrower list by entering or leaving the scope, or by being
/// written while in it (its id). Ordering or limiting by a column outside the scope is the
/// exception: a write to that column can move a row into a page without touching the scope, so
/// add that column to the scope, or depend on [`Scopes::any`] for such lists.
///
/// # Examples
///
/// ```
/// use diesel::prelude::*;
/// use matroska_diesel::{CacheModel, ScopeFilter};
///
/// diesel::table! {
///     articles (id) { id -> BigInt, author_id -> BigInt, title -> Text }
/// }
///
/// #[derive(Queryable, Selectable, Identifiable, CacheModel)]
/// #[diesel(table_name = articles)]
/// #[matroska(scope(author_id))]
/// struct Article { id: i64, author_id: i64, title: String }
///
/// let scope = Article::scope_author_id(7);
/// assert_eq!(scope.dep().to_string(), "s:articles:author_id=7");
/// let query = articles::table.filter(scope.filter().clone()).order(articles::id);
/// assert_eq!(
///     diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string(),
///     r#"SELECT "articles"."id", "articles"."author_id", "articles"."title" FROM "articles" WHERE ("articles"."author_id" = $1) ORDER BY "articles"."id" -- binds: [7]"#
/// );
/// ```
#[derive(Debug, Clone)]
pub struct ScopeFilter<F> {
    filter: F,
    dep: Dep,
}

impl<F> ScopeFilter<F> {
    pub(crate) fn new(filter: F, dep: Dep) -> Self {
        Self { filter, dep }
    }

    /// The Diesel filter expression.
    ///
    /// # Examples
    ///
    /// See [`ScopeFilter`].
    pub fn filter(&self) -> &F {
        &self.filter
    }

    /// The dependency of the list the filter selects.
    ///
    /// # Examples
    ///
    /// See [`ScopeFilter`].
    pub fn dep(&self) -> &Dep {
        &self.dep
    }

    /// The filter and the dependency.
    ///
    /// # Examples
    ///
    /// See [`CacheModel`].
    pub fn into_parts(self) -> (F, Dep) {
        (self.filter, self.dep)
    }
}
