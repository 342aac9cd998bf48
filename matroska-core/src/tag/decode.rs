//! Reading a tag back into what it names: the left inverse of the encoding (so also its proof of
//! injectivity, see the round-trip tests in `dep.rs`).

use crate::error::{Error, Result};
use crate::value::Value;

use super::{RESERVED, Tag, is_hashed};

/// What a [`Tag`] names, read back from its text by [`Tag::decode`]: for an event handler that
/// acts on the rows a change touched.
///
/// # Examples
///
/// ```
/// use matroska_core::{Dep, Value, tag::Decoded};
///
/// let tag = Dep::id("article", 5).to_tag()?;
/// assert_eq!(
///     tag.decode()?,
///     Decoded::Id { kind: "article".into(), id: Value::Int(5) }
/// );
/// assert_eq!(tag.decode()?.kind(), Some("article"));
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decoded {
    /// `i:` one entity, [`Dep::id`](crate::Dep::id): its kind and id (a [`Value::Tuple`] for a
    /// composite id).
    Id {
        /// The entity kind.
        kind: String,
        /// The id.
        id: Value,
    },
    /// `g:` a free tag, [`Dep::tag`](crate::Dep::tag).
    Free {
        /// The tag's name.
        name: String,
    },
    /// `s:` a scope (a list query's field values), as [`Scopes`](crate::Scopes) describe them.
    Scope {
        /// The entity kind.
        kind: String,
        /// The fields and their values, sorted by field name.
        fields: Vec<(String, Value)>,
    },
    /// `k:` any entity of the kind, [`Scopes::any`](crate::Scopes::any).
    AnyOfKind {
        /// The entity kind.
        kind: String,
    },
    /// `a:` everything about the kind, [`Dep::kind`](crate::Dep::kind).
    Kind {
        /// The entity kind.
        kind: String,
    },
}

impl Decoded {
    /// The entity kind, for every tag but a free one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::Id { kind, .. }
            | Self::Scope { kind, .. }
            | Self::AnyOfKind { kind }
            | Self::Kind { kind } => Some(kind),
            Self::Free { .. } => None,
        }
    }
}

impl Tag {
    /// What the tag names.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDep`] for a hashed tag (longer than [`Tag::HASH_THRESHOLD`] bytes when
    /// encoded: only its first [`Tag::READABLE_PREFIX`] characters are kept, so it cannot be read
    /// back; its kind may still be had from [`Tag::kind_tag`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Dep, Tag, Value, tag::Decoded};
    ///
    /// // As a capture trigger sends it for a row in category "news", published.
    /// let scope = Tag::parse("s:article:category='news&published=true")?;
    /// assert_eq!(
    ///     scope.decode()?,
    ///     Decoded::Scope {
    ///         kind: "article".into(),
    ///         fields: vec![("category".into(), Value::Text("news".into())), ("published".into(), Value::Bool(true))],
    ///     }
    /// );
    /// assert!(Dep::id("a", "x".repeat(300)).to_tag()?.decode().is_err());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn decode(&self) -> Result<Decoded> {
        let text = self.as_str();
        let bad = |reason: &str| Error::InvalidDep {
            reason: format!("tag {text:?} cannot be decoded: {reason}"),
        };
        if is_hashed(text) {
            return Err(bad("it is hashed (too long to keep whole)"));
        }
        let (prefix, rest) = (text.get(..2).unwrap_or(""), text.get(2..).unwrap_or(""));
        let decoded = match prefix {
            "i:" => {
                let (kind, value) = rest.split_once(':').ok_or_else(|| bad("no id"))?;
                let mut p = Parser(value);
                let id = p.value().map_err(&bad)?;
                if !p.0.is_empty() {
                    return Err(bad("text after the id"));
                }
                Decoded::Id {
                    kind: unescape(kind).map_err(&bad)?,
                    id,
                }
            }
            "g:" => Decoded::Free {
                name: unescape(rest).map_err(&bad)?,
            },
            "k:" => Decoded::AnyOfKind {
                kind: unescape(rest).map_err(&bad)?,
            },
            "a:" => Decoded::Kind {
                kind: unescape(rest).map_err(&bad)?,
            },
            "s:" => {
                let (kind, list) = rest.split_once(':').ok_or_else(|| bad("no fields"))?;
                let mut fields = Vec::new();
                if !list.is_empty() {
                    for field in list.split('&') {
                        let (name, value) = field
                            .split_once('=')
                            .ok_or_else(|| bad("a field without '='"))?;
                        let mut p = Parser(value);
                        let value = p.value().map_err(&bad)?;
                        if !p.0.is_empty() {
                            return Err(bad("text after a field's value"));
                        }
                        fields.push((unescape(name).map_err(&bad)?, value));
                    }
                }
                Decoded::Scope {
                    kind: unescape(kind).map_err(&bad)?,
                    fields,
                }
            }
            _ => return Err(bad("unknown prefix")),
        };
        Ok(decoded)
    }
}

