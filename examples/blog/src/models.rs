//! The models, what the cache knows about them, and the pages the app serves.

use diesel::prelude::*;
use matroska_diesel::{CacheDeps, CacheModel};
use serde::{Deserialize, Serialize};

use crate::schema::{articles, authors};

/// An author. Pages that show an author depend on their id.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Queryable,
    Selectable,
    Identifiable,
    CacheModel,
    Serialize,
    Deserialize,
)]
#[diesel(table_name = authors, check_for_backend(diesel::pg::Pg))]
#[matroska(kind = "author")]
pub struct Author {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
}

/// An article. Lists are filtered by category and published flag, and by author: those are its
/// scopes.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Queryable,
    Selectable,
    Identifiable,
    CacheModel,
    Serialize,
    Deserialize,
)]
#[diesel(table_name = articles, check_for_backend(diesel::pg::Pg))]
#[matroska(kind = "article", scope(category, published), scope(author_id))]
pub struct Article {
    /// Primary key.
    pub id: i64,
    /// The author.
    pub author_id: i64,
    /// The category it is listed in.
    pub category: String,
    /// Whether it appears in its category's list.
    pub published: bool,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
}

/// The body of `POST /articles`.
#[derive(Debug, Clone, Deserialize, Serialize, Insertable)]
#[diesel(table_name = articles)]
pub struct NewArticle {
    /// The author (must exist).
    pub author_id: i64,
    /// The category.
    pub category: String,
    /// Whether it is published.
    pub published: bool,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
}

/// The body of `PATCH /articles/{id}`: the fields to change.
#[derive(Debug, Clone, Default, Deserialize, Serialize, AsChangeset)]
#[diesel(table_name = articles)]
pub struct ArticleEdit {
    /// A new title.
    pub title: Option<String>,
    /// A new body.
    pub body: Option<String>,
}

/// The body of `POST /articles/{id}/move`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Move {
    /// The new category.
    pub category: String,
}

/// The body of `POST /articles/{id}/publish`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Publish {
    /// Published or not.
    pub published: bool,
}

/// The body of `POST /authors`.
#[derive(Debug, Clone, Deserialize, Serialize, Insertable)]
#[diesel(table_name = authors)]
pub struct NewAuthor {
    /// Display name.
    pub name: String,
}

/// The body of `PATCH /authors/{id}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Rename {
    /// The new name.
    pub name: String,
}

/// `GET /articles/{id}`: the article and its author. Depends on both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CacheDeps)]
#[matroska(nested(article, author))]
pub struct ArticlePage {
    /// The article.
    pub article: Article,
    /// Its author.
    pub author: Author,
}

/// `GET /authors/{id}`: the author and all their articles, by id. Depends on the author, the
/// articles, and the scope `author_id = id` (an article the author writes enters it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CacheDeps)]
#[matroska(nested(author, articles))]
pub struct AuthorPage {
    /// The author.
    pub author: Author,
    /// Their articles, by id.
    pub articles: Vec<Article>,
}
