//! Dependencies: what a cached entry depends on.

use std::fmt;

use crate::error::{Error, Result};
use crate::tag::{Tag, push_escaped, push_value};
use crate::value::Value;

/// What a cached entry depends on. Invalidating a dependency removes every entry that declared it.
///
/// - [`Dep::id`]: one entity, such as article #5;
/// - [`Dep::tag`]: a free-form signal, such as `"homepage"`;
/// - a scope: the condition of a filtered list (`published = true and category = 'news'`),
///   made only by [`Scopes::condition`](crate::Scopes::condition), so that the writes that
///   [`Scopes::invalidate_for`](crate::Scopes::invalidate_for) reports always match it;
/// - every row of a kind: [`Scopes::any`](crate::Scopes::any), which every write of the kind
///   invalidates;
/// - everything cached about a kind: [`Dep::kind`], which the [`Cache`](crate::Cache) attaches to
///   every entry that depends on an id, a scope or [`Scopes::any`](crate::Scopes::any) of that
///   kind, so that invalidating it drops all of them at once.
///
/// Each dependency has one canonical [`Tag`] (see the [tag module](crate::tag) for the
/// encoding).
///
/// # Examples
///
/// ```
/// use matroska_core::Dep;
///
/// let deps = [Dep::id("article", 5), Dep::id("author", "ann"), Dep::tag("homepage")];
/// let tags: Vec<String> = deps.iter().map(|d| d.to_tag().map(|t| t.to_string())).collect::<Result<_, _>>()?;
/// assert_eq!(tags, ["i:article:5", "i:author:'ann", "g:homepage"]);
/// # Ok::<(), matroska_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dep(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Id {
        kind: String,
        id: Value,
    },
    Tag(String),
    /// Fields sorted by name, names unique.
    Scope {
        kind: String,
        fields: Vec<(String, Value)>,
    },
    AnyOfKind(String),
    AllOfKind(String),
}

impl Dep {
    /// One entity: `kind` (such as `"article"`) with id `id`. Composite ids are tuples.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    ///
    /// assert_eq!(Dep::id("article", 5).to_tag()?.as_str(), "i:article:5");
    /// assert_eq!(Dep::id("order_line", (7, 2)).to_tag()?.as_str(), "i:order_line:(7,2)");
    /// // Integer and text ids are different dependencies.
    /// assert_ne!(Dep::id("article", 5).to_tag()?, Dep::id("article", "5").to_tag()?);
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn id(kind: impl Into<String>, id: impl Into<Value>) -> Self {
        Self(Repr::Id {
            kind: kind.into(),
            id: id.into(),
        })
    }

    /// A free-form signal, invalidated by name.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    ///
    /// assert_eq!(Dep::tag("homepage").to_tag()?.as_str(), "g:homepage");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn tag(name: impl Into<String>) -> Self {
        Self(Repr::Tag(name.into()))
    }

    /// Everything cached about entities of `kind`: the [`Cache`](crate::Cache) attaches this
    /// dependency to every entry that depends on an id, a scope or
    /// [`Scopes::any`](crate::Scopes::any) of the kind. Ordinary writes never invalidate it;
    /// invalidate it when you cannot tell what changed: after a gap in a change feed, a bulk
    /// import, a migration.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::{Cache, Dep, MemoryStore};
    ///
    /// # futures::executor::block_on(async {
    /// let cache = Cache::new(MemoryStore::new());
    /// cache.put("page:5", &"five").dep(Dep::id("article", 5)).await?;
    /// cache.put("home", &"home").dep(Dep::tag("homepage")).await?;
    /// assert_eq!(Dep::kind("article").to_tag()?.as_str(), "a:article");
    /// cache.invalidate([Dep::kind("article")]).await?;
    /// assert_eq!(cache.get::<String>("page:5").await?, None);
    /// assert!(cache.get::<String>("home").await?.is_some());
    /// # Ok::<(), matroska_core::Error>(()) });
    /// ```
    pub fn kind(kind: impl Into<String>) -> Self {
        Self(Repr::AllOfKind(kind.into()))
    }

    /// The entity kind this dependency is about, if any (none for [`Dep::tag`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    ///
    /// assert_eq!(Dep::id("article", 5).entity_kind(), Some("article"));
    /// assert_eq!(Dep::tag("homepage").entity_kind(), None);
    /// ```
    pub fn entity_kind(&self) -> Option<&str> {
        match &self.0 {
            Repr::Id { kind, .. }
            | Repr::Scope { kind, .. }
            | Repr::AnyOfKind(kind)
            | Repr::AllOfKind(kind) => Some(kind),
            Repr::Tag(_) => None,
        }
    }

    /// A scope condition; `fields` need not be sorted. Only [`Scopes`](crate::Scopes) makes these.
    pub(crate) fn scope(kind: impl Into<String>, mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Self(Repr::Scope {
            kind: kind.into(),
            fields,
        })
    }

    /// Every row of a kind.
    pub(crate) fn any_of_kind(kind: impl Into<String>) -> Self {
        Self(Repr::AnyOfKind(kind.into()))
    }

    /// The canonical tag of this dependency.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDep`] if a kind, tag name or field name is empty, or a scope names a field
    /// twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    ///
    /// assert!(Dep::tag("").to_tag().is_err());
    /// // Separator characters are escaped, never confused with structure.
    /// assert_eq!(Dep::tag(":&=").to_tag()?.as_str(), "g:%3A%26%3D");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn to_tag(&self) -> Result<Tag> {
        let mut out = String::with_capacity(32);
        match &self.0 {
            Repr::Id { kind, id } => {
                check_name("kind", kind)?;
                out.push_str("i:");
                push_escaped(&mut out, kind);
                out.push(':');
                push_value(&mut out, id);
            }
            Repr::Tag(name) => {
                check_name("tag name", name)?;
                out.push_str("g:");
                push_escaped(&mut out, name);
            }
            Repr::Scope { kind, fields } => {
                check_name("kind", kind)?;
                out.push_str("s:");
                push_escaped(&mut out, kind);
                out.push(':');
                for (i, (name, value)) in fields.iter().enumerate() {
                    check_name("field name", name)?;
                    if i > 0 {
                        if fields[i - 1].0 == *name {
                            return Err(Error::InvalidDep {
                                reason: format!("field {name:?} is given twice"),
                            });
                        }
                        out.push('&');
                    }
                    push_escaped(&mut out, name);
                    out.push('=');
                    push_value(&mut out, value);
                }
            }
            Repr::AnyOfKind(kind) => {
                check_name("kind", kind)?;
                out.push_str("k:");
                push_escaped(&mut out, kind);
            }
            Repr::AllOfKind(kind) => {
                check_name("kind", kind)?;
                out.push_str("a:");
                push_escaped(&mut out, kind);
            }
        }
        Ok(Tag::from_canonical(out))
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidDep {
            reason: format!("the {what} must not be empty"),
        });
    }
    Ok(())
}