/// A name or text value with its `%XX` escapes undone.
fn unescape(text: &str) -> std::result::Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a bad %XX escape")?;
            out.push(byte);
            i += 3;
        } else {
            if RESERVED.contains(&char::from(bytes[i])) {
                return Err("a reserved character not escaped");
            }
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escapes that are not UTF-8")
}

/// Reads values off the front of the text.
struct Parser<'a>(&'a str);

impl Parser<'_> {
    fn atom(&mut self) -> &str {
        let end = self.0.find([',', ')', '&']).unwrap_or(self.0.len());
        let (head, tail) = self.0.split_at(end);
        self.0 = tail;
        head
    }

    fn value(&mut self) -> std::result::Result<Value, &'static str> {
        if let Some(rest) = self.0.strip_prefix('(') {
            self.0 = rest;
            let mut items = Vec::new();
            if let Some(rest) = self.0.strip_prefix(')') {
                self.0 = rest;
                return Ok(Value::Tuple(items));
            }
            loop {
                items.push(self.value()?);
                if let Some(rest) = self.0.strip_prefix(',') {
                    self.0 = rest;
                } else {
                    self.0 = self
                        .0
                        .strip_prefix(')')
                        .ok_or("a tuple that does not close")?;
                    return Ok(Value::Tuple(items));
                }
            }
        }
        let atom = self.atom();
        Ok(match atom {
            "~" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                if let Some(text) = atom.strip_prefix('\'') {
                    Value::Text(unescape(text)?)
                } else if let Some(micros) = atom.strip_prefix('@') {
                    Value::Timestamp(micros.parse().map_err(|_| "a bad timestamp")?)
                } else {
                    Value::Int(atom.parse().map_err(|_| "a value that is not one")?)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dep;

    #[test]
    fn every_kind_of_tag_decodes() {
        let cases = [
            (
                Dep::tag("home:page&x"),
                Decoded::Free {
                    name: "home:page&x".into(),
                },
            ),
            (
                Dep::kind("order:line"),
                Decoded::Kind {
                    kind: "order:line".into(),
                },
            ),
            (
                Dep::any_of_kind("article"),
                Decoded::AnyOfKind {
                    kind: "article".into(),
                },
            ),
            (
                Dep::id(
                    "line",
                    Value::Tuple(vec![
                        Value::Int(-7),
                        Value::Text("a,b)".into()),
                        Value::Null,
                    ]),
                ),
                Decoded::Id {
                    kind: "line".into(),
                    id: Value::Tuple(vec![
                        Value::Int(-7),
                        Value::Text("a,b)".into()),
                        Value::Null,
                    ]),
                },
            ),
            (
                Dep::id("event", Value::Timestamp(-5)),
                Decoded::Id {
                    kind: "event".into(),
                    id: Value::Timestamp(-5),
                },
            ),
            (
                Dep::scope("article", Vec::new()),
                Decoded::Scope {
                    kind: "article".into(),
                    fields: Vec::new(),
                },
            ),
        ];
        for (dep, expected) in cases {
            assert_eq!(dep.to_tag().unwrap().decode().unwrap(), expected, "{dep:?}");
        }
    }

    #[test]
    fn damaged_or_hashed_tags_are_errors_not_panics() {
        for text in [
            "i:a:",
            "i:a:(1",
            "i:a:1)",
            "s:a:f",
            "i:a:%2",
            "i:a:'%FF",
            "s:a:x=1=2",
        ] {
            let Ok(tag) = Tag::parse(text) else { continue };
            assert!(tag.decode().is_err(), "{text}");
        }
        let hashed = Dep::tag("x".repeat(300)).to_tag().unwrap();
        assert!(hashed.decode().unwrap_err().to_string().contains("hashed"));
    }
}
