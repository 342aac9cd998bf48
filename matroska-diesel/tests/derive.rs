//! The derives, without a database: kinds, ids (composite too), scopes, filters, nested deps.

// Models have columns the tests never read.
#![allow(dead_code)]

use diesel::pg::Pg;
use diesel::prelude::*;
use matroska_diesel::{CacheDeps, CacheModel, Dep, Value};

mod schema {
    diesel::table! {
        articles (id) {
            id -> BigInt,
            author_id -> BigInt,
            category -> Nullable<Text>,
            published -> Bool,
            title -> Text,
        }
    }

    diesel::table! {
        authors (id) {
            id -> BigInt,
            name -> Text,
        }
    }

    diesel::table! {
        order_lines (order_id, line) {
            order_id -> Integer,
            line -> Integer,
            #[sql_name = "type"]
            kind -> Text,
        }
    }
}

use schema::{articles, authors, order_lines};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = articles)]
#[matroska(kind = "article", scope(category, published), scope(author_id))]
struct Article {
    id: i64,
    author_id: i64,
    category: Option<String>,
    published: bool,
    title: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = authors)]
struct Author {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = order_lines, primary_key(order_id, line))]
#[matroska(scope(kind))]
struct OrderLine {
    order_id: i32,
    line: i32,
    kind: String,
}

/// An article row joined with its author, loaded in one query.
#[derive(Debug, Queryable, Selectable, Identifiable, CacheModel)]
#[diesel(table_name = articles)]
#[matroska(kind = "article", nested(author))]
struct ArticleWithAuthor {
    id: i64,
    title: String,
    #[diesel(embed)]
    author: Author,
}

/// A page: an author and their articles.
#[derive(Debug, CacheDeps)]
#[matroska(nested(author, articles))]
struct AuthorPage {
    author: Author,
    articles: Vec<Article>,
    views: u64,
}

fn article(id: i64, author_id: i64, category: Option<&str>, published: bool) -> Article {
    Article {
        id,
        author_id,
        category: category.map(Into::into),
        published,
        title: format!("title {id}"),
    }
}

#[test]
fn kinds_default_to_the_table_name() {
    assert_eq!(Article::KIND, "article");
    assert_eq!(Author::KIND, "authors");
    assert_eq!(OrderLine::KIND, "order_lines");
    assert_eq!(Author::PRIMARY_KEY, ["id"]);
    assert_eq!(OrderLine::PRIMARY_KEY, ["order_id", "line"]);
}

#[test]
fn ids_come_from_identifiable_including_composite_keys() {
    let a = article(5, 1, Some("news"), true);
    assert_eq!(a.id_dep(), Dep::id("article", 5));
    assert_eq!(Article::dep_for_id(5_i32), a.id_dep());
    let line = OrderLine {
        order_id: 7,
        line: 2,
        kind: "book".into(),
    };
    assert_eq!(line.id_dep(), Dep::id("order_lines", (7, 2)));
    assert_eq!(line.id_dep().to_string(), "i:order_lines:(7,2)");
    assert_eq!(OrderLine::dep_for_id((7, 2)), line.id_dep());
}

#[test]
fn scope_filters_and_writes_agree() {
    let scopes = Article::cache_scopes();
    assert_eq!(scopes.kind(), "article");
    let sets: Vec<Vec<String>> = scopes.field_sets().map(<[String]>::to_vec).collect();
    assert_eq!(sets, [vec!["category", "published"], vec!["author_id"]]);

    let old = article(1, 3, Some("tech"), true);
    let new = Article {
        category: Some("news".into()),
        ..old.clone()
    };
    let touched = scopes.invalidate_for(Some(&old), Some(&new), Some(&["category"]));
    let left = Article::scope_category_published(Some("tech".to_owned()), true);
    let entered = Article::scope_category_published(Some("news".to_owned()), true);
    assert!(touched.contains(left.dep()));
    assert!(touched.contains(entered.dep()));
    assert!(touched.contains(&Dep::id("article", 1)));
    // author_id was not modified.
    assert!(!touched.contains(Article::scope_author_id(3).dep()));
    // An insert touches every scope of the new row.
    let inserted = scopes.invalidate_for(None, Some(&new), None);
    assert!(inserted.contains(Article::scope_author_id(3_i32).dep()));
    // NULL is a value of its own.
    let null = article(2, 3, None, false);
    let touched = scopes.invalidate_for(None, Some(&null), None);
    assert!(touched.contains(Article::scope_category_published(None, false).dep()));
}

#[test]
fn scope_filters_render_as_expected() {
    let (filter, dep) =
        Article::scope_category_published(Some("news".to_owned()), true).into_parts();
    assert_eq!(dep.to_string(), "s:article:category='news&published=true");
    let query = articles::table.filter(filter).select(articles::id);
    assert_eq!(
        diesel::debug_query::<Pg, _>(&query).to_string(),
        "SELECT \"articles\".\"id\" FROM \"articles\" WHERE ((\"articles\".\"category\" IS NOT \
         DISTINCT FROM $1) AND (\"articles\".\"published\" = $2)) -- binds: [Some(\"news\"), true]"
    );
    let renamed = OrderLine::scope_kind("book");
    assert_eq!(renamed.dep().to_string(), "s:order_lines:kind='book");
    let query = order_lines::table
        .filter(renamed.filter().clone())
        .select(order_lines::line);
    assert!(
        diesel::debug_query::<Pg, _>(&query)
            .to_string()
            .contains("\"order_lines\".\"type\" = $1"),
    );
}

#[test]
fn watched_columns() {
    assert!(Article::watches("category"));
    assert!(Article::watches("published"));
    assert!(Article::watches("author_id"));
    assert!(Article::watches("id"));
    assert!(!Article::watches("title"));
    assert!(OrderLine::watches("line"));
}

#[test]
fn deps_of_results_are_deduplicated_and_follow_nested_relations() {
    let ada = Author {
        id: 1,
        name: "Ada".into(),
    };
    let rows = vec![
        ArticleWithAuthor {
            id: 10,
            title: "a".into(),
            author: ada.clone(),
        },
        ArticleWithAuthor {
            id: 11,
            title: "b".into(),
            author: ada.clone(),
        },
    ];
    assert_eq!(
        rows.cache_deps(),
        [
            Dep::id("article", 10),
            Dep::id("authors", 1),
            Dep::id("article", 11)
        ]
    );
    let page = AuthorPage {
        author: ada.clone(),
        articles: vec![article(3, 1, None, true), article(4, 1, None, false)],
        views: 0,
    };
    assert_eq!(page.views, 0);
    assert_eq!(
        page.cache_deps(),
        [
            Dep::id("authors", 1),
            Dep::id("article", 3),
            Dep::id("article", 4)
        ]
    );
    // A join result: a Vec of tuples, and an optional side.
    let joined: Vec<(Article, Option<Author>)> = vec![
        (article(3, 1, None, true), Some(ada)),
        (article(5, 9, None, true), None),
    ];
    assert_eq!(joined.cache_deps().len(), 3);
    assert_eq!(Value::from(5), matroska_diesel::ToValue::to_value(&5_i64));
}
