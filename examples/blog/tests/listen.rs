//! `--listen`: with capture triggers installed on the blog's tables, a plain-SQL write (not
//! through the app) reaches the cache: the cached list is served again fresh.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` (skipped without it, unless servers are required).
#![cfg(feature = "capture")]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use matroska_blog::{App, Config};
use matroska_pg_capture::capture::{Capture, ScopeSet, TableCapture, TableRef};
use serde_json::{Value, json};

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(
    http: &Http,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    let bytes = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&body).unwrap())
        }
        None => Bytes::new(),
    };
    let response = http
        .request(request.body(Full::new(bytes)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cache,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sql_update_reaches_the_cache_through_capture_triggers() {
    let Some(url) = matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = format!("blog_listen_{}", std::process::id());
    let mut config = Config::new(url.clone(), schema.clone());
    config.listen = true;
    let app = App::connect(&config).await.expect("the app starts");

    // The triggers, declared as the models are (`#[matroska(...)]`).
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let articles = TableRef::parse(&format!("{schema}.articles")).unwrap();
    let authors = TableRef::parse(&format!("{schema}.authors")).unwrap();
    let tables = [
        TableCapture::new(articles.clone(), "article")
            .id(["id"])
            .scope(ScopeSet::new(["category", "published"]))
            .scope(ScopeSet::new(["author_id"])),
        TableCapture::new(authors.clone(), "author").id(["id"]),
    ];
    let capture = Capture::default();
    capture.install(&mut client, &tables).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    let outcome = {
        let (http, base, schema, url) = (http.clone(), base.clone(), schema.clone(), url.clone());
        async move {
            let (status, _, _) = call(
                &http,
                &base,
                Method::POST,
                "/authors",
                Some(json!({ "name": "Ada" })),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
            let article = json!({ "author_id": 1, "category": "news", "published": true, "title": "Hello", "body": "b" });
            let (status, _, _) = call(&http, &base, Method::POST, "/articles", Some(article)).await;
            assert_eq!(status, StatusCode::CREATED);
            let list = "/categories/news/articles";
            // The triggers' notifications of the writes above may arrive after the first read
            // and invalidate it once more: read until the list is served from the cache.
            matroska_testkit::support::eventually(
                Duration::from_secs(10),
                "the list is served from the cache",
                || async {
                    let (_, cache, body) = call(&http, &base, Method::GET, list, None).await;
                    cache.as_deref() == Some("hit") && body[0]["title"] == "Hello"
                },
            )
            .await;

            // A write the app does not make.
            let (writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            writer
                .execute(
                    &format!("UPDATE {schema}.articles SET title = 'Edited in SQL' WHERE id = 1"),
                    &[],
                )
                .await
                .unwrap();
            matroska_testkit::support::eventually(
                Duration::from_secs(10),
                "the list shows the plain-SQL edit",
                || async {
                    let (_, _, body) = call(&http, &base, Method::GET, list, None).await;
                    body[0]["title"] == "Edited in SQL"
                },
            )
            .await;
        }
    };
    let result = tokio::spawn(outcome).await;
    server.abort();
    for table in [&articles, &authors] {
        capture.uninstall(&mut client, table).await.unwrap();
    }
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
