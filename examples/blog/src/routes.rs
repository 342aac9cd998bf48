//! The HTTP handlers. Reads go through the cache; writes through transactions that invalidate
//! what they touched once committed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use diesel::prelude::*;
use matroska_core::{Fetched, Origin};
use matroska_diesel::{CacheModel, Error};
use serde::Serialize;

use crate::app::App;
use crate::error::AppError;
use crate::models::{
    Article, ArticleEdit, ArticlePage, Author, AuthorPage, Move, NewArticle, NewAuthor, Publish,
    Rename,
};
use crate::schema::{articles, authors};

/// The header telling where a read came from.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A cached read as a response: 200 with the value, or 404; `x-cache` says where it came from.
fn cached<T: Serialize>(fetched: Fetched<Option<T>>) -> Response {
    let origin = match fetched.origin {
        Origin::Cache => "hit",
        Origin::Shared => "shared",
        _ => "miss",
    };
    let header = [(X_CACHE, HeaderValue::from_static(origin))];
    match fetched.value {
        Some(value) => (header, Json(value)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            header,
            Json(serde_json::json!({ "error": "not found" })),
        )
            .into_response(),
    }
}

fn non_empty(what: &str, text: &str) -> Result<(), AppError> {
    if text.trim().is_empty() {
        return Err(AppError::BadRequest(format!("{what} must not be empty")));
    }
    Ok(())
}

/// `GET /articles/{id}`: depends on the article (also when it does not exist: creating it
/// invalidates the cached 404) and its author.
pub(crate) async fn article(
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let fetched = app
        .db
        .fetch(
            format!("article:{id}"),
            [Article::dep_for_id(id)],
            move |conn| {
                articles::table
                    .find(id)
                    .inner_join(authors::table)
                    .select((Article::as_select(), Author::as_select()))
                    .first::<(Article, Author)>(conn)
                    .optional()
                    .map(|row| row.map(|(article, author)| ArticlePage { article, author }))
            },
        )
        .await?;
    Ok(cached(fetched))
}

/// `GET /categories/{category}/articles`: the published articles of a category, by id. Depends
/// on its rows and on the scope `(category, published = true)`, which an article entering the
/// list (created, moved, published) invalidates.
pub(crate) async fn category(
    State(app): State<App>,
    Path(category): Path<String>,
) -> Result<Response, AppError> {
    let key = format!("category:{category}");
    let (filter, scope) = Article::scope_category_published(category, true).into_parts();
    let fetched = app
        .db
        .fetch(key, [scope], move |conn| {
            articles::table
                .filter(filter)
                .order(articles::id)
                .select(Article::as_select())
                .load::<Article>(conn)
                .map(Some)
        })
        .await?;
    Ok(cached(fetched))
}

/// `GET /authors/{id}`: the author and their articles. Depends on the author, the articles, and
/// the scope `author_id = id`.
pub(crate) async fn author(
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let (filter, scope) = Article::scope_author_id(id).into_parts();
    let fetched = app
        .db
        .fetch(
            format!("author:{id}"),
            [Author::dep_for_id(id), scope],
            move |conn| {
                let Some(author) = authors::table
                    .find(id)
                    .select(Author::as_select())
                    .first::<Author>(conn)
                    .optional()?
                else {
                    return Ok::<_, diesel::result::Error>(None);
                };
                let articles = articles::table
                    .filter(filter)
                    .order(articles::id)
                    .select(Article::as_select())
                    .load::<Article>(conn)?;
                Ok(Some(AuthorPage { author, articles }))
            },
        )
        .await?;
    Ok(cached(fetched))
}

/// `POST /articles`.
pub(crate) async fn create_article(
    State(app): State<App>,
    Json(new): Json<NewArticle>,
) -> Result<Response, AppError> {
    non_empty("category", &new.category)?;
    non_empty("title", &new.title)?;
    let article = app
        .db
        .transaction(move |tx| tx.insert::<Article, _, _>(articles::table, &new))
        .await?;
    Ok((StatusCode::CREATED, Json(article)).into_response())
}

