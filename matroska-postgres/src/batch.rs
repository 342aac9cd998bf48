//! [`Store::get_many`](matroska_core::Store::get_many) as one statement: `get`'s lookup for every
//! key, in one snapshot; [`Store::put_many`](matroska_core::Store::put_many) as one statement
//! (`sql/put_many.sql`) when the keys are distinct, else (or when that statement outlived a fill
//! window) as one pipeline of `put`'s statements on one connection. See PROTOCOL-store.md,
//! "Batches".

use bytes::Bytes;
use matroska_core::store::{FillToken, Lookup, PutEntry, PutOutcome, check_entries};
use matroska_core::{Error, Key, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::error::{self, TOKEN_EXPIRED, is_connection_lost};
use crate::sql::{FILL_TYPES, PUT_MANY_TYPES, PUT_TYPES};
use crate::store::{Failure, InFlight, MAX_VALUE_LEN, PgStore, carried, col, tag_texts, ttl_ms};
use crate::token::{self, PgToken};

/// One entry's statement: a plain put, a fill with its decoded token, or nothing (a token this
/// store cannot use: refused, as `put` refuses it).
enum Kind {
    Put,
    Fill(PgToken, i64),
    Foreign,
}

/// The parameters of one entry's statement.
struct Params<'a> {
    key: &'a str,
    value: &'a [u8],
    carried: Vec<&'a str>,
    ttl_ms: Option<i64>,
    tags: Vec<&'a str>,
    kind: Kind,
}

