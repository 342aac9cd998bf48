//! Turning the scripts' replies into values, and the arguments they share.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use matroska_core::store::FillToken;
use matroska_core::{Result, Tag};
use redis::Value;

use crate::error::unexpected;

/// Longer TTLs are shortened to this (about 1,100 years), so that expiry times stay exact.
pub(crate) const MAX_TTL_MS: u64 = 1 << 45;

/// The tags without repeats.
pub(crate) fn distinct(tags: &[Tag]) -> Vec<&str> {
    let mut out: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A random id for this handle, 8 hex digits (seeded by the standard library's per-process random
/// keys): part of the generation id of a namespace generation it starts.
pub(crate) fn nonce() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() & 0xffff_ffff)
}

pub(crate) fn int(operation: &'static str, value: &Value) -> Result<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| unexpected(operation, value)),
        other => Err(unexpected(operation, other)),
    }
}

pub(crate) fn text(operation: &'static str, value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map_err(|e| unexpected(operation, &Value::BulkString(e.into_bytes()))),
        Value::SimpleString(s) => Ok(s),
        other => Err(unexpected(operation, &other)),
    }
}

/// Parses `{removed, set...}`.
pub(crate) fn removed_and_sets(
    operation: &'static str,
    reply: Value,
) -> Result<(u64, Vec<String>)> {
    let Value::Array(items) = reply else {
        return Err(unexpected(operation, &reply));
    };
    let mut items = items.into_iter();
    let removed = match items.next() {
        Some(first) => int(operation, &first)?,
        None => return Err(unexpected(operation, &Value::Array(Vec::new()))),
    };
    let sets = items.map(|v| text(operation, v)).collect::<Result<_>>()?;
    Ok((removed, sets))
}

/// Parses the fill token `{seq, generation, ms}` of a miss.
pub(crate) fn token(items: Vec<Value>) -> Result<FillToken> {
    if let [seq, Value::BulkString(generation), ms] = items.as_slice()
        && let Ok(generation) = std::str::from_utf8(generation)
    {
        return Ok(FillToken::new(int("get", seq)?, int("get", ms)?).with_snapshot(generation));
    }
    Err(unexpected("get", &Value::Array(items)))
}

/// A TTL in whole milliseconds, as the scripts take it (0: none).
pub(crate) fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        // check_ttl guarantees at least 1 ms; round up so an entry never expires early.
        u64::try_from(ttl.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .min(MAX_TTL_MS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_rounded_up_to_milliseconds_and_bounded() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(ttl_ms(Some(Duration::from_secs(600))), 600_000);
        assert_eq!(ttl_ms(Some(Duration::MAX)), MAX_TTL_MS);
    }

    #[test]
    fn tags_are_deduplicated() {
        let a = Tag::parse("g:a").unwrap();
        let b = Tag::parse("g:b").unwrap();
        assert_eq!(distinct(&[a.clone(), b, a]), ["g:a", "g:b"]);
    }

    #[test]
    fn replies_are_parsed_without_panicking() {
        let good = vec![
            Value::Int(42),
            Value::BulkString(b"1-abc".to_vec()),
            Value::Int(7),
        ];
        let token = token(good).unwrap();
        assert_eq!((token.seq(), token.issued_at_ms()), (42, 7));
        assert_eq!(token.snapshot(), Some("1-abc"));
        assert!(super::token(vec![Value::Nil]).is_err());
        assert!(
            super::token(vec![
                Value::Int(-1),
                Value::BulkString(b"e".to_vec()),
                Value::Int(0)
            ])
            .is_err()
        );
        let (n, sets) = removed_and_sets(
            "invalidate",
            Value::Array(vec![
                Value::Int(3),
                Value::BulkString(b"{p}:r:1:g:t".to_vec()),
            ]),
        )
        .unwrap();
        assert_eq!(
            (n, sets.as_slice()),
            (3, ["{p}:r:1:g:t".to_owned()].as_slice())
        );
        assert!(removed_and_sets("invalidate", Value::Nil).is_err());
        assert!(removed_and_sets("invalidate", Value::Array(vec![])).is_err());
    }

    #[test]
    fn nonces_are_8_hex_digits_and_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 8);
        assert!(nonce().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
