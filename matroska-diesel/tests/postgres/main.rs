//! The Diesel integration against a real PostgreSQL: what each write invalidates and when, what
//! a read inside a transaction may put in the shared cache, and what an uncertain commit hands
//! back.
//!
//! Every test runs in a schema of its own (`SET search_path` on each pooled connection), so the
//! tests run in parallel, and most run once per store under the cache (`memory::`, `pg_store::`,
//! `redis_store::`: a PgStore in a schema of its own, a RedisStore in a namespace of its own),
//! removed at the end even when the test fails. They need `MATROSKA_TEST_POSTGRES_URL`, and the
//! Redis runs `MATROSKA_TEST_REDIS_URL` (`./scripts/test` starts private servers); without them
//! they are skipped, unless servers are required (CI).

// Test fixtures: failing loudly is their job.
#![allow(clippy::expect_used, clippy::print_stderr)]

#[macro_use]
mod support;

mod commit;
mod reads;
mod writes;
