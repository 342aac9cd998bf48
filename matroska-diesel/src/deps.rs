//! [`CacheDeps`]: the dependencies a loaded value carries.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use matroska_core::{Dep, Loaded};

/// A set of dependencies that keeps the order they were first added in.
///
/// # Examples
///
/// ```
/// use matroska_diesel::{Dep, Deps};
///
/// let mut deps = Deps::new();
/// assert!(deps.push(Dep::id("article", 1)));
/// assert!(!deps.push(Dep::id("article", 1)));
/// deps.extend([Dep::id("author", 7), Dep::id("article", 1)]);
/// assert_eq!(deps.into_vec(), [Dep::id("article", 1), Dep::id("author", 7)]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Deps {
    seen: HashSet<Dep>,
    list: Vec<Dep>,
}

impl Deps {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Deps::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dependency; returns `false` if it was already there.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut deps = matroska_diesel::Deps::new();
    /// assert!(deps.push(matroska_diesel::Dep::tag("home")));
    /// ```
    pub fn push(&mut self, dep: Dep) -> bool {
        if self.seen.contains(&dep) {
            return false;
        }
        self.seen.insert(dep.clone());
        self.list.push(dep);
        true
    }

    /// Whether `dep` is in the set.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_diesel::{Dep, Deps};
    ///
    /// let deps: Deps = [Dep::tag("home")].into_iter().collect();
    /// assert!(deps.contains(&Dep::tag("home")));
    /// ```
    pub fn contains(&self, dep: &Dep) -> bool {
        self.seen.contains(dep)
    }

    /// How many dependencies the set holds.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_diesel::Deps::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Deps::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The dependencies, in the order they were first added.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_diesel::{Dep, Deps};
    ///
    /// let deps: Deps = [Dep::tag("a"), Dep::tag("b")].into_iter().collect();
    /// assert_eq!(deps.as_slice(), [Dep::tag("a"), Dep::tag("b")]);
    /// ```
    pub fn as_slice(&self) -> &[Dep] {
        &self.list
    }

    /// The dependencies, in the order they were first added.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_diesel::Deps::new().into_vec().is_empty());
    /// ```
    pub fn into_vec(self) -> Vec<Dep> {
        self.list
    }

    /// Iterates over the dependencies, in the order they were first added.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_diesel::{Dep, Deps};
    ///
    /// let deps: Deps = [Dep::tag("a")].into_iter().collect();
    /// assert_eq!(deps.iter().count(), 1);
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, Dep> {
        self.list.iter()
    }

    /// Removes every dependency.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut deps = matroska_diesel::Deps::new();
    /// deps.push(matroska_diesel::Dep::tag("a"));
    /// deps.clear();
    /// assert!(deps.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.seen.clear();
        self.list.clear();
    }
}

impl Extend<Dep> for Deps {
    fn extend<I: IntoIterator<Item = Dep>>(&mut self, deps: I) {
        for dep in deps {
            self.push(dep);
        }
    }
}

impl FromIterator<Dep> for Deps {
    fn from_iter<I: IntoIterator<Item = Dep>>(deps: I) -> Self {
        let mut set = Self::new();
        set.extend(deps);
        set
    }
}

