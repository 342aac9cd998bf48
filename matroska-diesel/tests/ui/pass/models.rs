use diesel::prelude::*;
use matroska_diesel::{CacheDeps, CacheModel, Dep, ToValue, Value};

diesel::table! {
    posts (id) {
        id -> BigInt,
        status -> Text,
        topic -> Nullable<Text>,
        author_id -> BigInt,
    }
}

diesel::table! {
    post_tags (post_id, tag) {
        post_id -> BigInt,
        tag -> Text,
    }
}

/// A status column mapped to an enum: it needs `ToValue` to be a scope field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Status {
    Draft,
    Live,
}

impl ToValue for Status {
    fn to_value(&self) -> Value {
        Value::from(match self {
            Self::Draft => "draft",
            Self::Live => "live",
        })
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for Status {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        let text = match self {
            Self::Draft => "draft",
            Self::Live => "live",
        };
        <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
            text,
            &mut out.reborrow(),
        )
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for Status {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        match <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg>>::from_sql(bytes)?.as_str() {
            "draft" => Ok(Self::Draft),
            "live" => Ok(Self::Live),
            other => Err(format!("unknown status {other}").into()),
        }
    }
}

#[derive(Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = posts)]
#[matroska(kind = "post", scope(status, topic), scope(author_id))]
pub struct Post {
    pub id: i64,
    pub status: Status,
    pub topic: Option<String>,
    pub author_id: i64,
}

#[derive(Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = post_tags, primary_key(post_id, tag))]
#[matroska(scope(tag))]
pub struct PostTag {
    pub post_id: i64,
    pub tag: String,
}

#[derive(CacheDeps)]
#[matroska(nested(post, tags))]
pub struct PostPage<T> {
    pub post: Post,
    pub tags: Vec<T>,
    pub views: u64,
}

fn main() {
    let post = Post { id: 1, status: Status::Live, topic: None, author_id: 7 };
    let (filter, dep) = Post::scope_status_topic(Status::Live, None).into_parts();
    let _query = posts::table.filter(filter).select(<Post as SelectableHelper<diesel::pg::Pg>>::as_select());
    assert!(Post::cache_scopes().invalidate_for(None, Some(&post), None).contains(&dep));
    let tag = PostTag { post_id: 1, tag: "rust".into() };
    assert_eq!(tag.id_dep(), Dep::id("post_tags", (1, "rust")));
    let page = PostPage { post, tags: vec![tag], views: 0 };
    assert_eq!(page.cache_deps().len(), 2);
    assert_eq!(page.views, 0);
}
