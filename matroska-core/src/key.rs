//! Validated cache keys.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A validated cache key.
///
/// A key is any non-empty UTF-8 string of at most [`Key::MAX_LEN`] bytes without NUL characters
/// (PostgreSQL's `text` cannot hold them). Stores add their namespace (a Redis key prefix, a
/// PostgreSQL schema), so two caches with different namespaces never see each other's keys.
///
/// Cloning a key is cheap (it is reference counted).
///
/// # Examples
///
/// ```
/// use matroska_core::Key;
///
/// let key = Key::new("articles:news:page=1")?;
/// assert_eq!(key.as_str(), "articles:news:page=1");
/// assert!(Key::new("").is_err());
/// assert!(Key::new("x".repeat(Key::MAX_LEN + 1)).is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Validates `key`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if the key is empty, longer than [`Key::MAX_LEN`] bytes, or contains
    /// a NUL character.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Key;
    ///
    /// assert!(Key::new("article:5").is_ok());
    /// assert!(Key::new("a\0b").is_err());
    /// ```
    pub fn new(key: impl AsRef<str> + Into<Arc<str>>) -> Result<Self> {
        let text = key.as_ref();
        if text.is_empty() {
            return Err(invalid("a key must not be empty"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "a key must be at most {} bytes, this one has {}",
                Self::MAX_LEN,
                text.len()
            )));
        }
        if text.contains('\0') {
            return Err(invalid("a key must not contain NUL characters"));
        }
        Ok(Self(key.into()))
    }

    /// The key as text.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = matroska_core::Key::new("k")?;
    /// assert_eq!(key.as_str(), "k");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidKey {
        reason: reason.into(),
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        Self::new(value)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

/// Anything a cache method accepts as a key: `&str`, `String` or an already validated [`Key`].
///
/// # Examples
///
/// ```
/// use matroska_core::{IntoKey, Key};
///
/// assert_eq!("a".into_key()?, Key::new("a")?);
/// assert!("".into_key().is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub trait IntoKey {
    /// Validates and converts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] as for [`Key::new`].
    fn into_key(self) -> Result<Key>;
}

impl IntoKey for Key {
    fn into_key(self) -> Result<Key> {
        Ok(self)
    }
}

impl IntoKey for &Key {
    fn into_key(self) -> Result<Key> {
        Ok(self.clone())
    }
}

impl IntoKey for &str {
    fn into_key(self) -> Result<Key> {
        Key::new(self)
    }
}

impl IntoKey for String {
    fn into_key(self) -> Result<Key> {
        Key::new(self)
    }
}

impl IntoKey for &String {
    fn into_key(self) -> Result<Key> {
        Key::new(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_utf8_up_to_the_limit() {
        assert!(Key::new("ключ:🔑").is_ok());
        assert!(Key::new("x".repeat(Key::MAX_LEN)).is_ok());
        // Multi-byte characters count in bytes.
        assert!(Key::new("é".repeat(Key::MAX_LEN / 2 + 1)).is_err());
    }

    #[test]
    fn rejects_empty_oversized_and_nul() {
        for bad in [String::new(), "x".repeat(Key::MAX_LEN + 1), "a\0".into()] {
            let err = Key::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        }
    }
}
