//! The PostgreSQL part of a fill token: epoch, generation and the reader's snapshot.
//!
//! [`FillToken`] carries a store-specific snapshot string; this store writes
//! `pg1:{epoch}:{gen}:{pg_snapshot}` there, for example `pg1:817:3:1001:1004:1001,1002`.

use matroska_core::store::FillToken;

const PREFIX: &str = "pg1:";

/// A decoded token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgToken {
    pub(crate) epoch: i64,
    pub(crate) gen_: i64,
    /// The text form of a `pg_snapshot` (`xmin:xmax:xip,...`), checked to hold digits, colons and
    /// commas only.
    pub(crate) snapshot: String,
}

pub(crate) fn encode(epoch: i64, gen_: i64, snapshot: &str) -> String {
    format!("{PREFIX}{epoch}:{gen_}:{snapshot}")
}

/// Reads the store part of a token; `None` for a token of another store, or a damaged one.
pub(crate) fn decode(token: &FillToken) -> Option<PgToken> {
    let rest = token.snapshot()?.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let epoch = parts.next()?.parse().ok()?;
    let gen_ = parts.next()?.parse().ok()?;
    let snapshot = parts.next()?;
    let well_formed = snapshot.split(':').count() == 3
        && snapshot
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b',');
    well_formed.then(|| PgToken {
        epoch,
        gen_,
        snapshot: snapshot.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let token = FillToken::new(3, 9).with_snapshot(encode(-5, 7, "100:104:101,102"));
        assert_eq!(
            decode(&token),
            Some(PgToken {
                epoch: -5,
                gen_: 7,
                snapshot: "100:104:101,102".into()
            })
        );
        let empty_xip = FillToken::new(3, 9).with_snapshot(encode(1, 2, "100:100:"));
        assert!(decode(&empty_xip).is_some());
    }

    #[test]
    fn rejects_foreign_and_damaged_tokens() {
        for snapshot in [
            None,
            Some("100:104:"),
            Some("pg1:1:2"),
            Some("pg1:x:2:1:2:"),
            Some("pg1:1:2:1:2"),
            Some("pg1:1:2:1:2:3'; drop"),
        ] {
            let mut token = FillToken::new(1, 1);
            if let Some(s) = snapshot {
                token = token.with_snapshot(s);
            }
            assert_eq!(decode(&token), None, "{snapshot:?}");
        }
    }
}