impl<'a> Params<'a> {
    fn new(entry: &'a PutEntry<'a>) -> Self {
        let tags = tag_texts(entry.tags);
        let kind = match entry.token {
            None => Kind::Put,
            Some(token) => match token::decode(token) {
                Some(pg) => Kind::Fill(pg, i64::try_from(token.issued_at_ms()).unwrap_or(i64::MAX)),
                None => Kind::Foreign,
            },
        };
        Self {
            key: entry.key.as_str(),
            value: &entry.value,
            carried: carried(&tags),
            ttl_ms: ttl_ms(entry.ttl),
            tags,
            kind,
        }
    }
}

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

    /// Every entry checked first, then the batch as one statement when its keys are distinct,
    /// else as a pipeline of single puts.
    pub(crate) async fn put_many_entries(
        &self,
        entries: &[PutEntry<'_>],
    ) -> Result<Vec<PutOutcome>> {
        check_entries(entries, MAX_VALUE_LEN)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let params: Vec<Params<'_>> = entries.iter().map(Params::new).collect();
        let window_ms = i64::try_from(self.fill_window().as_millis()).unwrap_or(i64::MAX);
        let mut keys: Vec<&str> = params.iter().map(|p| p.key).collect();
        keys.sort_unstable();
        if keys.windows(2).all(|pair| pair[0] != pair[1])
            && let Some(outcomes) = self.put_many_statement(&params, window_ms).await?
        {
            return Ok(outcomes);
        }
        self.put_many_pipelined(&params, window_ms).await
    }

    /// The batch as one statement (`sql/put_many.sql`; the keys are distinct). `None`: a fill
    /// window ran out while it ran, another transaction held one of its stored entries, or it
    /// lost a deadlock: it rolled back as a whole, and the caller runs the entries one by one,
    /// each checked against its own window.
    async fn put_many_statement(
        &self,
        params: &[Params<'_>],
        window_ms: i64,
    ) -> Result<Option<Vec<PutOutcome>>> {
        let sent: Vec<&Params<'_>> = params
            .iter()
            .filter(|p| !matches!(p.kind, Kind::Foreign))
            .collect();
        let mut outcomes: Vec<PutOutcome> = params
            .iter()
            .map(|p| match p.kind {
                Kind::Put => PutOutcome::Stored,
                Kind::Fill(..) | Kind::Foreign => PutOutcome::Stale,
            })
            .collect();
        let mut recreate_epoch = sent.len() < params.len();
        if !sent.is_empty() {
            let keys: Vec<&str> = sent.iter().map(|p| p.key).collect();
            let values: Vec<&[u8]> = sent.iter().map(|p| p.value).collect();
            let carried: Vec<String> = sent.iter().map(|p| array_literal(&p.carried)).collect();
            let ttls: Vec<Option<i64>> = sent.iter().map(|p| p.ttl_ms).collect();
            let tags: Vec<String> = sent.iter().map(|p| array_literal(&p.tags)).collect();
            let token = |f: fn(&PgToken, i64) -> i64| -> Vec<Option<i64>> {
                sent.iter()
                    .map(|p| match &p.kind {
                        Kind::Fill(pg, issued_ms) => Some(f(pg, *issued_ms)),
                        Kind::Put | Kind::Foreign => None,
                    })
                    .collect()
            };
            let snapshots: Vec<Option<&str>> = sent
                .iter()
                .map(|p| match &p.kind {
                    Kind::Fill(pg, _) => Some(pg.snapshot.as_str()),
                    Kind::Put | Kind::Foreign => None,
                })
                .collect();
            let epochs = token(|pg, _| pg.epoch);
            let windows = token(|pg, _| pg.window_ms);
            let issued = token(|_, issued_ms| issued_ms);
            let rows = match self
                .query_raw(
                    "put_many",
                    &self.sql().put_many,
                    PUT_MANY_TYPES,
                    &[
                        &keys, &values, &carried, &ttls, &tags, &snapshots, &epochs, &windows,
                        &issued, &window_ms,
                    ],
                )
                .await
            {
                Ok(rows) => rows,
                // A window ran out, another transaction holds one of the stored entries (the
                // statement does not wait for it), or the server broke a deadlock by aborting
                // this statement: nothing of it stays; the entries go one by one.
                Err(Failure::Db(e))
                    if e.code().is_some_and(|c| {
                        c.code() == TOKEN_EXPIRED
                            || *c == SqlState::LOCK_NOT_AVAILABLE
                            || *c == SqlState::T_R_DEADLOCK_DETECTED
                    }) =>
                {
                    tracing::debug!(error = %e, "matroska-postgres: put_many as one statement rolled back; entry by entry");
                    return Ok(None);
                }
                Err(Failure::Db(e)) => return Err(error::pg(e, "put_many")),
                Err(Failure::Other(e)) => return Err(e),
            };
            let mut stored = std::collections::HashSet::with_capacity(rows.len());
            for row in &rows {
                stored.insert(col::<String>(row, 0, "put_many")?);
            }
            for (p, outcome) in params.iter().zip(&mut outcomes) {
                match p.kind {
                    Kind::Put if !stored.contains(p.key) => {
                        return Err(Error::Backend {
                            store: error::STORE,
                            message: format!("put_many: the server did not store {:?}", p.key),
                            transient: false,
                            source: None,
                        });
                    }
                    Kind::Fill(..) if stored.contains(p.key) => *outcome = PutOutcome::Stored,
                    Kind::Fill(..) => recreate_epoch = true,
                    Kind::Put | Kind::Foreign => {}
                }
            }
        }
        if recreate_epoch {
            // As `put`: a refused fill may be due to a lost epoch row; recreate it (a no-op
            // otherwise), so that the next miss hands out a usable token.
            self.query("put_many (epoch)", &self.sql().ensure_state, &[], &[])
                .await?;
        }
        Ok(Some(outcomes))
    }

    /// `put`'s statement for every entry, sent together on one connection (tokio-postgres
    /// pipelines them): one round trip. Each statement runs on its own, in autocommit, exactly
    /// as a single `put`; a lost connection fails the whole call (the entries before the loss
    /// may be stored: as documented for `put_many`, nothing is promised about them).
    async fn put_many_pipelined(
        &self,
        params: &[Params<'_>],
        window_ms: i64,
    ) -> Result<Vec<PutOutcome>> {
        let timeout = self.operation_timeout();
        let guard = InFlight(Some(self.client("put_many").await?));
        let Some(client) = guard.0.as_deref() else {
            return Err(lost("put_many: no connection"));
        };
        let sql = self.sql();
        let run = async {
            let put = client.prepare_typed_cached(&sql.put, PUT_TYPES).await?;
            let fill = client.prepare_typed_cached(&sql.fill, FILL_TYPES).await?;
            let calls = params.iter().map(|p| {
                let (put, fill) = (&put, &fill);
                async move {
                    let common: [&(dyn ToSql + Sync); 5] =
                        [&p.key, &p.value, &p.carried, &p.ttl_ms, &p.tags];
                    match &p.kind {
                        Kind::Put => {
                            let mut args = common.to_vec();
                            args.push(&window_ms);
                            client.query(put, &args).await.map(Some)
                        }
                        Kind::Fill(pg, issued_ms) => {
                            let mut args = common.to_vec();
                            args.extend([
                                &pg.snapshot as &(dyn ToSql + Sync),
                                &pg.epoch,
                                &pg.window_ms,
                                issued_ms,
                            ]);
                            client.query(fill, &args).await.map(Some)
                        }
                        Kind::Foreign => Ok(None),
                    }
                }
            });
            Ok::<_, tokio_postgres::Error>(futures::future::join_all(calls).await)
        };
        let results = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(results)) => results,
            Ok(Err(error)) => {
                if !is_connection_lost(&error) {
                    guard.done();
                }
                return Err(error::pg(error, "put_many"));
            }
            Err(_) => {
                return Err(Error::Timeout {
                    operation: "put_many",
                    after: timeout,
                });
            }
        };
        if results
            .iter()
            .any(|r| r.as_ref().is_err_and(is_connection_lost))
        {
            // `guard` closes the connection: never hand a dead one back.
            let error = results.into_iter().find_map(Result::err);
            return Err(error.map_or_else(|| lost("put_many"), |e| error::pg(e, "put_many")));
        }
        guard.done();
        let mut outcomes = Vec::with_capacity(results.len());
        let mut recreate_epoch = false;
        for (p, result) in params.iter().zip(results) {
            let expired =
                |e: &tokio_postgres::Error| e.code().is_some_and(|c| c.code() == TOKEN_EXPIRED);
            outcomes.push(match (&p.kind, result) {
                (Kind::Foreign, _) => {
                    recreate_epoch = true;
                    PutOutcome::Stale
                }
                (Kind::Fill(..), Ok(Some(rows))) if rows.is_empty() => {
                    recreate_epoch = true;
                    PutOutcome::Stale
                }
                (_, Ok(_)) => PutOutcome::Stored,
                (Kind::Put, Err(e)) if expired(&e) => {
                    return Err(Error::Timeout {
                        operation: "put_many",
                        after: self.fill_window(),
                    });
                }
                (Kind::Fill(..), Err(e)) if expired(&e) => PutOutcome::Stale,
                (_, Err(e)) => return Err(error::pg(e, "put_many")),
            });
        }
        if recreate_epoch {
            // As `put`: a refused fill may be due to a lost epoch row; recreate it (a no-op
            // otherwise), so that the next miss hands out a usable token.
            self.query("put_many (epoch)", &self.sql().ensure_state, &[], &[])
                .await?;
        }
        Ok(outcomes)
    }
}

fn lost(what: &str) -> Error {
    Error::Backend {
        store: error::STORE,
        message: format!("{what}: the connection was lost"),
        transient: true,
        source: None,
    }
}

/// A PostgreSQL array literal of `items` (`{"a","b"}`): every element quoted, `"` and `\`
/// escaped, so that any text reads back as itself.
fn array_literal(items: &[&str]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    out.push('{');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::array_literal;

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&["*", "i:a:1"]), r#"{"*","i:a:1"}"#);
        assert_eq!(array_literal(&[r#"a"b\c"#, "{,}"]), r#"{"a\"b\\c","{,}"}"#);
    }
}
