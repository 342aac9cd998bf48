//! The `put` script's arguments and reply, shared by `put` and the batch `put_many`.

use std::time::Duration;

use matroska_core::store::{FillToken, PutOutcome};
use matroska_core::{Key, Result, Tag};
use redis::Value;

use crate::error::unexpected;
use crate::replies::{distinct, ttl_ms};
use crate::store::RedisStore;

impl RedisStore {
    /// What the `put` script's reply means.
    pub(crate) fn put_outcome(&self, reply: Value) -> Result<PutOutcome> {
        match reply {
            Value::Int(1) => Ok(PutOutcome::Stored),
            Value::Int(0) => Ok(PutOutcome::Stale),
            Value::Int(2) => {
                // Issued later than the server's clock allows: the clock stepped back (or this
                // is another server). Read it again before handing out more tokens.
                tracing::debug!(
                    "redis store: a fill token from the future was refused; reading the server's clock again"
                );
                self.inner.clock.forget();
                Ok(PutOutcome::Stale)
            }
            other => Err(unexpected("put", &other)),
        }
    }
}

/// Passes the `put` script's arguments after the common ones to `push`: the key, the value, the
/// TTL, the token (or three empty strings) and the distinct tags.
pub(crate) fn put_args(
    key: &Key,
    value: &[u8],
    tags: &[Tag],
    ttl: Option<Duration>,
    token: Option<&FillToken>,
    mut push: impl FnMut(&[u8]),
) {
    push(key.as_str().as_bytes());
    push(value);
    push(ttl_ms(ttl).to_string().as_bytes());
    match token {
        Some(token) => {
            push(token.seq().to_string().as_bytes());
            push(token.snapshot().unwrap_or("").as_bytes());
            push(token.issued_at_ms().to_string().as_bytes());
        }
        None => {
            for _ in 0..3 {
                push(b"");
            }
        }
    }
    for tag in distinct(tags) {
        push(tag.as_bytes());
    }
}
