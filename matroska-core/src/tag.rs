//! Tags: the canonical strings that stores index.
//!
//! # The encoding
//!
//! Every [`Dep`](crate::Dep) has exactly one tag, and no two different dependencies share one (the
//! encoding is injective; the unit tests parse tags back into dependencies to prove it). The
//! grammar:
//!
//! ```text
//! tag    = id | free | scope | any | all
//! id     = "i:" name ":" value                      Dep::id("article", 5)       i:article:5
//! free   = "g:" name                                Dep::tag("homepage")        g:homepage
//! scope  = "s:" name ":" [field *("&" field)]        category = news, published  s:article:category='news&published=true
//! any    = "k:" name                                Scopes::any()               k:article
//! all    = "a:" name                                Dep::kind("article")        a:article
//! field  = name "=" value                           fields sorted by name (byte order)
//! value  = "~"                                      NULL / None
//!        | "true" | "false"
//!        | ["-"] digits                             any integer type
//!        | "'" name                                 text (escaped like a name)
//!        | "@" ["-"] digits                         timestamp, microseconds since the Unix epoch
//!        | "(" [value *("," value)] ")"             tuple (composite id)
//! name   = text in which each of  % : & = , ( ) #  and NUL is written %XX (two upper-case hex
//!          digits of its byte), every other character as itself
//! ```
//!
//! A tag longer than [`Tag::HASH_THRESHOLD`] bytes is replaced by its first
//! [`Tag::READABLE_PREFIX`] characters, `#`, and the lower-case hex SHA-256 of the whole tag. `#`
//! never appears in an unhashed tag, so hashed and unhashed tags cannot collide (short of a
//! SHA-256 collision). The PostgreSQL triggers of `matroska-postgres` compute the same bytes in
//! SQL.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::value::Value;

mod decode;

pub use self::decode::Decoded;

/// The canonical string of a [`Dep`](crate::Dep): the only thing stores index.
///
/// Get one from [`Dep::to_tag`](crate::Dep::to_tag); [`Tag::parse`] accepts a tag that arrived as
/// text (from a PostgreSQL NOTIFY payload, for example). Cloning is cheap.
///
/// # Examples
///
/// ```
/// use matroska_core::{Dep, Tag};
///
/// let tag = Dep::id("article", 5).to_tag()?;
/// assert_eq!(tag.as_str(), "i:article:5");
/// assert_eq!(Tag::parse("i:article:5")?, tag);
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Arc<str>);

impl Tag {
    /// Tags longer than this many bytes are hashed.
    pub const HASH_THRESHOLD: usize = 200;
    /// How many characters of a hashed tag stay readable.
    pub const READABLE_PREFIX: usize = 64;

    /// Accepts a tag given as text, checking that it has the shape of a canonical tag.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDep`] if the text is not a tag this crate could have produced (unknown
    /// prefix, too long, NUL characters).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Tag;
    ///
    /// assert!(Tag::parse("s:article:category='news").is_ok());
    /// assert!(Tag::parse("article 5").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidDep {
            reason: format!("{text:?} is not a tag: {reason}"),
        };
        if !["i:", "g:", "s:", "k:", "a:"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
        {
            return Err(bad("it must start with i:, g:, s:, k: or a:"));
        }
        if text.len() <= 2 {
            return Err(bad("the name is empty"));
        }
        if text.contains('\0') {
            return Err(bad("it contains NUL"));
        }
        let max = Self::READABLE_PREFIX * 4 + 1 + 64;
        if text.len() > Self::HASH_THRESHOLD && !(text.len() <= max && is_hashed(text)) {
            return Err(bad("it is too long to be a canonical tag"));
        }
        Ok(Self(text.into()))
    }

    /// The tag as text.
    ///
    /// # Examples
    ///
    /// ```
    /// let tag = matroska_core::Dep::tag("homepage").to_tag()?;
    /// assert_eq!(tag.as_str(), "g:homepage");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag of [`Dep::kind`](crate::Dep::kind) for the entity kind this tag is about (the
    /// `a:<kind>` that the [`Cache`](crate::Cache) attaches to entries carrying this tag), or
    /// `None` for a free tag ([`Dep::tag`](crate::Dep::tag)) and for a hashed tag whose readable
    /// prefix cut the kind short.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Tag};
    ///
    /// let id = Dep::id("article", 5).to_tag()?;
    /// assert_eq!(id.kind_tag(), Some(Dep::kind("article").to_tag()?));
    /// assert_eq!(Dep::tag("homepage").to_tag()?.kind_tag(), None);
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn kind_tag(&self) -> Option<Self> {
        let text = self.as_str();
        let kind = match (text.get(..2)?, text.get(2..)?) {
            ("i:" | "s:", rest) => rest.split_once(':')?.0,
            ("k:" | "a:", rest) => rest,
            _ => return None,
        };
        // `#` is always escaped inside names: here it means hashing cut the kind short.
        if kind.is_empty() || kind.contains('#') {
            return None;
        }
        // The kind is already escaped: the a: tag is built from it as is.
        Some(Self::from_canonical(format!("a:{kind}")))
    }

    /// Finishes a canonical string: hashes it when it is too long.
    pub(crate) fn from_canonical(canonical: String) -> Self {
        if canonical.len() <= Self::HASH_THRESHOLD {
            return Self(canonical.into());
        }
        let mut hashed: String = canonical.chars().take(Self::READABLE_PREFIX).collect();
        hashed.push('#');
        for byte in Sha256::digest(canonical.as_bytes()) {
            let _ = write!(hashed, "{byte:02x}");
        }
        Self(hashed.into())
    }
}

