//! [`ScopeSet`]: one scope field set of a captured table (fields, their columns, watched
//! columns).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One scope field set of a table: the fields lists are filtered by (as in
/// [`Scopes::describe`](matroska_core::Scopes::describe)), the column each is read from (the
/// field's own name unless renamed), and extra watched columns (as in
/// [`Scopes::describe_watching`](matroska_core::Scopes::describe_watching)).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::ScopeSet;
///
/// let set = ScopeSet::new(["category", "published"]).column("published", "is_published").watch(["title"]);
/// assert_eq!(set.fields(), ["category", "published"]);
/// assert_eq!(set.column_of("published"), "is_published");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSet {
    pub(super) fields: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) columns: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) watch: Vec<String>,
}

impl ScopeSet {
    /// A field set; each field is read from the column of the same name.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["published"]);
    /// assert_eq!(set.column_of("published"), "published");
    /// ```
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fields: fields.into_iter().map(Into::into).collect(),
            columns: BTreeMap::new(),
            watch: Vec::new(),
        }
    }

    /// Reads `field` from `column`.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["cat"]).column("cat", "category_id");
    /// assert_eq!(set.column_of("cat"), "category_id");
    /// ```
    #[must_use]
    pub fn column(mut self, field: impl Into<String>, column: impl Into<String>) -> Self {
        self.columns.insert(field.into(), column.into());
        self
    }

    /// Columns whose change also touches this scope (besides its fields' columns).
    ///
    /// # Examples
    ///
    /// ```
    /// let set = matroska_pg_capture::capture::ScopeSet::new(["published"]).watch(["published_at"]);
    /// assert_eq!(set.watched(), ["published_at"]);
    /// ```
    #[must_use]
    pub fn watch<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.watch.extend(columns.into_iter().map(Into::into));
        self
    }

    /// The field names, as declared.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::ScopeSet::new(["a", "b"]).fields(), ["a", "b"]);
    /// ```
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The column `field` is read from.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::ScopeSet::new(["a"]).column_of("a"), "a");
    /// ```
    pub fn column_of<'a>(&'a self, field: &'a str) -> &'a str {
        self.columns.get(field).map_or(field, String::as_str)
    }

    /// The extra watched columns.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_pg_capture::capture::ScopeSet::new(["a"]).watched().is_empty());
    /// ```
    pub fn watched(&self) -> &[String] {
        &self.watch
    }

    /// Every column whose change touches this scope: the fields' columns and the watched ones,
    /// sorted, without repeats.
    pub(crate) fn all_watched(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .fields
            .iter()
            .map(|f| self.column_of(f))
            .chain(self.watch.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}