/// Updates one article, or 404.
async fn update_article<V>(app: &App, id: i64, changes: V) -> Result<Response, AppError>
where
    V: AsChangeset<Target = articles::table> + Clone + Send + 'static,
    V::Changeset: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
    diesel::dsl::Update<diesel::dsl::Find<articles::table, i64>, V>: diesel::query_builder::AsQuery,
    diesel::dsl::Returning<
        diesel::dsl::Update<diesel::dsl::Find<articles::table, i64>, V>,
        diesel::dsl::AsSelect<Article, diesel::pg::Pg>,
    >: diesel::query_builder::Query
        + for<'q> diesel::query_dsl::LoadQuery<'q, PgConnection, Article>,
{
    let article = app
        .db
        .transaction(move |tx| tx.update_by_id::<Article, _, _, _>(articles::table, id, changes))
        .await?;
    Ok(Json(article.ok_or(AppError::NotFound)?).into_response())
}

/// `PATCH /articles/{id}`: title and body are in no scope; this invalidates the article only
/// (its page, and the lists holding it).
pub(crate) async fn edit_article(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(edit): Json<ArticleEdit>,
) -> Result<Response, AppError> {
    if edit.title.is_none() && edit.body.is_none() {
        return Err(AppError::BadRequest("nothing to change".to_owned()));
    }
    if let Some(title) = &edit.title {
        non_empty("title", title)?;
    }
    update_article(&app, id, edit).await
}

/// `POST /articles/{id}/move`: the article leaves its category's scopes and enters the new one's.
pub(crate) async fn move_article(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(Move { category }): Json<Move>,
) -> Result<Response, AppError> {
    non_empty("category", &category)?;
    update_article(&app, id, articles::category.eq(category)).await
}

/// `POST /articles/{id}/publish`.
pub(crate) async fn publish_article(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(Publish { published }): Json<Publish>,
) -> Result<Response, AppError> {
    update_article(&app, id, articles::published.eq(published)).await
}

/// `DELETE /articles/{id}`.
pub(crate) async fn delete_article(
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let deleted = app
        .db
        .transaction(move |tx| tx.delete_by_id::<Article, _, _>(articles::table, id))
        .await?;
    deleted.ok_or(AppError::NotFound)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /authors`: invalidates the author's cached 404, if any.
pub(crate) async fn create_author(
    State(app): State<App>,
    Json(new): Json<NewAuthor>,
) -> Result<Response, AppError> {
    non_empty("name", &new.name)?;
    let author = app
        .db
        .transaction(move |tx| tx.insert::<Author, _, _>(authors::table, &new))
        .await?;
    Ok((StatusCode::CREATED, Json(author)).into_response())
}

/// `PATCH /authors/{id}`: invalidates every page that shows the author.
pub(crate) async fn rename_author(
    State(app): State<App>,
    Path(id): Path<i64>,
    Json(Rename { name }): Json<Rename>,
) -> Result<Response, AppError> {
    non_empty("name", &name)?;
    let author = app
        .db
        .transaction(move |tx| {
            tx.update_by_id::<Author, _, _, _>(authors::table, id, authors::name.eq(name))
        })
        .await?;
    Ok(Json(author.ok_or(AppError::NotFound)?).into_response())
}

/// `POST /categories/{category}/unpublish`: one bulk update; every row leaves
/// `(category, true)` and enters `(category, false)`.
pub(crate) async fn unpublish_category(
    State(app): State<App>,
    Path(category): Path<String>,
) -> Result<Response, AppError> {
    let updated = app
        .db
        .transaction(move |tx| {
            let target = articles::table.filter(articles::category.eq(category));
            let rows = tx.update::<Article, _, _>(target, articles::published.eq(false))?;
            Ok::<_, Error>(rows.len())
        })
        .await?;
    Ok(Json(serde_json::json!({ "updated": updated })).into_response())
}
