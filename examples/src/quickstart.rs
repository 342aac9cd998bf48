//! The quickstart's scenario: a small blog (articles and authors, in memory) read through a
//! [`Cache`] on any store. `examples/quickstart.rs` runs it on the [`MemoryStore`](matroska_core::MemoryStore);
//! `quickstart_redis` (in matroska-redis) and `quickstart_postgres` (in matroska-postgres) on the
//! other stores.
//!
//! - an **article page** (`page:<id>`, the article with its author's name), which depends on the
//!   article and on its author: `Dep::id("article", id)` and `Dep::id("author", author_id)`;
//! - the **list of the published articles of a category** (`list:<category>`), which depends on
//!   the ids of its rows *and* on its filter, `Scopes::condition([("category", ..), ("published",
//!   true)])`, so that a row *entering* the list invalidates it too, not only rows already in it.
//!
//! Both are read with `fetch` (`get_or_insert_with` that also says whether the value was a hit):
//! the loader (the database query) runs only on a miss, and returns the value with its
//! dependencies. Every write changes the data, then invalidates what it touched, as computed by
//! `Scopes::invalidate_for(old, new, modified)`.
//!
//! The scenario prints each read (hit, or miss and load) and each invalidation, and checks that
//! every read returns what the database holds and that each write invalidated exactly the entries
//! it should; otherwise it returns an error, so it doubles as an end-to-end check.

// Printing is the point of an example.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt;

use matroska_core::{Cache, Dep, Fetched, Loaded, Scopes, Store};
use serde::{Deserialize, Serialize};

/// The scenario's result: any error, boxed.
pub type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// A row of the `articles` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Article {
    id: i64,
    author_id: i64,
    category: String,
    published: bool,
    title: String,
    body: String,
}

/// A row of the `authors` table.
#[derive(Debug, Clone)]
struct Author {
    id: i64,
    name: String,
}

/// A cached article page: the article and its author's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Page {
    article: Article,
    author: String,
}

/// A cached list: the published articles of a category (id and title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct List(Vec<(i64, String)>);

/// The "database". In an application these are SQL tables and queries.
#[derive(Debug, Default)]
struct Db {
    articles: BTreeMap<i64, Article>,
    authors: BTreeMap<i64, Author>,
}

impl Db {
    fn seed() -> Self {
        let mut db = Self::default();
        for (id, name) in [(1, "Ada"), (2, "Grace")] {
            db.authors.insert(
                id,
                Author {
                    id,
                    name: name.into(),
                },
            );
        }
        for article in [
            article(1, 1, "rust", "Ownership explained"),
            article(2, 2, "rust", "Async in practice"),
            article(3, 1, "databases", "Indexes"),
            article(4, 2, "databases", "Isolation levels"),
        ] {
            db.articles.insert(article.id, article);
        }
        db
    }

    fn article(&self, id: i64) -> Result<&Article, String> {
        self.articles.get(&id).ok_or(format!("no article {id}"))
    }

    /// `SELECT articles.*, authors.name FROM articles JOIN authors ... WHERE articles.id = $1`
    fn page(&self, id: i64) -> Result<Page, String> {
        let article = self.article(id)?.clone();
        let author = self
            .authors
            .get(&article.author_id)
            .ok_or("no author")?
            .name
            .clone();
        Ok(Page { article, author })
    }

    /// `SELECT id, title FROM articles WHERE category = $1 AND published ORDER BY id`
    fn published_in(&self, category: &str) -> List {
        let rows = self
            .articles
            .values()
            .filter(|a| a.category == category && a.published);
        List(rows.map(|a| (a.id, a.title.clone())).collect())
    }
}

fn article(id: i64, author_id: i64, category: &str, title: &str) -> Article {
    let (category, title, body) = (category.into(), title.into(), format!("{title}..."));
    Article {
        id,
        author_id,
        category,
        published: true,
        title,
        body,
    }
}

/// The application: the database, the cache, and the scopes of each entity kind.
struct Blog<S: Store> {
    db: Db,
    cache: Cache<S>,
    article_scopes: Scopes<Article>,
    author_scopes: Scopes<Author>,
}

/// The keys every round of reads goes through.
const PAGES: [i64; 4] = [1, 2, 3, 4];
const CATEGORIES: [&str; 2] = ["rust", "databases"];

impl<S: Store> Blog<S> {
    fn new(cache: Cache<S>) -> Self {
        Self {
            db: Db::seed(),
            cache,
            // Declared once per kind: a row's id, and the field sets that cached lists filter by.
            article_scopes: Scopes::new("article")
                .id(|a: &Article| a.id)
                .describe(["category", "published"], |a: &Article| {
                    (a.category.clone(), a.published)
                })
                .fields(&["id", "author_id", "title", "body"]),
            author_scopes: Scopes::new("author")
                .id(|a: &Author| a.id)
                .fields(&["id", "name"]),
        }
    }

    // --- Reads: through the cache; the loader runs only on a miss. ---

    async fn page(&self, id: i64) -> Result<Fetched<Page>> {
        let db = &self.db;
        let page = self
            .cache
            .fetch(format!("page:{id}"), || async move {
                let page = db.page(id)?;
                let (id, author_id) = (page.article.id, page.article.author_id);
                let deps = [Dep::id("article", id), Dep::id("author", author_id)];
                Ok::<_, String>(Loaded::new(page).deps(deps))
            })
            .await?;
        Ok(page)
    }

