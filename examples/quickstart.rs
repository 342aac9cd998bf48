//! # Quickstart: a blog cached with Matroska
//!
//! ```text
//! cargo run --release --example quickstart                   # from the workspace root
//! RUST_LOG=matroska_core=debug cargo run --release --example quickstart   # with the cache's logs
//! cargo run --release --example quickstart_redis -- redis://127.0.0.1:6379
//! cargo run --release --example quickstart_postgres -- postgres://postgres@127.0.0.1/postgres
//! ```
//!
//! The same scenario runs on Redis (`quickstart_redis`, in matroska-redis: key prefix
//! `matroska-quickstart`, removed at the end) and on PostgreSQL (`quickstart_postgres`, in
//! matroska-postgres: schema `matroska_quickstart`, dropped at the end). This one builds only
//! matroska-core and what it needs (plus tokio and tracing-subscriber): no database client.
//!
//! It needs no server: the cache runs on the in-memory [`MemoryStore`]. The scenario, a small blog
//! read through a [`Cache`] and written to, is in `examples/src/quickstart.rs`
//! ([`matroska_examples::quickstart`]): it prints each read (hit, or miss and load) and each
//! invalidation, and fails if a read differs from the "database" or a write did not invalidate
//! exactly what it should.

use std::error::Error;

use matroska_core::{Cache, MemoryStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Logs are off unless asked for (RUST_LOG=matroska_core=debug), to keep the output readable.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init()
            .map_err(|err| err as Box<dyn Error>)?;
    }
    if std::env::args().len() > 1 {
        return Err(
            "usage: quickstart (no arguments; quickstart_redis and quickstart_postgres \
             run the same scenario on Redis and PostgreSQL)"
                .into(),
        );
    }
    matroska_examples::quickstart::run(Cache::new(MemoryStore::new())).await
}
