//! [`Store::get_many`](matroska_core::Store::get_many) as one statement: `get`'s lookup for every
//! key, in one snapshot. See PROTOCOL-store.md, "Batches".

use bytes::Bytes;
use matroska_core::store::{FillToken, Lookup};
use matroska_core::{Key, Result};
use tokio_postgres::types::Type;

use crate::store::{PgStore, col};
use crate::token;

impl PgStore {
    /// One row per key, in order: the value of a live entry, or the miss's fill token. Should
    /// the epoch row be missing (crash recovery), it is recreated and the statement runs once
    /// more, as `get` does; still missing, the misses get tokens that cannot store.
    pub(crate) async fn get_many_entries(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<&str> = keys.iter().map(Key::as_str).collect();
        let mut recreated = false;
        loop {
            let rows = self
                .query(
                    "get_many",
                    &self.sql().get_many,
                    &[Type::TEXT_ARRAY],
                    &[&texts],
                )
                .await?;
            if rows.len() != keys.len() {
                return Err(matroska_core::Error::Backend {
                    store: crate::error::STORE,
                    message: format!("get_many: {} rows for {} keys", rows.len(), keys.len()),
                    transient: false,
                    source: None,
                });
            }
            let mut found = Vec::with_capacity(keys.len());
            let mut lost_epoch = false;
            for row in &rows {
                if let Some(value) = col::<Option<&[u8]>>(row, 0, "get_many")? {
                    found.push(Lookup::Hit(Bytes::copy_from_slice(value)));
                    continue;
                }
                let miss: Option<&str> = col(row, 1, "get_many")?;
                match miss.and_then(token::parse_miss) {
                    Some(miss) => found.push(Lookup::Miss(token::encode(&miss))),
                    None if recreated => found.push(Lookup::Miss(FillToken::new(0, 0))),
                    None => lost_epoch = true,
                }
            }
            if !lost_epoch {
                return Ok(found);
            }
            tracing::info!("matroska-postgres: the epoch row was missing; recreated");
            self.query("get_many (epoch)", &self.sql().ensure_state, &[], &[])
                .await?;
            recreated = true;
        }
    }
}
