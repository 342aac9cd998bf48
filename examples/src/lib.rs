//! Runnable examples of Matroska: [`quickstart`] holds the quickstart's scenario, which
//! `cargo run --release --example quickstart` runs on the in-memory store (and the
//! `quickstart_redis` and `quickstart_postgres` examples of the store crates on Redis and
//! PostgreSQL). This library also doctests the workspace README, so that its example always
//! compiles and runs.

pub mod quickstart;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
