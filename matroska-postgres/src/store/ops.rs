//! The [`Store`] operations of [`PgStore`]: one prepared statement and one round trip each
//! (see `PROTOCOL-store.md`).

use crate::error::{self, TOKEN_EXPIRED};
use crate::sql::{FILL_TYPES, PUT_TYPES};
use crate::token;
use async_trait::async_trait;
use bytes::Bytes;
use matroska_core::store::{
    FillToken, KeyTtl, Lookup, PutEntry, PutOutcome, Store, check_tags, check_ttl,
};
use matroska_core::{Error, Key, Result, Tag};
use std::time::Duration;
use tokio_postgres::types::Type;

use super::{
    Failure, MAX_ROUNDS, MAX_VALUE_LEN, PgStore, carried, col, count, first, tag_texts, ttl_ms,
};

#[async_trait]
impl Store for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        self.get_many_entries(keys).await
    }

    async fn put_many(&self, entries: &[PutEntry<'_>]) -> Result<Vec<PutOutcome>> {
        self.put_many_entries(entries).await
    }

    async fn get(&self, key: &Key) -> Result<Lookup> {
        let mut recreated = false;
        loop {
            let rows = self
                .query("get", &self.inner.sql.get, &[Type::TEXT], &[&key.as_str()])
                .await?;
            let row = first(&rows, "get")?;
            if let Some(value) = col::<Option<&[u8]>>(row, 0, "get")? {
                return Ok(Lookup::Hit(Bytes::copy_from_slice(value)));
            }
            let miss: Option<&str> = col(row, 1, "get")?;
            if let Some(miss) = miss.and_then(token::parse_miss) {
                return Ok(Lookup::Miss(token::encode(&miss)));
            }
            if recreated {
                // Still no epoch row (it was lost again at once): a token that cannot store.
                return Ok(Lookup::Miss(FillToken::new(0, 0)));
            }
            // The epoch row is missing (crash recovery emptied the unlogged tables, or a standby
            // was promoted): recreate it, with a new epoch that refuses every token issued before,
            // and read again for a token that can store. The only write a read makes, once per
            // loss.
            tracing::info!(schema = %self.inner.schema, "matroska-postgres: the epoch row was missing; recreated");
            self.query("get (epoch)", &self.inner.sql.ensure_state, &[], &[])
                .await?;
            recreated = true;
        }
    }

    async fn begin_fill(&self, key: &Key, lease: Option<Duration>) -> Result<Option<FillToken>> {
        if let Some(lease) = lease {
            let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
            let taken = self
                .query(
                    "begin_fill (lease)",
                    &self.inner.sql.lease,
                    &[Type::TEXT, Type::INT8],
                    &[&key.as_str(), &ms],
                )
                .await?;
            if taken.is_empty() {
                return Ok(None);
            }
        }
        // The token of a miss, taken after the lease: the same statement function, the same
        // snapshot rules, so a put checks it exactly as a miss's token.
        let mut recreated = false;
        loop {
            let rows = self
                .query("begin_fill", &self.inner.sql.token, &[], &[])
                .await?;
            let text: Option<&str> = col(first(&rows, "begin_fill")?, 0, "begin_fill")?;
            if let Some(miss) = text.and_then(token::parse_miss) {
                return Ok(Some(token::encode(&miss)));
            }
            if recreated {
                // Still no epoch row: a token that cannot store, as a miss gives then.
                return Ok(Some(FillToken::new(0, 0)));
            }
            // No epoch row (lost in a crash): recreate it as a miss does, and take the token
            // again (test `model::random_operations_match_the_model` found this).
            self.query("begin_fill (epoch)", &self.inner.sql.ensure_state, &[], &[])
                .await?;
            recreated = true;
        }
    }

    async fn put(
        &self,
        key: &Key,
        value: Bytes,
        tags: &[Tag],
        ttl: Option<Duration>,
        token: Option<&FillToken>,
    ) -> Result<PutOutcome> {
        check_ttl(ttl)?;
        check_tags(tags)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: MAX_VALUE_LEN,
            });
        }
        let tags = tag_texts(tags);
        let ttl_ms = ttl_ms(ttl);
        let value: &[u8] = &value;
        let carried = carried(&tags);
        let Some(token) = token else {
            let window_ms = i64::try_from(self.inner.fill_window.as_millis()).unwrap_or(i64::MAX);
            let result = self
                .query_raw(
                    "put",
                    &self.inner.sql.put,
                    PUT_TYPES,
                    &[&key.as_str(), &value, &carried, &ttl_ms, &tags, &window_ms],
                )
                .await;
            return match result {
                Ok(_) => Ok(PutOutcome::Stored),
                // The statement outlived the fill window (waiting for a row lock): nothing was
                // written; trying again is safe.
                Err(Failure::Db(error))
                    if error.code().is_some_and(|c| c.code() == TOKEN_EXPIRED) =>
                {
                    Err(Error::Timeout {
                        operation: "put",
                        after: self.inner.fill_window,
                    })
                }
                Err(Failure::Db(error)) => Err(error::pg(error, "put")),
                Err(Failure::Other(error)) => Err(error),
            };
        };
        let Some(pg) = token::decode(token) else {
            // A token from another store, or from a miss that found no epoch row (crash recovery
            // emptied it): recreate the epoch, so that the next miss hands out a usable token.
            tracing::debug!(key = %key, "matroska-postgres: fill token from another store or epoch; not stored");
            self.query("put (epoch)", &self.inner.sql.ensure_state, &[], &[])
                .await?;
            return Ok(PutOutcome::Stale);
        };
        let issued_ms = i64::try_from(token.issued_at_ms()).unwrap_or(i64::MAX);
        let result = self
            .query_raw(
                "put",
                &self.inner.sql.fill,
                FILL_TYPES,
                &[
                    &key.as_str(),
                    &value,
                    &carried,
                    &ttl_ms,
                    &tags,
                    &pg.snapshot,
                    &pg.epoch,
                    &pg.window_ms,
                    &issued_ms,
                ],
            )
            .await;
        match result {
            Ok(rows) if rows.is_empty() => {
                // Stale. Should it be because the epoch row is gone (crash recovery), recreate
                // it, so that the next miss hands out a usable token (a no-op otherwise; stale
                // fills are rare enough for the extra round trip).
                self.query("put (epoch)", &self.inner.sql.ensure_state, &[], &[])
                    .await?;
                Ok(PutOutcome::Stale)
            }
            Ok(_) => Ok(PutOutcome::Stored),
            Err(Failure::Db(error)) if error.code().is_some_and(|c| c.code() == TOKEN_EXPIRED) => {
                Ok(PutOutcome::Stale)
            }
            Err(Failure::Db(error)) => Err(error::pg(error, "put")),
            Err(Failure::Other(error)) => Err(error),
        }
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        let rows = self
            .query(
                "delete",
                &self.inner.sql.delete,
                &[Type::TEXT],
                &[&key.as_str()],
            )
            .await?;
        // No row: there was no entry; a row: whether it was live.
        match rows.first() {
            Some(row) => col(row, 0, "delete"),
            None => Ok(false),
        }
    }

    async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
        let inner = &self.inner;
        let tags = tag_texts(tags);
        if tags.is_empty() {
            return Ok(0);
        }
        let rows = self
            .query(
                "invalidate",
                &inner.sql.invalidate,
                &[Type::TEXT_ARRAY, Type::INT4],
                &[&tags, &inner.batch_size],
            )
            .await?;
        let row = first(&rows, "invalidate")?;
        let xid: String = col(row, 0, "invalidate")?;
        let mut removed = count(col::<i64>(row, 1, "invalidate")?);
        let scanned = count(col::<i64>(row, 2, "invalidate")?);
        if scanned >= self.batch() {
            // The invalidation is in effect (the stamps are committed); what follows only
            // removes the remaining dependents, in short statements. Should it fail, cleanup
            // finishes it.
            if let Err(error) = self.reclaim_rest(&tags, &xid, &mut removed).await {
                tracing::warn!(
                    %error,
                    removed,
                    "matroska-postgres: invalidation done, but removing its dependents failed; \
                     cleanup() will finish it"
                );
            }
        }
        tracing::debug!(tags = tags.len(), removed, "matroska-postgres: invalidated");
        Ok(removed)
    }

    async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
        let rows = self
            .query("ttl", &self.inner.sql.ttl, &[Type::TEXT], &[&key.as_str()])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(KeyTtl::Missing);
        };
        let ms: i64 = col(row, 0, "ttl")?;
        Ok(match u64::try_from(ms) {
            Ok(ms) => KeyTtl::Expires(Duration::from_millis(ms)),
            Err(_) => KeyTtl::Persistent,
        })
    }

    async fn clear(&self) -> Result<()> {
        let inner = &self.inner;
        let rows = self.query("clear", &inner.sql.clear, &[], &[]).await?;
        let xid: String = col(first(&rows, "clear")?, 0, "clear")?;
        // The clear is in effect (no entry filled before it is served); sweep those entries now,
        // in short statements. What is left (round limit) is swept by cleanup().
        let mut after = String::new();
        for _ in 0..MAX_ROUNDS {
            let rows = self
                .query(
                    "clear (sweep)",
                    &inner.sql.clear_sweep,
                    &[Type::TEXT, Type::TEXT, Type::INT4],
                    &[&xid, &after, &inner.batch_size],
                )
                .await?;
            let row = first(&rows, "clear")?;
            let scanned = count(col::<i64>(row, 1, "clear")?);
            match col::<Option<String>>(row, 2, "clear")? {
                Some(last) if scanned >= self.batch() => after = last,
                _ => break,
            }
        }
        Ok(())
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        let rows = self
            .query(
                "exists",
                &self.inner.sql.exists,
                &[Type::TEXT],
                &[&key.as_str()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    fn max_value_len(&self) -> usize {
        MAX_VALUE_LEN
    }
}