    async fn list(&self, category: &str) -> Result<Fetched<List>> {
        let db = &self.db;
        // The filter of the list, as a dependency: any write that makes a row enter or leave
        // "published articles of `category`" invalidates it.
        let scope = self
            .article_scopes
            .condition([("category", category.into()), ("published", true.into())])?;
        let list = self
            .cache
            .fetch(format!("list:{category}"), || async move {
                let list = db.published_in(category);
                let ids: Vec<Dep> = list
                    .0
                    .iter()
                    .map(|(id, _)| Dep::id("article", *id))
                    .collect();
                Ok::<_, String>(Loaded::new(list).deps(ids).dep(scope))
            })
            .await?;
        Ok(list)
    }

    // --- Writes: change the data, then invalidate what the write touched. ---

    async fn insert_article(&mut self, article: Article) -> Result<()> {
        let touched = self
            .article_scopes
            .invalidate_for(None, Some(&article), None);
        self.db.articles.insert(article.id, article);
        self.invalidate(&touched).await
    }

    /// Updates an article; `modified` names the fields the change sets (an ORM knows them).
    async fn update_article(
        &mut self,
        id: i64,
        modified: &[&str],
        change: impl FnOnce(&mut Article),
    ) -> Result<()> {
        let old = self.db.article(id)?.clone();
        let mut new = old.clone();
        change(&mut new);
        self.db.articles.insert(id, new.clone());
        let touched = self
            .article_scopes
            .invalidate_for(Some(&old), Some(&new), Some(modified));
        self.invalidate(&touched).await
    }

    async fn rename_author(&mut self, id: i64, name: &str) -> Result<()> {
        let author = self.db.authors.get_mut(&id).ok_or("no such author")?;
        let old = author.clone();
        author.name = name.into();
        let touched = self
            .author_scopes
            .invalidate_for(Some(&old), Some(author), Some(&["name"]));
        self.invalidate(&touched).await
    }

    async fn invalidate(&self, deps: &[Dep]) -> Result<()> {
        let removed = self.cache.invalidate(deps).await?;
        let tags: Vec<String> = deps.iter().map(ToString::to_string).collect();
        println!("  write: invalidate [{}] -> {removed}", tags.join(", "));
        Ok(())
    }

    // --- The check: read every key, print hit or miss, compare with the database. ---

    /// Reads every page and list; fails if a value differs from the database, or if the keys
    /// that missed (the loader ran) are not exactly `expected_misses` (space-separated).
    async fn read_all(&self, expected_misses: &str) -> Result<()> {
        let mut missed = BTreeSet::new();
        for id in PAGES {
            let page = self.page(id).await?;
            let fresh = self.db.page(id)?;
            missed.extend(check(format!("page:{id}"), &page, &fresh)?);
        }
        for category in CATEGORIES {
            let list = self.list(category).await?;
            let fresh = self.db.published_in(category);
            missed.extend(check(format!("list:{category}"), &list, &fresh)?);
        }
        let expected: BTreeSet<String> =
            expected_misses.split_whitespace().map(Into::into).collect();
        if missed != expected {
            return Err(format!("expected misses {expected:?}, got {missed:?}").into());
        }
        Ok(())
    }
}

/// Prints one read (a hit, or a miss that ran the loader), checks it against `fresh`, and returns
/// the key if it missed.
fn check<T: PartialEq + fmt::Display>(
    key: String,
    read: &Fetched<T>,
    fresh: &T,
) -> Result<Option<String>> {
    let how = if read.is_hit() { "hit" } else { "MISS, loaded" };
    let value = &read.value;
    println!("  {key:<15} {how:<13} {value}");
    if value != fresh {
        return Err(format!("stale read of {key}: {value}, the database has {fresh}").into());
    }
    Ok((!read.is_hit()).then_some(key))
}

impl fmt::Display for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, author) = (&self.article, &self.author);
        write!(
            f,
            "{:?} by {author}, in {}: {}",
            a.title, a.category, a.body
        )
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<String> = self
            .0
            .iter()
            .map(|(id, title)| format!("#{id} {title}"))
            .collect();
        write!(f, "[{}]", rows.join(", "))
    }
}

/// Runs the scenario on `cache`, printing every read and write.
///
/// # Errors
///
/// The store's error, or a read that differs from the "database", or a write that did not
/// invalidate exactly what it should.
pub async fn run<S: Store>(cache: Cache<S>) -> Result<()> {
    let mut blog = Blog::new(cache);

    println!("1. First reads: nothing is cached, every read loads.");
    let all = "page:1 page:2 page:3 page:4 list:rust list:databases";
    blog.read_all(all).await?;

    println!("\n2. The same reads again: all hits, no loader call.");
    blog.read_all("").await?;

    println!("\n3. A new article #5, published in rust: it enters list:rust, only that changes.");
    let new = article(5, 2, "rust", "Pinning");
    blog.insert_article(new).await?;
    blog.read_all("list:rust").await?;

    println!("\n4. Article #3 moves from databases to rust: its page and both lists.");
    let to_rust = |a: &mut Article| a.category = "rust".into();
    blog.update_article(3, &["category"], to_rust).await?;
    blog.read_all("page:3 list:rust list:databases").await?;

    println!("\n5. #1's body is edited (no filter field): its page, and list:rust that holds #1.");
    let edit = |a: &mut Article| a.body = "Borrowing, revised.".into();
    blog.update_article(1, &["body"], edit).await?;
    blog.read_all("page:1 list:rust").await?;

    println!("\n6. Author #1 is renamed: the pages showing her name (#1, #3); lists show none.");
    blog.rename_author(1, "Ada Lovelace").await?;
    blog.read_all("page:1 page:3").await?;

    println!("\n7. Final reads: all hits, all fresh.");
    blog.read_all("").await?;

    let stats = blog.cache.stats();
    println!("\nHit rate {:.0}%, {stats:#?}", stats.hit_rate() * 100.0);
    println!("\nOK: every read matched the database; each write invalidated what it touched.");
    Ok(())
}