fn is_hashed(text: &str) -> bool {
    text.rsplit_once('#').is_some_and(|(_, hex)| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Characters that must be escaped inside names and text values.
const RESERVED: &[char] = &['%', ':', '&', '=', ',', '(', ')', '#', '\0'];

/// A name or text value as tags write it: each of `% : & = , ( ) #` and NUL as `%XX`, every
/// other character as itself (for code that builds tags elsewhere, such as SQL generators).
///
/// # Examples
///
/// ```
/// assert_eq!(matroska_core::tag::escape("a:b(1)"), "a%3Ab%281%29");
/// ```
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_escaped(&mut out, name);
    out
}

/// Appends `name` with the reserved characters escaped.
pub(crate) fn push_escaped(out: &mut String, name: &str) {
    for c in name.chars() {
        if RESERVED.contains(&c) {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// Appends the canonical form of `value`.
pub(crate) fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push('~'),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Text(text) => {
            out.push('\'');
            push_escaped(out, text);
        }
        Value::Timestamp(micros) => {
            let _ = write!(out, "@{micros}");
        }
        Value::Tuple(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(')');
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dep::Dep;

    /// Parses an unhashed tag back into the dependency it encodes, through the public
    /// [`Tag::decode`]: the proof of injectivity (a function with a left inverse is injective).
    pub(crate) fn decode(tag: &str) -> Dep {
        let decoded = Tag::parse(tag)
            .and_then(|t| t.decode())
            .unwrap_or_else(|e| panic!("{e}"));
        match decoded {
            Decoded::Id { kind, id } => Dep::id(kind, id),
            Decoded::Free { name } => Dep::tag(name),
            Decoded::AnyOfKind { kind } => Dep::any_of_kind(kind),
            Decoded::Kind { kind } => Dep::kind(kind),
            Decoded::Scope { kind, fields } => Dep::scope(kind, fields),
        }
    }

    #[test]
    fn escaping_covers_every_reserved_character() {
        let mut out = String::new();
        push_escaped(&mut out, "a%b:c&d=e,f(g)h#i\0j");
        assert_eq!(out, "a%25b%3Ac%26d%3De%2Cf%28g%29h%23i%00j");
        let tag = Tag::parse(&format!("g:{out}")).unwrap();
        assert_eq!(
            tag.decode().unwrap(),
            Decoded::Free {
                name: "a%b:c&d=e,f(g)h#i\0j".to_owned()
            }
        );
    }

    #[test]
    fn long_tags_are_hashed_with_a_readable_prefix() {
        let long = Dep::id("article", "x".repeat(500)).to_tag().unwrap();
        assert!(long.as_str().starts_with("i:article:'xxx"));
        assert_eq!(long.as_str().len(), Tag::READABLE_PREFIX + 1 + 64);
        assert!(is_hashed(long.as_str()));
        assert_eq!(Tag::parse(long.as_str()).unwrap(), long);
        // Different long values hash differently even with the same readable prefix.
        let other = Dep::id("article", format!("{}y", "x".repeat(499)))
            .to_tag()
            .unwrap();
        assert_ne!(long, other);
        // A tag exactly at the threshold is not hashed.
        let name = "n".repeat(Tag::HASH_THRESHOLD - 2);
        let at = Dep::tag(name.clone()).to_tag().unwrap();
        assert_eq!(at.as_str(), format!("g:{name}"));
    }

    #[test]
    fn kind_tags_of_every_kind_of_tag() {
        let all = |k: &str| Dep::kind(k).to_tag().unwrap();
        let scope = Dep::scope("article", vec![("category".into(), "news".into())]);
        for (dep, kind) in [
            (Dep::id("article", 5), Some(all("article"))),
            (scope, Some(all("article"))),
            (Dep::any_of_kind("order:line"), Some(all("order:line"))),
            (Dep::kind("author"), Some(all("author"))),
            (Dep::id("article", "x".repeat(500)), Some(all("article"))),
            (Dep::tag("homepage"), None),
            (Dep::kind("k".repeat(300)), None),
        ] {
            assert_eq!(dep.to_tag().unwrap().kind_tag(), kind, "{dep:?}");
        }
    }

    #[test]
    fn parse_rejects_text_that_is_not_a_tag() {
        for bad in ["", "x:1", "i:", "article:5", "g:a\0", &"g:".repeat(200)] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }
}
