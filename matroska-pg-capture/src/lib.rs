//! # matroska-pg-capture: PostgreSQL change capture for Matroska
//!
//! Two halves and a command:
//!
//! - [`capture`], the sending half: generated triggers that turn every INSERT, UPDATE, DELETE and
//!   TRUNCATE of an application table into the tags it touches, invalidate a
//!   [`PgStore`](matroska_postgres::PgStore) inside the writer's transaction, and `NOTIFY` the
//!   tags at commit.
//! - [`listener`], the receiving half: a [`Listener`] that `LISTEN`s for those tags, reports the
//!   windows it cannot vouch for as gaps, and appliers that invalidate any
//!   [`Store`](matroska_core::Store) (Redis, an in-process tier, a remote PgStore).
//! - the `matroska-pg` command (feature `cli`, on by default): install / uninstall / list /
//!   listen / cleanup / stats.
//!
//! The store itself ([`PgStore`](matroska_postgres::PgStore), its migrations, pool and
//! credentials) is the `matroska-postgres` crate.
//!
//! ```no_run
//! use matroska_pg_capture::capture::{Capture, TableCapture, TableRef};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut client, connection) =
//!     tokio_postgres::connect("postgres://app@localhost/app", tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let articles = TableCapture::new(TableRef::parse("public.articles")?, "article").id(["id"]);
//! Capture::default().install(&mut client, &[articles]).await?;
//! # Ok(()) }
//! ```

pub mod capture;
pub mod listener;

pub use crate::listener::{Listener, ListenerConfig};
