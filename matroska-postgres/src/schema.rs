//! Validated, always-quoted schema names: the namespace of a [`PgStore`](crate::PgStore).

use std::fmt;

use matroska_core::{Error, Result};

/// The PostgreSQL schema a [`PgStore`](crate::PgStore) keeps its tables and functions in: its
/// namespace.
///
/// A name is 1 to 63 bytes of lower-case ASCII letters, digits and underscores, starting with a
/// letter or an underscore, and not starting with `pg_` (reserved by PostgreSQL). Every SQL text
/// the store sends uses [`SchemaName::quoted`], never the bare name, so no identifier is ever
/// pasted into SQL unquoted.
///
/// # Examples
///
/// ```
/// use matroska_postgres::SchemaName;
///
/// let schema = SchemaName::new("app_cache")?;
/// assert_eq!(schema.as_str(), "app_cache");
/// assert_eq!(schema.quoted(), "\"app_cache\"");
/// assert!(SchemaName::new("App Cache").is_err());
/// assert!(SchemaName::new("pg_cache").is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    /// The longest schema name PostgreSQL keeps without truncating it (`NAMEDATALEN - 1`).
    pub const MAX_LEN: usize = 63;

    /// Validates a schema name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] when the name is empty, longer than 63 bytes, contains anything
    /// but `[a-z0-9_]`, starts with a digit, or starts with `pg_`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matroska_postgres::SchemaName::new("matroska").is_ok());
    /// assert!(matroska_postgres::SchemaName::new("1cache").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("a schema name must not be empty".to_owned())
        } else if name.len() > Self::MAX_LEN {
            Some(format!(
                "a schema name must be at most {} bytes, this one has {}",
                Self::MAX_LEN,
                name.len()
            ))
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Some("use lower-case ASCII letters, digits and underscores only".to_owned())
        } else if name.as_bytes()[0].is_ascii_digit() {
            Some("a schema name must not start with a digit".to_owned())
        } else if name.starts_with("pg_") {
            Some("names starting with pg_ are reserved by PostgreSQL".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidNamespace {
                namespace: name,
                reason,
            }),
            None => Ok(Self(name)),
        }
    }

    /// The bare name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::SchemaName::new("c")?.as_str(), "c");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier, the only form the store puts into SQL text.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_postgres::SchemaName::new("c")?.quoted(), "\"c\"");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does when it must: in double quotes,
/// with embedded double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl fmt::Debug for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SchemaName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_quotes_valid_names() {
        for name in ["a", "_", "matroska", "cache_2", &"x".repeat(63)] {
            let schema = SchemaName::new(name).unwrap();
            assert_eq!(schema.quoted(), format!("\"{name}\""));
        }
    }

    #[test]
    fn rejects_everything_that_would_need_care() {
        for name in [
            "",
            "Cache",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "9a",
            "pg_x",
            "é",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(SchemaName::new(name), Err(Error::InvalidNamespace { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
