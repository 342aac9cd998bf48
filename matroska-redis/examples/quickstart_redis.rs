//! # Quickstart on Redis
//!
//! ```text
//! cargo run --release --example quickstart_redis -- redis://127.0.0.1:6379
//! ```
//!
//! The quickstart's scenario (`matroska_examples::quickstart`, the same as
//! `cargo run --release --example quickstart` runs in memory) on a [`RedisStore`] under the key
//! prefix `matroska-quickstart`. It empties the namespace first, and removes every key of it at
//! the end, also when the scenario fails.

// Printing is the point of an example.
#![allow(clippy::print_stdout)]

use std::error::Error;

use matroska_core::{Cache, Store};
use matroska_redis::RedisStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), None) = (args.next(), args.next()) else {
        return Err("usage: quickstart_redis REDIS_URL (e.g. redis://127.0.0.1:6379)".into());
    };
    let store = RedisStore::builder(url.as_str())
        .prefix("matroska-quickstart")
        .build()
        .await?;
    store.clear().await?;
    println!("(on Redis: key prefix {{{}}}:)", store.layout().prefix());
    let outcome = matroska_examples::quickstart::run(Cache::new(store.clone())).await;
    let removed = store.remove_namespace().await?;
    println!("(removed the namespace's {removed} keys)");
    outcome
}
