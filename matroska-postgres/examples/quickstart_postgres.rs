//! # Quickstart on PostgreSQL
//!
//! ```text
//! cargo run --release --example quickstart_postgres -- postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! The quickstart's scenario (`matroska_examples::quickstart`, the same as
//! `cargo run --release --example quickstart` runs in memory) on a [`PgStore`] in the schema
//! `matroska_quickstart`, created by [`PgStore::migrate`]. It drops the schema at the end, also
//! when the scenario fails.

// Printing is the point of an example.
#![allow(clippy::print_stdout)]

use std::error::Error;

use matroska_core::{Cache, Store};
use matroska_postgres::PgStore;

const SCHEMA: &str = "matroska_quickstart";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), None) = (args.next(), args.next()) else {
        return Err(
            "usage: quickstart_postgres POSTGRES_URL (e.g. postgres://postgres@127.0.0.1/postgres)"
                .into(),
        );
    };
    let store = PgStore::builder(&url).schema(SCHEMA).build()?;
    store.migrate().await?;
    store.clear().await?;
    println!("(on PostgreSQL: schema {})", store.schema());
    let outcome = matroska_examples::quickstart::run(Cache::new(store.clone())).await;
    store.close();
    drop_schema(&url).await?;
    println!("(dropped the schema {SCHEMA})");
    outcome
}

/// Drops the quickstart's schema and everything in it.
async fn drop_schema(url: &str) -> Result<(), Box<dyn Error>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await?;
    drop(client);
    connection.await??;
    Ok(())
}