impl IntoIterator for Deps {
    type Item = Dep;
    type IntoIter = std::vec::IntoIter<Dep>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl<'a> IntoIterator for &'a Deps {
    type Item = &'a Dep;
    type IntoIter = std::slice::Iter<'a, Dep>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// A value that knows what it depends on: a model (its id, and the `nested` relations it
/// carries), a list of models, a tuple from a join, a page struct holding several of them.
///
/// `#[derive(CacheModel)]` and `#[derive(CacheDeps)]` implement it; it is implemented for
/// [`Dep`], references, `Box`, `Rc`, `Arc`, `Option`, `Vec`, slices, arrays, `()` and tuples of
/// up to eight (join results). It is deliberately not implemented for plain values such as
/// integers or strings: a value made of those (a count, a column selected alone) depends on rows
/// that it cannot name, so declare its dependencies explicitly (a scope from a generated scope
/// filter, or [`Dep::id`]).
///
/// The dependencies of a list query are the rows' [`cache_deps`](CacheDeps::cache_deps) plus
/// the scope of its filter ([`ScopeFilter::dep`](crate::ScopeFilter)): the rows catch updates and
/// deletes of what the list holds, the scope catches rows entering it.
///
/// # Examples
///
/// ```
/// use matroska_diesel::{CacheDeps, Dep, Deps};
///
/// struct Page { article: Dep, author: Dep }
///
/// impl CacheDeps for Page {
///     fn collect_deps(&self, deps: &mut Deps) {
///         self.article.collect_deps(deps);
///         self.author.collect_deps(deps);
///     }
/// }
///
/// let pages = vec![
///     Page { article: Dep::id("article", 1), author: Dep::id("author", 7) },
///     Page { article: Dep::id("article", 2), author: Dep::id("author", 7) },
/// ];
/// // Deduplicated, in first-seen order.
/// assert_eq!(
///     pages.cache_deps(),
///     [Dep::id("article", 1), Dep::id("author", 7), Dep::id("article", 2)]
/// );
/// ```
pub trait CacheDeps {
    /// Adds this value's dependencies to `deps`.
    fn collect_deps(&self, deps: &mut Deps);

    /// This value's dependencies, deduplicated, in first-seen order.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_diesel::{CacheDeps, Dep};
    ///
    /// let deps = (Dep::id("a", 1), Some(Dep::id("a", 1)), None::<Dep>).cache_deps();
    /// assert_eq!(deps, [Dep::id("a", 1)]);
    /// ```
    fn cache_deps(&self) -> Vec<Dep> {
        let mut deps = Deps::new();
        self.collect_deps(&mut deps);
        deps.into_vec()
    }
}

impl CacheDeps for Dep {
    fn collect_deps(&self, deps: &mut Deps) {
        deps.push(self.clone());
    }
}

impl CacheDeps for Deps {
    fn collect_deps(&self, deps: &mut Deps) {
        deps.extend(self.list.iter().cloned());
    }
}

impl CacheDeps for () {
    fn collect_deps(&self, _: &mut Deps) {}
}

macro_rules! deref_impl {
    ($($ptr:ident),*) => {$(
        impl<T: CacheDeps + ?Sized> CacheDeps for $ptr<T> {
            fn collect_deps(&self, deps: &mut Deps) {
                (**self).collect_deps(deps);
            }
        }
    )*};
}
deref_impl!(Box, Rc, Arc);

impl<T: CacheDeps + ?Sized> CacheDeps for &T {
    fn collect_deps(&self, deps: &mut Deps) {
        (**self).collect_deps(deps);
    }
}

impl<T: CacheDeps> CacheDeps for Option<T> {
    fn collect_deps(&self, deps: &mut Deps) {
        if let Some(value) = self {
            value.collect_deps(deps);
        }
    }
}

impl<T: CacheDeps> CacheDeps for [T] {
    fn collect_deps(&self, deps: &mut Deps) {
        for value in self {
            value.collect_deps(deps);
        }
    }
}

impl<T: CacheDeps, const N: usize> CacheDeps for [T; N] {
    fn collect_deps(&self, deps: &mut Deps) {
        self.as_slice().collect_deps(deps);
    }
}

impl<T: CacheDeps> CacheDeps for Vec<T> {
    fn collect_deps(&self, deps: &mut Deps) {
        self.as_slice().collect_deps(deps);
    }
}

macro_rules! tuple_impl {
    ($($name:ident),+) => {
        impl<$($name: CacheDeps),+> CacheDeps for ($($name,)+) {
            #[allow(non_snake_case)]
            fn collect_deps(&self, deps: &mut Deps) {
                let ($($name,)+) = self;
                $($name.collect_deps(deps);)+
            }
        }
    };
}
tuple_impl!(A);
tuple_impl!(A, B);
tuple_impl!(A, B, C);
tuple_impl!(A, B, C, D);
tuple_impl!(A, B, C, D, E);
tuple_impl!(A, B, C, D, E, F);
tuple_impl!(A, B, C, D, E, F, G);
tuple_impl!(A, B, C, D, E, F, G, H);

/// A loaded value for [`Cache::fetch`](matroska_core::Cache::fetch) and
/// [`Cache::get_or_insert_with`](matroska_core::Cache::get_or_insert_with), carrying the
/// dependencies of everything in it ([`CacheDeps`]). Add the scope of a list's filter with
/// [`Loaded::dep`].
///
/// # Examples
///
/// ```
/// use matroska_diesel::{Dep, loaded};
///
/// let rows = vec![Dep::id("article", 1), Dep::id("article", 2)];
/// let value = loaded(rows).dep(Dep::tag("front-page"));
/// assert_eq!(value.value().len(), 2);
/// ```
pub fn loaded<T: CacheDeps>(value: T) -> Loaded<T> {
    let deps = value.cache_deps();
    Loaded::new(value).deps(deps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_containers_are_flattened_and_deduplicated() {
        let a = Dep::id("article", 1);
        let b = Dep::id("author", 2);
        let value = (
            vec![a.clone(), b.clone()],
            Some(Arc::new(a.clone())),
            [b.clone()],
            Box::new(()),
        );
        assert_eq!(value.cache_deps(), [a, b]);
    }

    #[test]
    fn deps_set_operations() {
        let mut deps: Deps = [Dep::tag("x"), Dep::tag("y"), Dep::tag("x")]
            .into_iter()
            .collect();
        assert_eq!(deps.len(), 2);
        assert!(deps.contains(&Dep::tag("y")));
        let refs: Vec<&Dep> = (&deps).into_iter().collect();
        assert_eq!(refs.len(), 2);
        deps.clear();
        assert!(deps.is_empty());
    }
}