impl fmt::Debug for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Id { kind, id } => f.debug_tuple("Id").field(kind).field(id).finish(),
            Repr::Tag(name) => f.debug_tuple("Tag").field(name).finish(),
            Repr::Scope { kind, fields } => f
                .debug_struct("Scope")
                .field("kind", kind)
                .field("fields", fields)
                .finish(),
            Repr::AnyOfKind(kind) => f.debug_tuple("AnyOfKind").field(kind).finish(),
            Repr::AllOfKind(kind) => f.debug_tuple("AllOfKind").field(kind).finish(),
        }
    }
}

/// Shows the dependency's tag (or, for an invalid dependency, why it is invalid).
///
/// # Examples
///
/// ```
/// use matroska_core::Dep;
///
/// assert_eq!(Dep::id("article", 5).to_string(), "i:article:5");
/// assert_eq!(Dep::tag("").to_string(), "<invalid dependency: the tag name must not be empty>");
/// ```
impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_tag() {
            Ok(tag) => f.write_str(tag.as_str()),
            Err(Error::InvalidDep { reason }) => write!(f, "<invalid dependency: {reason}>"),
            Err(other) => write!(f, "<invalid dependency: {other}>"),
        }
    }
}

/// Turns dependencies into tags, deduplicated, in a stable order.
pub(crate) fn tags_of<'a>(deps: impl IntoIterator<Item = &'a Dep>) -> Result<Vec<Tag>> {
    let mut tags = deps
        .into_iter()
        .map(Dep::to_tag)
        .collect::<Result<Vec<_>>>()?;
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// The tags an entry with these dependencies carries: theirs, plus [`Dep::kind`] of each kind
/// they are about.
pub(crate) fn entry_tags(deps: &[Dep]) -> Result<Vec<Tag>> {
    let mut kinds: Vec<&str> = deps.iter().filter_map(Dep::entity_kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let all = kinds.into_iter().map(Dep::kind).collect::<Vec<_>>();
    let tags = tags_of(deps.iter().chain(&all))?;
    crate::store::check_tags(&tags)?;
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::tag::tests::decode;

    fn tag(dep: &Dep) -> String {
        dep.to_tag().unwrap().to_string()
    }

    #[test]
    fn separators_in_kinds_and_ids_cannot_collide() {
        // The Python original renders both as "id:a:b:1".
        assert_ne!(tag(&Dep::id("a:b", 1)), tag(&Dep::id("a", "b:1")));
        assert_ne!(tag(&Dep::id("a:b", "1")), tag(&Dep::id("a", "b:1")));
    }

    #[test]
    fn separators_in_scope_values_cannot_collide() {
        // The Python original renders both as "condition:t:&a=x&b=y&".
        let one = Dep::scope("t", vec![("a".into(), "x&b=y".into())]);
        let two = Dep::scope(
            "t",
            vec![("a".into(), "x".into()), ("b".into(), "y".into())],
        );
        assert_ne!(tag(&one), tag(&two));
        let eq = Dep::scope("t", vec![("a=b".into(), "c".into())]);
        let eq2 = Dep::scope("t", vec![("a".into(), "b=c".into())]);
        assert_ne!(tag(&eq), tag(&eq2));
    }

    #[test]
    fn null_is_its_own_value() {
        let null = Dep::scope("t", vec![("a".into(), Value::Null)]);
        for other in [
            Value::from("~"),
            Value::from(""),
            Value::from("null"),
            Value::from(0),
        ] {
            assert_ne!(tag(&null), tag(&Dep::scope("t", vec![("a".into(), other)])));
        }
        assert_eq!(tag(&null), "s:t:a=~");
    }

    #[test]
    fn field_order_does_not_matter() {
        let ab = Dep::scope("t", vec![("a".into(), 1.into()), ("b".into(), 2.into())]);
        let ba = Dep::scope("t", vec![("b".into(), 2.into()), ("a".into(), 1.into())]);
        assert_eq!(tag(&ab), tag(&ba));
        assert_eq!(tag(&ab), "s:t:a=1&b=2");
    }

    #[test]
    fn integer_and_string_ids_differ() {
        assert_eq!(tag(&Dep::id("a", 1)), "i:a:1");
        assert_eq!(tag(&Dep::id("a", "1")), "i:a:'1");
        assert_eq!(tag(&Dep::id("a", 1_u64)), tag(&Dep::id("a", 1_i16)));
    }

    #[test]
    fn kinds_of_dependency_never_collide() {
        let deps = [
            Dep::id("a", "b"),
            Dep::tag("a"),
            Dep::tag("a:'b"),
            Dep::any_of_kind("a"),
            Dep::scope("a", vec![]),
            Dep::scope("a", vec![("b".into(), Value::Null)]),
            Dep::kind("a"),
        ];
        let tags: HashSet<String> = deps.iter().map(tag).collect();
        assert_eq!(tags.len(), deps.len(), "{tags:?}");
    }

    #[test]
    fn invalid_names_are_errors() {
        assert!(Dep::id("", 1).to_tag().is_err());
        assert!(Dep::tag("").to_tag().is_err());
        assert!(
            Dep::scope("t", vec![(String::new(), 1.into())])
                .to_tag()
                .is_err()
        );
        let twice = Dep::scope("t", vec![("a".into(), 1.into()), ("a".into(), 2.into())]);
        assert!(twice.to_tag().is_err());
    }

    #[test]
    fn a_tag_made_of_separators_is_valid_and_distinct() {
        let seps = Dep::tag(":&=%#,()");
        let t = tag(&seps);
        assert_eq!(t, "g:%3A%26%3D%25%23%2C%28%29");
        assert_ne!(t, tag(&Dep::tag("%3A%26%3D%25%23%2C%28%29")));
    }

    /// A corpus of awkward values: every pair of distinct dependencies must give distinct tags,
    /// and each tag must decode back to its dependency.
    #[test]
    fn encoding_is_injective_over_a_corpus() {
        let texts = [
            "", "~", "true", "1", "-1", "'", "@1", "a", "a b", "a:b", "a&b", "a=b", "a,b", "(a)",
            "%", "%25", "#", "é", "日本", "\0", "\n", "a'b",
        ];
        let mut values: Vec<Value> = vec![
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i128::from(u64::MAX)),
            Value::Timestamp(0),
            Value::Timestamp(-5),
            Value::Tuple(vec![]),
        ];
        values.extend(texts.iter().map(|t| Value::from(*t)));
        let singles = values.clone();
        for a in singles.iter().take(6) {
            for b in singles.iter().skip(9).take(6) {
                values.push(Value::Tuple(vec![a.clone(), b.clone()]));
                values.push(Value::Tuple(vec![Value::Tuple(vec![a.clone()]), b.clone()]));
            }
        }
        let names = ["a", "b", "a:b", "a&b", "x=y", "%", "é"];
        let mut deps = Vec::new();
        for kind in names {
            for v in &values {
                deps.push(Dep::id(kind, v.clone()));
                for field in names {
                    deps.push(Dep::scope(kind, vec![(field.into(), v.clone())]));
                }
                deps.push(Dep::scope(
                    kind,
                    vec![("f".into(), v.clone()), ("g".into(), v.clone())],
                ));
            }
            deps.push(Dep::tag(kind));
            deps.push(Dep::any_of_kind(kind));
            deps.push(Dep::kind(kind));
            deps.push(Dep::scope(kind, vec![]));
        }
        let mut seen = std::collections::HashMap::new();
        for dep in &deps {
            let t = tag(dep);
            assert!(!t.contains('#'), "unexpectedly hashed: {t}");
            assert_eq!(&decode(&t), dep, "round trip of {t}");
            if let Some(prev) = seen.insert(t.clone(), dep.clone()) {
                assert_eq!(&prev, dep, "collision on {t}");
            }
        }
        assert!(seen.len() > 1000, "corpus too small: {}", seen.len());
    }
}
