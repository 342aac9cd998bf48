//! # A blog on axum + Diesel + PostgreSQL, cached with Matroska
//!
//! ```text
//! cargo run -p matroska-blog -- --database-url postgres://postgres@127.0.0.1:5432/postgres
//! cargo run -p matroska-blog -- --redis redis://127.0.0.1:6379     # the cache on Redis
//! ```
//!
//! Article pages, the published articles of a category, an author's page with their articles;
//! create, edit, move, publish, delete, rename an author, unpublish a category. Every read goes
//! through the cache (`x-cache: hit | miss | shared`), every write through a transaction that
//! invalidates exactly what it touched once it has committed: the models declare their scopes
//! with `#[derive(CacheModel)]`, and the write helpers of `matroska-diesel` compute the rest.
//! Its integration tests drive it over HTTP: `tests/http.rs` checks every response against the
//! database, `tests/listen.rs` that plain-SQL writes reach the cache with `--listen`. The
//! README has the walkthrough.

mod app;
mod capture;
mod config;
mod error;
mod metrics;
mod models;
mod routes;
pub mod schema;

pub use crate::app::{App, Db};
pub use crate::config::{Config, USAGE};
pub use crate::error::{AppError, SetupError};
pub use crate::models::{
    Article, ArticleEdit, ArticlePage, Author, AuthorPage, Move, NewArticle, NewAuthor, Publish,
    Rename,
};
pub use crate::routes::X_CACHE;
