//! Batch operations: [`Store::get_many`](matroska_core::Store::get_many) as one `MGET`, and
//! [`Store::put_many`](matroska_core::Store::put_many) as one pipeline of `put` scripts. See
//! PROTOCOL.md, "Batches", for why each answer is one the single operation could have given.

use matroska_core::store::{Lookup, PutEntry, PutOutcome, check_entries};
use matroska_core::{Key, Result};
use redis::{ErrorKind, ServerErrorKind, Value};

use crate::error::{backend, unexpected};
use crate::format::{Entry, State};
use crate::scripts;
use crate::store::{RedisStore, put_args};

impl RedisStore {
    /// One `MGET` of every entry and the namespace's state; each entry is decided by the plain
    /// read's rules against that one state, and the undecided ones by the `get` script, one by
    /// one.
    pub(crate) async fn get_many_entries(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let entry_keys: Vec<String> = keys.iter().map(|key| inner.layout.entry(key)).collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&entry_keys).arg(&inner.seq_key);
        let mut answers: Vec<Option<Lookup>> = vec![None; keys.len()];
        if let Value::Array(mut items) = self.command::<Value>("get_many", &cmd).await?
            && items.len() == keys.len() + 1
            && let Some(Value::BulkString(state)) = items.pop()
            && let Some(state) = State::parse(&state)
        {
            for (answer, entry) in answers.iter_mut().zip(items) {
                *answer = match entry {
                    Value::BulkString(blob) => Entry::parse(&blob)
                        .filter(|parsed| Self::plain_hit(&state, parsed))
                        .map(|parsed| parsed.value_at)
                        .map(|at| Lookup::Hit(bytes::Bytes::from(blob).slice(at..))),
                    Value::Nil => self.plain_token(&state).map(Lookup::Miss),
                    _ => None,
                };
            }
        }
        let mut found = Vec::with_capacity(keys.len());
        for ((answer, key), entry_key) in answers.into_iter().zip(keys).zip(entry_keys) {
            found.push(match answer {
                Some(answer) => answer,
                None => self.get_checked(key, entry_key).await?,
            });
        }
        Ok(found)
    }

    /// One pipeline of `put` scripts, one per entry (each atomic on its own, as a single put).
    /// Should the server have lost its scripts (a restart, `SCRIPT FLUSH`), they are loaded
    /// again and the whole pipeline is sent once more: putting an entry twice with the same
    /// token stores it, or refuses it if a tag was invalidated in between, as one put would.
    pub(crate) async fn put_many_entries(
        &self,
        entries: &[PutEntry<'_>],
    ) -> Result<Vec<PutOutcome>> {
        check_entries(entries, crate::store::MAX_VALUE_LEN)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        for entry in entries {
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(scripts::PUT.get_hash())
                .arg(1)
                .arg(inner.layout.entry(entry.key))
                .arg(inner.layout.base())
                .arg(&*inner.window_ms)
                .arg(&*inner.nonce);
            put_args(
                entry.key,
                &entry.value,
                entry.tags,
                entry.ttl,
                entry.token,
                |arg| {
                    cmd.arg(arg);
                },
            );
        }
        let mut conn = inner.conn.clone();
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(replies) => replies,
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load_scripts().await?;
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|err| backend("put_many", err))?
            }
            Err(err) => return Err(backend("put_many", err)),
        };
        if replies.len() != entries.len() {
            return Err(unexpected("put_many", &Value::Array(replies)));
        }
        replies
            .into_iter()
            .map(|reply| self.put_outcome(reply))
            .collect()
    }
}
