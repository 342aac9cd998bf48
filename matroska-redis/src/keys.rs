//! The key layout of a namespace: the one place the client builds Redis key names.
//!
//! The scripts build the names they derive on the server (the indexes of an entry's tags, the
//! sets aside) in `lua/common.lua`, with the same layout; a test checks that the two agree.

use std::fmt;
use std::sync::Arc;

use matroska_core::{Error, Key, Result, Tag};

/// The longest accepted prefix, in bytes.
const MAX_PREFIX_LEN: usize = 128;

/// The Redis key names of one namespace.
///
/// Every key of a namespace starts with `{prefix}:`: the braces make the prefix a Redis Cluster
/// hash tag (all keys of a namespace live in one slot, as atomic scripts need), and since a prefix
/// cannot contain `}`, two namespaces never share a key.
///
/// | key | type | content |
/// | --- | --- | --- |
/// | `{prefix}:seq` | string | the namespace's state: sequence number, safe mark, generation, last invalidation |
/// | `{prefix}:meta` | hash | the generation again, housekeeping cursors, and one record per tag: its stamp (the sequence number of its last invalidation) and how long its index and entries may live |
/// | `{prefix}:e:<key>` | string | an entry: the sequence number it was filled at, its generation, its tags, its value |
/// | `{prefix}:t:<tag>` | sorted set | the reverse index of a tag: keys scored by expiry (ms) |
/// | `{prefix}:r:<seq>:<tag>` | sorted set | an index set aside by a large invalidation, reclaimed in chunks |
/// | `{prefix}:pending` | sorted set | the sets aside still to reclaim |
/// | `{prefix}:l:<key>` | string, with a TTL | the refresh lease of a key: the nonce of the handle holding it, until it expires |
///
/// The crate's [`protocol`](crate::protocol) documentation describes the formats and who writes
/// what.
///
/// # Examples
///
/// ```
/// use matroska_core::{Dep, Key};
/// use matroska_redis::KeyLayout;
///
/// let layout = KeyLayout::new("app")?;
/// assert_eq!(layout.entry(&Key::new("article:5")?), "{app}:e:article:5");
/// assert_eq!(layout.index(&Dep::id("article", 5).to_tag()?), "{app}:t:i:article:5");
/// assert!(KeyLayout::new("has space").is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyLayout {
    prefix: Arc<str>,
    /// `{prefix}`: what every key starts with, and what the scripts receive as `ARGV[1]`.
    base: Arc<str>,
}

impl KeyLayout {
    /// The layout of the namespace `prefix`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNamespace`] if the prefix is empty, longer than 128 bytes, or contains
    /// whitespace, control characters, braces (reserved for the hash tag) or the glob characters
    /// `* ? [ ] \` (a clear finds the namespace's keys with `SCAN MATCH`).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_redis::KeyLayout;
    ///
    /// assert_eq!(KeyLayout::new("shop:cache")?.prefix(), "shop:cache");
    /// assert!(KeyLayout::new("").is_err());
    /// assert!(KeyLayout::new("a{b}").is_err());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn new(prefix: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidNamespace {
            namespace: prefix.to_owned(),
            reason: reason.to_owned(),
        };
        if prefix.is_empty() {
            return Err(invalid("a Redis key prefix must not be empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(invalid("a Redis key prefix must be at most 128 bytes"));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "a Redis key prefix must not contain whitespace or control characters",
            ));
        }
        if prefix.contains(['{', '}']) {
            return Err(invalid(
                "a Redis key prefix must not contain braces: the store wraps it in {} itself",
            ));
        }
        if prefix.contains(['*', '?', '[', ']', '\\']) {
            return Err(invalid(
                "a Redis key prefix must not contain the glob characters * ? [ ] \\",
            ));
        }
        Ok(Self {
            prefix: prefix.into(),
            base: format!("{{{prefix}}}").into(),
        })
    }

    /// The prefix, as given.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.prefix(), "app");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What every key of the namespace starts with: `{prefix}`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.base(), "{app}");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The key of the entry stored under `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// let layout = matroska_redis::KeyLayout::new("app")?;
    /// assert_eq!(layout.entry(&matroska_core::Key::new("k")?), "{app}:e:k");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn entry(&self, key: &Key) -> String {
        self.join("e", key.as_str())
    }

    /// The key of the refresh lease of `key` ([`Store::begin_fill`](matroska_core::Store::begin_fill)).
    ///
    /// # Examples
    ///
    /// ```
    /// let layout = matroska_redis::KeyLayout::new("app")?;
    /// assert_eq!(layout.lease(&matroska_core::Key::new("k")?), "{app}:l:k");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn lease(&self, key: &Key) -> String {
        self.join("l", key.as_str())
    }

    /// The key of the reverse index of `tag`.
    ///
    /// # Examples
    ///
    /// ```
    /// let layout = matroska_redis::KeyLayout::new("app")?;
    /// let tag = matroska_core::Dep::tag("home").to_tag()?;
    /// assert_eq!(layout.index(&tag), "{app}:t:g:home");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn index(&self, tag: &Tag) -> String {
        self.join("t", tag.as_str())
    }

    /// The key of the namespace's metadata: a hash holding the generation, the housekeeping
    /// cursors and a record per tag (its invalidation stamp, and how long its index and entries
    /// may live).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.meta(), "{app}:meta");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn meta(&self) -> String {
        format!("{}:meta", self.base)
    }

    /// The key of the namespace's state (sequence number, safe mark, generation).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.seq(), "{app}:seq");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn seq(&self) -> String {
        format!("{}:seq", self.base)
    }

    /// The key of the set of indexes set aside and still to reclaim.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.pending(), "{app}:pending");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn pending(&self) -> String {
        format!("{}:pending", self.base)
    }

    /// A `SCAN MATCH` pattern for every key of the namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_redis::KeyLayout::new("app")?.pattern(), "{app}:*");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn pattern(&self) -> String {
        format!("{}:*", self.base)
    }

    fn join(&self, kind: &str, rest: &str) -> String {
        let mut out = String::with_capacity(self.base.len() + kind.len() + rest.len() + 2);
        out.push_str(&self.base);
        out.push(':');
        out.push_str(kind);
        out.push(':');
        out.push_str(rest);
        out
    }
}

impl fmt::Debug for KeyLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.base, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_validated() {
        for good in [
            "a",
            "app",
            "shop:cache",
            "matroska-test:0123abcd",
            "ünïcode",
        ] {
            assert!(KeyLayout::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", " ", "a b", "a\tb", "a\nb", "a\0b", "{a}", "a}", "a*", "a?", "a[b]", "a\\b",
        ] {
            let err = KeyLayout::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidNamespace { .. }), "{bad:?}");
        }
        assert!(KeyLayout::new(&"x".repeat(MAX_PREFIX_LEN)).is_ok());
        assert!(KeyLayout::new(&"x".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn namespaces_never_share_a_key() {
        // Without the braces, prefix "a" with key "e:x" and prefix "a:e" with key "x" would both
        // be "a:e:e:x".
        let a = KeyLayout::new("a").unwrap();
        let ae = KeyLayout::new("a:e").unwrap();
        assert_ne!(
            a.entry(&Key::new("e:x").unwrap()),
            ae.entry(&Key::new("x").unwrap())
        );
        assert_eq!(a.entry(&Key::new("e:x").unwrap()), "{a}:e:e:x");
        assert_eq!(ae.entry(&Key::new("x").unwrap()), "{a:e}:e:x");
    }
}
