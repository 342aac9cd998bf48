//! The PostgreSQL part of a fill token: epoch, fill window and the reader's snapshot.
//!
//! [`FillToken`] carries a store-specific snapshot string; this store writes
//! `pg2:{epoch}:{fill_window_ms}:{pg_snapshot}` there, for example `pg2:817:60000:1001:1004:1001,1002`.
//! The fill window travels with the token so that a fill can check, without reading it again,
//! that the token has not outlived it by the end of the put.
//!
//! The token's `seq` (which the `Cache` front end compares to decide whether a waiter may share
//! a leader's load) is derived from the snapshot: `xmax * 2^16 - nxip`. It grows whenever a later
//! snapshot sees a commit an earlier one does not (a transaction at or above `xmax` completed, so
//! `xmax` grew; or one in progress completed, so `nxip` shrank), and transaction ids never go
//! back, not even after a crash. So a waiter whose miss saw an invalidation its leader's did not
//! always reads again; no sequence is drawn by invalidations.

use matroska_core::store::FillToken;

const PREFIX: &str = "pg2:";

/// A decoded token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgToken {
    pub(crate) epoch: i64,
    pub(crate) window_ms: i64,
    /// The text form of a `pg_snapshot` (`xmin:xmax:xip,...`), checked to hold digits, colons and
    /// commas only.
    pub(crate) snapshot: String,
}

/// What a miss's `miss_token()` returned: `epoch:fill_window_ms:now_ms:snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissToken<'a> {
    pub(crate) epoch: i64,
    pub(crate) window_ms: i64,
    pub(crate) now_ms: u64,
    pub(crate) snapshot: &'a str,
}

/// Parses the text of `miss_token()`; `None` if it is not well formed.
pub(crate) fn parse_miss(text: &str) -> Option<MissToken<'_>> {
    let mut parts = text.splitn(4, ':');
    let epoch = parts.next()?.parse().ok()?;
    let window_ms = parts.next()?.parse().ok()?;
    let now_ms = parts.next()?.parse().ok()?;
    let snapshot = parts.next()?;
    well_formed(snapshot).then_some(MissToken {
        epoch,
        window_ms,
        now_ms,
        snapshot,
    })
}

/// The token of a miss.
pub(crate) fn encode(miss: &MissToken<'_>) -> FillToken {
    FillToken::new(seq(miss.snapshot), miss.now_ms).with_snapshot(format!(
        "{PREFIX}{}:{}:{}",
        miss.epoch, miss.window_ms, miss.snapshot
    ))
}

/// `xmax * 2^16 - nxip` of a well-formed snapshot text (`xmin:xmax:xip,...`), saturating.
fn seq(snapshot: &str) -> u64 {
    let mut parts = snapshot.split(':');
    let xmax: u64 = parts.nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    let nxip = parts
        .next()
        .map_or(0, |xip| xip.split(',').filter(|x| !x.is_empty()).count());
    xmax.saturating_mul(1 << 16)
        .saturating_sub(u64::try_from(nxip).unwrap_or(u64::MAX))
}

fn well_formed(snapshot: &str) -> bool {
    snapshot.split(':').count() == 3
        && snapshot
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b',')
}

/// Reads the store part of a token; `None` for a token of another store, a token issued while
/// the epoch was missing, or a damaged one.
pub(crate) fn decode(token: &FillToken) -> Option<PgToken> {
    let rest = token.snapshot()?.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let epoch = parts.next()?.parse().ok()?;
    let window_ms = parts.next()?.parse().ok()?;
    let snapshot = parts.next()?;
    well_formed(snapshot).then(|| PgToken {
        epoch,
        window_ms,
        snapshot: snapshot.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let miss = parse_miss("-5:60000:9:100:104:101,102").unwrap();
        assert_eq!(
            miss,
            MissToken {
                epoch: -5,
                window_ms: 60000,
                now_ms: 9,
                snapshot: "100:104:101,102"
            }
        );
        let token = encode(&miss);
        assert_eq!((token.seq(), token.issued_at_ms()), ((104 << 16) - 2, 9));
        assert_eq!(
            decode(&token),
            Some(PgToken {
                epoch: -5,
                window_ms: 60000,
                snapshot: "100:104:101,102".into()
            })
        );
        let empty_xip = encode(&parse_miss("1:2:0:100:100:").unwrap());
        assert_eq!(empty_xip.seq(), 100 << 16);
        assert!(decode(&empty_xip).is_some());
    }

    #[test]
    fn seq_grows_with_every_commit_a_later_snapshot_sees() {
        let seqs: Vec<u64> = [
            "100:104:101,102", // 101, 102 in progress
            "100:104:102",     // 101 committed
            "100:104:102",     // 104 started: not visible yet, same seq
            "102:105:102,104", // 103 committed, 104 in progress
            "105:105:",        // everything committed
        ]
        .iter()
        .map(|s| seq(s))
        .collect();
        assert!(seqs[0] < seqs[1]);
        assert_eq!(seqs[1], seqs[2]);
        assert!(seqs[2] < seqs[3]);
        assert!(seqs[3] < seqs[4]);
    }

    #[test]
    fn rejects_foreign_and_damaged_tokens() {
        for snapshot in [
            None,
            Some("100:104:"),
            Some("pg2:1:2"),
            Some("pg2:x:2:1:2:"),
            Some("pg2:1:2:1:2"),
            Some("pg1:1:2:1:2:"),
            Some("pg2:1:2:1:2:3'; drop"),
        ] {
            let mut token = FillToken::new(1, 1);
            if let Some(s) = snapshot {
                token = token.with_snapshot(s);
            }
            assert_eq!(decode(&token), None, "{snapshot:?}");
        }
        for text in ["", "1:2:3", "1:2:3:4:5", "x:2:3:1:2:", "1:2:3:1:2:3;"] {
            assert_eq!(parse_miss(text), None, "{text:?}");
        }
    }
}
